//! In-memory stores (the reference's default backend).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{MeteringStore, SnapshotStore, Store, StoreError, TaskStore};
use crate::model::{StateSnapshot, Task, Timestamp, UsageEvent};

/// Default bound of [`MemoryStore`]: tasks (with their snapshots) and usage events kept.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// Every store in process memory, behind one lock per kind of record.
///
/// Bounded: beyond `capacity` tasks the oldest task and its snapshots are forgotten,
/// and beyond `capacity` usage events the oldest event, so a long-running server's
/// memory stays flat. Use SQLite to keep everything.
#[derive(Debug)]
pub struct MemoryStore {
    capacity: usize,
    tasks: Mutex<Tasks>,
    snapshots: Mutex<HashMap<String, BTreeMap<i64, StateSnapshot>>>,
    events: Mutex<VecDeque<UsageEvent>>,
}

#[derive(Debug, Default)]
struct Tasks {
    by_id: HashMap<String, Task>,
    order: VecDeque<String>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }
}

impl MemoryStore {
    /// An empty store with the default bound.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping at most `capacity` tasks and `capacity` usage events.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tasks: Mutex::default(),
            snapshots: Mutex::default(),
            events: Mutex::default(),
        }
    }

    /// Records a task id, forgetting the oldest tasks beyond the bound.
    fn admit(&self, task_id: &str) {
        let mut tasks = lock(&self.tasks);
        if tasks.by_id.contains_key(task_id) || lock(&self.snapshots).contains_key(task_id) {
            return;
        }
        tasks.order.push_back(task_id.to_owned());
        while tasks.order.len() > self.capacity {
            if let Some(old) = tasks.order.pop_front() {
                tasks.by_id.remove(&old);
                lock(&self.snapshots).remove(&old);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        self.admit(&task.id);
        lock(&self.tasks)
            .by_id
            .insert(task.id.clone(), task.clone());
        Ok(())
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        Ok(lock(&self.tasks).by_id.get(task_id).cloned())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
        self.admit(&snapshot.task_id);
        lock(&self.snapshots)
            .entry(snapshot.task_id.clone())
            .or_default()
            .insert(snapshot.version, snapshot.clone());
        Ok(())
    }

    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StateSnapshot>, StoreError> {
        let all = lock(&self.snapshots);
        let Some(versions) = all.get(task_id) else {
            return Ok(None);
        };
        Ok(match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        })
    }

    async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError> {
        Ok(lock(&self.snapshots)
            .get(task_id)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn delete(&self, task_id: &str, version: Option<i64>) -> Result<bool, StoreError> {
        let mut all = lock(&self.snapshots);
        Ok(match version {
            None => all.remove(task_id).is_some_and(|v| !v.is_empty()),
            Some(v) => {
                let removed = all
                    .get_mut(task_id)
                    .and_then(|versions| versions.remove(&v))
                    .is_some();
                if all.get(task_id).is_some_and(BTreeMap::is_empty) {
                    all.remove(task_id);
                }
                removed
            }
        })
    }
}

#[async_trait]
impl MeteringStore for MemoryStore {
    async fn record(&self, event: &UsageEvent) -> Result<(), StoreError> {
        let mut events = lock(&self.events);
        events.push_back(event.clone());
        while events.len() > self.capacity {
            events.pop_front();
        }
        Ok(())
    }

    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let mine: Vec<UsageEvent> = lock(&self.events)
            .iter()
            .filter(|e| e.agent_id == agent_id)
            .cloned()
            .collect();
        Ok(super::within(mine, start, end))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oldest_tasks_and_snapshots_are_forgotten_beyond_the_bound() {
        let store = MemoryStore::with_capacity(2);
        for id in ["a", "b", "c"] {
            store.put_task(&Task::new(id, "conv")).await.unwrap();
            let snapshot = StateSnapshot {
                id: format!("s{id}"),
                task_id: id.into(),
                version: 1,
                data: serde_json::Map::new(),
                checkpoint: false,
                created_at: Timestamp::now(),
            };
            store.save(&snapshot).await.unwrap();
            store
                .save(&StateSnapshot {
                    version: 2,
                    ..snapshot
                })
                .await
                .unwrap();
            store.put_task(&Task::new(id, "conv")).await.unwrap();
        }
        assert!(store.get_task("a").await.unwrap().is_none());
        assert!(store.get("a", None).await.unwrap().is_none());
        assert_eq!(store.list_versions("c").await.unwrap(), [1, 2]);
        assert!(store.get_task("b").await.unwrap().is_some());
        let event = UsageEvent {
            task_id: "t".into(),
            agent_id: "x".into(),
            consumer_id: "c".into(),
            metrics: crate::model::UsageMetrics::default(),
            timestamp: Timestamp::now(),
        };
        for _ in 0..5 {
            store.record(&event).await.unwrap();
        }
        assert_eq!(store.query("x", None, None).await.unwrap().len(), 2);
    }
}
