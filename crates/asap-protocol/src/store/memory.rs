//! In-memory stores (the reference's default backend).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{MeteringStore, SnapshotStore, Store, StoreError, TaskStore};
use crate::model::{StateSnapshot, Task, Timestamp, UsageEvent};

/// Every store in process memory, behind one lock per kind of record.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tasks: Mutex<HashMap<String, Task>>,
    snapshots: Mutex<HashMap<String, BTreeMap<i64, StateSnapshot>>>,
    events: Mutex<Vec<UsageEvent>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        lock(&self.tasks).insert(task.id.clone(), task.clone());
        Ok(())
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        Ok(lock(&self.tasks).get(task_id).cloned())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
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
        lock(&self.events).push(event.clone());
        Ok(())
    }

    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let instant = |t: &Timestamp| t.to_offset_datetime();
        let mut found: Vec<UsageEvent> = lock(&self.events)
            .iter()
            .filter(|e| e.agent_id == agent_id)
            .filter(|e| {
                start
                    .as_ref()
                    .is_none_or(|s| instant(&e.timestamp) >= instant(s))
            })
            .filter(|e| {
                end.as_ref()
                    .is_none_or(|s| instant(&e.timestamp) <= instant(s))
            })
            .cloned()
            .collect();
        found.sort_by_key(|e| instant(&e.timestamp));
        Ok(found)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) {}
}
