//! State storage: task records, state snapshots and usage metering (wire spec
//! section 14), behind small async traits with in-memory and SQLite implementations.
//!
//! The traits are deliberately small (a handful of keyed reads and writes) so that a
//! PostgreSQL implementation can follow without changing them.
//!
//! ```
//! # tokio_test_block(async {
//! use asap_protocol::store::{MemoryStore, SnapshotStore};
//! use asap_protocol::model::{StateSnapshot, Timestamp};
//! let store = MemoryStore::new();
//! let snapshot = StateSnapshot {
//!     id: "snap_1".into(), task_id: "task_1".into(), version: 1,
//!     data: serde_json::Map::new(), checkpoint: false, created_at: Timestamp::now(),
//! };
//! store.save(&snapshot).await.unwrap();
//! assert_eq!(store.get("task_1", None).await.unwrap(), Some(snapshot));
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

mod batch;
mod memory;
#[cfg(feature = "server")]
mod metered;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql_reads;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "sqlite")]
mod sqlite_bulk;
#[cfg(feature = "sqlite")]
mod sqlite_writer;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{StateSnapshot, Timestamp, UsageAggregate, UsageEvent};

pub use batch::{StoredTask, Write, WriteBatch};
pub use memory::{DEFAULT_MEMORY_CAPACITY, MemoryStore};
#[cfg(feature = "server")]
pub use metered::MeteredStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresConfig, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{Durability, SqliteStore};

/// Any error, boxed, as the store's and the backends' sources.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed (I/O, lock timeout, corrupt file, ...): the backend's error
    /// (`StoreError::Backend("why".into())` from a message).
    #[error("storage backend error: {0}")]
    Backend(#[source] BoxError),
    /// A stored record could not be read back: why.
    #[error("stored record is invalid: {0}")]
    Corrupt(#[source] BoxError),
    /// The configuration names no usable backend.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// A conditional write found other data than it expected: the task exists already
    /// ([`Write::CreateTask`]), or changed since it was read or does not exist
    /// ([`Write::UpdateTask`]). Nothing of the batch was written; read again and decide.
    #[error("task {task_id} changed concurrently (expected revision {expected})")]
    Conflict {
        /// The task.
        task_id: String,
        /// The revision the write expected (0 for a creation).
        expected: u64,
    },
}

impl StoreError {
    /// The conflict a failed conditional write reports.
    pub(crate) fn conflict(write: &Write) -> Self {
        match write {
            Write::CreateTask(task) => Self::Conflict {
                task_id: task.id.clone(),
                expected: 0,
            },
            Write::UpdateTask { task, expected } => Self::Conflict {
                task_id: task.id.clone(),
                expected: *expected,
            },
            _ => Self::Backend("an unconditional write cannot conflict".into()),
        }
    }
}

/// Task records, keyed by task id. They are written through [`Store::commit`], whose
/// conditional writes keep the state machine whole under concurrency.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// The task with this id, with its revision.
    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError>;
}

/// Versioned state snapshots, keyed by (task id, version).
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Inserts or replaces the snapshot with the same task id and version.
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError>;
    /// That version, or the highest when `version` is `None`.
    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StateSnapshot>, StoreError>;
    /// The task's versions, ascending.
    async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError>;
    /// Deletes one version, or all when `version` is `None`; whether anything was deleted.
    async fn delete(&self, task_id: &str, version: Option<i64>) -> Result<bool, StoreError>;
}

/// Usage events, queried per agent.
#[async_trait]
pub trait MeteringStore: Send + Sync {
    /// Records an event.
    async fn record(&self, event: &UsageEvent) -> Result<(), StoreError>;
    /// The agent's events with `start <= timestamp <= end` (either bound optional), oldest first.
    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError>;
    /// Totals over all the agent's events; `period` is only a label.
    async fn aggregate(&self, agent_id: &str, period: &str) -> Result<UsageAggregate, StoreError> {
        Ok(UsageAggregate::of(
            agent_id,
            period,
            &self.query(agent_id, None, None).await?,
        ))
    }
}

