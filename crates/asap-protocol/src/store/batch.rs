//! Writes that commit together: a task's conditional update, its snapshots and its
//! usage events in one transaction, so a request's changes land whole or not at all
//! and a change made meanwhile by someone else is never overwritten.

use crate::model::{StateSnapshot, Task, UsageEvent};

/// A task as the store holds it, with the revision a conditional update must name.
///
/// Revisions count a task's writes: 1 when it is created, one more per update.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTask {
    /// The task.
    pub task: Task,
    /// How many times it has been written.
    pub revision: u64,
}

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Write {
    /// Creates the task at revision 1; a conflict when a task with its id exists.
    CreateTask(Task),
    /// Replaces the task when its stored revision is still `expected` (its new revision
    /// is `expected + 1`); a conflict otherwise, or when the task does not exist.
    UpdateTask {
        /// The new record.
        task: Task,
        /// The revision it was read at.
        expected: u64,
    },
    /// Inserts or replaces the snapshot with the same task id and version.
    SaveSnapshot(StateSnapshot),
    /// Records a usage event.
    RecordUsage(UsageEvent),
}

impl Write {
    /// Whether the write can fail on the data it finds (a conflict).
    pub(crate) fn is_conditional(&self) -> bool {
        matches!(self, Self::CreateTask(_) | Self::UpdateTask { .. })
    }
}

/// Writes a [`Store`](super::Store) applies atomically with
/// [`commit`](super::Store::commit): every write or none.
///
/// ```
/// use asap_protocol::model::{Task, TaskStatus};
/// use asap_protocol::store::WriteBatch;
/// let mut task = Task::new("task_1", "conv_1");
/// task.transition(TaskStatus::Working).unwrap();
/// let batch = WriteBatch::new().create_task(task);
/// assert_eq!(batch.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a batch is written only by Store::commit"]
pub struct WriteBatch {
    writes: Vec<Write>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write.
    pub fn push(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    /// Adds [`Write::CreateTask`].
    pub fn create_task(self, task: Task) -> Self {
        self.push(Write::CreateTask(task))
    }

    /// Adds [`Write::UpdateTask`].
    pub fn update_task(self, task: Task, expected: u64) -> Self {
        self.push(Write::UpdateTask { task, expected })
    }

    /// Adds [`Write::SaveSnapshot`].
    pub fn save_snapshot(self, snapshot: StateSnapshot) -> Self {
        self.push(Write::SaveSnapshot(snapshot))
    }

    /// Adds [`Write::RecordUsage`].
    pub fn record_usage(self, event: UsageEvent) -> Self {
        self.push(Write::RecordUsage(event))
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// How many writes.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The tasks the batch writes, in order (for change notifications).
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.writes.iter().filter_map(|w| match w {
            Write::CreateTask(task) | Write::UpdateTask { task, .. } => Some(task),
            _ => None,
        })
    }

    /// The writes with the conditional ones first (so a conflict is found before
    /// anything is written), otherwise in order.
    pub(crate) fn into_ordered(self) -> Vec<Write> {
        let (mut conditional, other): (Vec<_>, Vec<_>) =
            self.writes.into_iter().partition(Write::is_conditional);
        conditional.extend(other);
        conditional
    }

    /// How many writes can fail on the data they find.
    #[cfg(feature = "sqlite")]
    pub(crate) fn conditional_count(&self) -> usize {
        self.writes.iter().filter(|w| w.is_conditional()).count()
    }
}
