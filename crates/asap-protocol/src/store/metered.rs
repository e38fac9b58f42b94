//! [`MeteredStore`]: any [`Store`] with the duration of each operation recorded in
//! `asap_store_operation_duration_seconds{backend,operation}`.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{MeteringStore, SnapshotStore, Store, StoreError, StoredTask, TaskStore, WriteBatch};
use crate::model::{StateSnapshot, Timestamp, UsageAggregate, UsageEvent};
use crate::server::{Metrics, StoreBackend, StoreOperation};

/// A store decorator timing every operation of the store it wraps (the server wraps
/// its store in one at build time).
#[derive(Clone)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: StoreBackend,
    metrics: Metrics,
    tracer: crate::spans::Tracer,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteredStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl MeteredStore {
    /// Wraps `inner`, labelled with its [`Store::backend_name`], recording into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Metrics) -> Self {
        let backend = match inner.backend_name() {
            "memory" => StoreBackend::Memory,
            "sqlite" => StoreBackend::Sqlite,
            "postgres" => StoreBackend::Postgres,
            _ => StoreBackend::Custom,
        };
        metrics.store_backend(backend);
        Self {
            inner,
            backend,
            metrics,
            tracer: crate::spans::Tracer::default(),
        }
    }

    /// Also exports an `asap.store` span per operation (feature `otel`), a child of the
    /// request or handler it serves.
    pub(crate) fn with_tracer(mut self, tracer: crate::spans::Tracer) -> Self {
        self.tracer = tracer;
        self
    }

    /// The store it wraps.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    async fn timed<T>(&self, operation: StoreOperation, run: impl Future<Output = T>) -> T {
        // Only when spans are made (no context clone otherwise), and only inside a
        // request's trace: the readiness probe's pings and the background sweeps would
        // otherwise each start a trace of their own.
        let mut span = if self.tracer.is_enabled()
            && let Some(parent) = crate::trace_context::current()
        {
            let kind = crate::spans::Kind::Client;
            self.tracer.start("asap.store", kind, Some(&parent)).0
        } else {
            crate::spans::Span::default()
        };
        if span.is_recording() {
            span.set_static("db.system.name", self.backend.as_str());
            span.set_static("db.operation.name", operation.as_str());
        }
        let started = Instant::now();
        let out = run.await;
        span.end();
        let seconds = started.elapsed().as_secs_f64();
        self.metrics
            .store_operation(self.backend, operation, seconds);
        out
    }
}

#[async_trait]
impl TaskStore for MeteredStore {
    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        self.timed(StoreOperation::GetTask, self.inner.get_task(task_id))
            .await
    }
}

#[async_trait]
impl SnapshotStore for MeteredStore {
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
        self.timed(StoreOperation::SaveSnapshot, self.inner.save(snapshot))
            .await
    }

    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StateSnapshot>, StoreError> {
        self.timed(
            StoreOperation::GetSnapshot,
            self.inner.get(task_id, version),
        )
        .await
    }

    async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError> {
        let run = self.inner.list_versions(task_id);
        self.timed(StoreOperation::ListVersions, run).await
    }

    async fn delete(&self, task_id: &str, version: Option<i64>) -> Result<bool, StoreError> {
        let run = self.inner.delete(task_id, version);
        self.timed(StoreOperation::DeleteSnapshot, run).await
    }
}

#[async_trait]
impl MeteringStore for MeteredStore {
    async fn record(&self, event: &UsageEvent) -> Result<(), StoreError> {
        self.timed(StoreOperation::RecordUsage, self.inner.record(event))
            .await
    }

    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let run = self.inner.query(agent_id, start, end);
        self.timed(StoreOperation::QueryUsage, run).await
    }

    async fn aggregate(&self, agent_id: &str, period: &str) -> Result<UsageAggregate, StoreError> {
        let run = self.inner.aggregate(agent_id, period);
        self.timed(StoreOperation::AggregateUsage, run).await
    }
}

#[async_trait]
impl Store for MeteredStore {
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.timed(StoreOperation::Commit, self.inner.commit(batch))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(StoreOperation::Ping, self.inner.ping()).await
    }

    async fn close(&self) {
        self.inner.close().await;
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn every_operation_is_timed_under_its_backend() {
        let metrics = Metrics::new();
        let store = MeteredStore::new(Arc::new(MemoryStore::new()), metrics.clone());
        let zero = r#"asap_store_operation_duration_seconds_count{backend="memory",operation="get_task"} 0"#;
        assert!(metrics.render().contains(zero));
        assert_eq!(store.get_task("nope").await.unwrap(), None);
        store.ping().await.unwrap();
        let text = metrics.render();
        assert!(text.contains(r#"asap_store_operation_duration_seconds_count{backend="memory",operation="get_task"} 1"#));
        assert!(text.contains(
            r#"asap_store_operation_duration_seconds_count{backend="memory",operation="ping"} 1"#
        ));
        assert!(text.contains(
            r#"asap_store_operation_duration_seconds_count{backend="memory",operation="commit"} 0"#
        ));
        assert_eq!(store.backend_name(), "memory");
    }
}