/// A new usage event id, as the reference makes them (`evt_` and 32 hex digits).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn usage_event_id() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    format!("evt_{}", hex::encode(raw))
}

/// Keeps the events with `start <= timestamp <= end`, oldest first, comparing instants
/// (not strings, so events written with different offsets order correctly).
pub(crate) fn within(
    mut events: Vec<UsageEvent>,
    start: Option<Timestamp>,
    end: Option<Timestamp>,
) -> Vec<UsageEvent> {
    let instant = |t: &Timestamp| t.to_offset_datetime();
    events.retain(|e| {
        start
            .as_ref()
            .is_none_or(|s| instant(&e.timestamp) >= instant(s))
    });
    events.retain(|e| {
        end.as_ref()
            .is_none_or(|s| instant(&e.timestamp) <= instant(s))
    });
    events.sort_by_key(|e| instant(&e.timestamp));
    events
}

/// One backend providing every store, plus the operations a server needs for health
/// and shutdown.
#[async_trait]
pub trait Store: TaskStore + SnapshotStore + MeteringStore {
    /// Applies every write of `batch` in one transaction, or none of them: a
    /// conditional write that finds other data than it expects fails the whole batch
    /// with [`StoreError::Conflict`].
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;
    /// Checks that the backend answers (for the health endpoint).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Flushes and releases the backend (on shutdown).
    async fn close(&self);
    /// The backend's name, as the store metrics label it: `memory`, `sqlite`,
    /// `postgres`, or `custom` (the default) for a store of the application's own.
    fn backend_name(&self) -> &'static str {
        "custom"
    }
}

/// Which backend to use, as `ASAP_STORAGE_BACKEND` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageConfig {
    /// In process memory; lost on exit.
    Memory,
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (feature `postgres`), shareable by several agents.
    #[cfg(feature = "postgres")]
    Postgres(PostgresConfig),
}

impl StorageConfig {
    /// Reads `ASAP_STORAGE_BACKEND` (`memory` or `sqlite`, trimmed, any case; default
    /// `default_backend`) and `ASAP_STORAGE_PATH` (default `asap_state.db`).
    pub fn from_env_or(default_backend: &str) -> Result<Self, StoreError> {
        let backend =
            std::env::var("ASAP_STORAGE_BACKEND").unwrap_or_else(|_| default_backend.to_owned());
        let path =
            std::env::var("ASAP_STORAGE_PATH").unwrap_or_else(|_| "asap_state.db".to_owned());
        Self::parse(&backend, &path)
    }

    /// Builds the configuration from a backend name and a path.
    pub fn parse(backend: &str, path: &str) -> Result<Self, StoreError> {
        match backend.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(Self::Memory),
            "sqlite" => Ok(Self::Sqlite(path.into())),
            "postgres" => Err(StoreError::Config(
                "the postgres backend needs a database URL: use StorageConfig::Postgres".into(),
            )),
            other => Err(StoreError::Config(format!(
                "unknown ASAP_STORAGE_BACKEND {other:?}; expected \"memory\", \"sqlite\" or \"postgres\""
            ))),
        }
    }

    /// Opens the configured backend.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self {
            Self::Memory => Ok(Arc::new(MemoryStore::new())),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
            #[cfg(not(feature = "sqlite"))]
            Self::Sqlite(_) => Err(StoreError::Config(
                "this build has no SQLite support (feature `sqlite`)".into(),
            )),
            #[cfg(feature = "postgres")]
            Self::Postgres(config) => Ok(Arc::new(PostgresStore::connect(config).await?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names() {
        assert_eq!(
            StorageConfig::parse(" SQLite ", "x.db").unwrap(),
            StorageConfig::Sqlite("x.db".into())
        );
        assert_eq!(
            StorageConfig::parse("memory", "x").unwrap(),
            StorageConfig::Memory
        );
        let err = StorageConfig::parse("redis", "x").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown ASAP_STORAGE_BACKEND \"redis\"")
        );
    }
}
