//! In-memory stores (the reference's default backend).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    MeteringStore, SnapshotStore, Store, StoreError, StoredTask, TaskStore, Write, WriteBatch,
};
use crate::model::{StateSnapshot, Timestamp, UsageEvent};

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
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tasks: HashMap<String, StoredTask>,
    snapshots: HashMap<String, BTreeMap<i64, StateSnapshot>>,
    /// Task ids (of tasks or snapshots) in the order first seen, for the bound.
    order: VecDeque<String>,
    events: VecDeque<UsageEvent>,
}

impl State {
    /// Records a task id, forgetting the oldest tasks beyond `capacity`.
    fn admit(&mut self, task_id: &str, capacity: usize) {
        if self.tasks.contains_key(task_id) || self.snapshots.contains_key(task_id) {
            return;
        }
        self.order.push_back(task_id.to_owned());
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.tasks.remove(&old);
                self.snapshots.remove(&old);
            }
        }
    }

    /// Whether `write` may be applied to the current state.
    fn allows(&self, write: &Write) -> bool {
        match write {
            Write::CreateTask(task) => !self.tasks.contains_key(&task.id),
            Write::UpdateTask { task, expected } => self
                .tasks
                .get(&task.id)
                .is_some_and(|stored| stored.revision == *expected),
            _ => true,
        }
    }

    fn apply(&mut self, write: Write, capacity: usize) {
        match write {
            Write::CreateTask(task) => {
                self.admit(&task.id, capacity);
                self.tasks
                    .insert(task.id.clone(), StoredTask { task, revision: 1 });
            }
            Write::UpdateTask { task, expected } => {
                self.tasks.insert(
                    task.id.clone(),
                    StoredTask {
                        task,
                        revision: expected + 1,
                    },
                );
            }
            Write::SaveSnapshot(snapshot) => self.save(snapshot, capacity),
            Write::RecordUsage(event) => {
                self.events.push_back(event);
                while self.events.len() > capacity {
                    self.events.pop_front();
                }
            }
        }
    }

    fn save(&mut self, snapshot: StateSnapshot, capacity: usize) {
        self.admit(&snapshot.task_id, capacity);
        self.snapshots
            .entry(snapshot.task_id.clone())
            .or_default()
            .insert(snapshot.version, snapshot);
    }
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
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
        Ok(self.state().tasks.get(task_id).cloned())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
        self.state().save(snapshot.clone(), self.capacity);
        Ok(())
    }

    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StateSnapshot>, StoreError> {
        let state = self.state();
        let Some(versions) = state.snapshots.get(task_id) else {
            return Ok(None);
        };
        Ok(match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        })
    }

    async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError> {
        Ok(self
            .state()
            .snapshots
            .get(task_id)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default())
    }

    async fn delete(&self, task_id: &str, version: Option<i64>) -> Result<bool, StoreError> {
        let mut state = self.state();
        let all = &mut state.snapshots;
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
        self.state()
            .apply(Write::RecordUsage(event.clone()), self.capacity);
        Ok(())
    }

    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let mine: Vec<UsageEvent> = self
            .state()
            .events
            .iter()
            .filter(|e| e.agent_id == agent_id)
            .cloned()
            .collect();
        Ok(super::within(mine, start, end))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut state = self.state();
        let writes = batch.into_ordered();
        if let Some(refused) = writes.iter().find(|w| !state.allows(w)) {
            return Err(StoreError::conflict(refused));
        }
        for write in writes {
            state.apply(write, self.capacity);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;

    #[tokio::test]
    async fn oldest_tasks_and_snapshots_are_forgotten_beyond_the_bound() {
        let store = MemoryStore::with_capacity(2);
        for id in ["a", "b", "c"] {
            store
                .commit(WriteBatch::new().create_task(Task::new(id, "conv")))
                .await
                .unwrap();
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
