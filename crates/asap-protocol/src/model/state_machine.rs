//! The task state machine (wire spec section 8).
//!
//! ```text
//! submitted ──► working ──► completed | failed
//!     │          ▲   │
//!     │          │   ▼
//!     │       input_required
//!     ▼          │
//! cancelled ◄────┴── (from submitted, working, input_required)
//! ```

use super::entities::Task;
use super::enums::TaskStatus;
use super::errors::AsapError;
use super::timestamp::Timestamp;

/// Whether the table allows moving from `from` to `to`. Self-transitions and any
/// transition out of a terminal state are not allowed.
///
/// ```
/// use asap_protocol::model::{TaskStatus::*, can_transition};
/// assert!(can_transition(Submitted, Working));
/// assert!(can_transition(InputRequired, Cancelled));
/// assert!(!can_transition(Completed, Working));
/// ```
pub fn can_transition(from: TaskStatus, to: TaskStatus) -> bool {
    use TaskStatus::{Cancelled, Completed, Failed, InputRequired, Submitted, Working};
    matches!(
        (from, to),
        (Submitted, Working | Cancelled)
            | (Working, InputRequired | Completed | Failed | Cancelled)
            | (InputRequired, Working | Cancelled)
    )
}

/// The states reachable from `from` in one step.
pub fn next_states(from: TaskStatus) -> Vec<TaskStatus> {
    TaskStatus::ALL
        .iter()
        .copied()
        .filter(|to| can_transition(from, *to))
        .collect()
}

impl Task {
    /// Moves the task to `to`, setting `updated_at` to now, or fails with
    /// `asap:protocol/invalid_state` and leaves the task unchanged.
    ///
    /// ```
    /// use asap_protocol::model::{Task, TaskStatus};
    /// let mut task = Task::new("task_1", "conv_1");
    /// task.transition(TaskStatus::Working).unwrap();
    /// task.transition(TaskStatus::Completed).unwrap();
    /// let err = task.transition(TaskStatus::Working).unwrap_err();
    /// assert_eq!(err.code(), "asap:protocol/invalid_state");
    /// ```
    pub fn transition(&mut self, to: TaskStatus) -> Result<(), AsapError> {
        if !can_transition(self.status, to) {
            return Err(AsapError::InvalidTransition {
                from: self.status,
                to,
                task_id: Some(self.id.clone()),
            });
        }
        self.status = to;
        self.updated_at = Timestamp::now();
        Ok(())
    }

    /// Whether the task is in a terminal state.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Whether `task.cancel` may move the task to `cancelled`: true for `submitted`,
    /// `working` and `input_required` (the transition table wins over the reference's
    /// `can_be_cancelled()`, which forgets `input_required`).
    pub fn can_be_cancelled(&self) -> bool {
        can_transition(self.status, TaskStatus::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::{Cancelled, Completed, Failed, InputRequired, Submitted, Working};

    #[test]
    fn full_transition_table() {
        let allowed = [
            (Submitted, Working),
            (Submitted, Cancelled),
            (Working, InputRequired),
            (Working, Completed),
            (Working, Failed),
            (Working, Cancelled),
            (InputRequired, Working),
            (InputRequired, Cancelled),
        ];
        for from in TaskStatus::ALL {
            for to in TaskStatus::ALL {
                assert_eq!(
                    can_transition(*from, *to),
                    allowed.contains(&(*from, *to)),
                    "{from} -> {to}"
                );
            }
        }
        for terminal in [Completed, Failed, Cancelled] {
            assert!(next_states(terminal).is_empty());
        }
        assert_eq!(next_states(Submitted), vec![Working, Cancelled]);
    }

    #[test]
    fn illegal_transition_leaves_the_task_unchanged() {
        let mut task = Task::new("task_01", "conv");
        task.transition(Working).unwrap();
        task.transition(Completed).unwrap();
        let before = task.clone();
        let err = task.transition(Working).unwrap_err();
        assert_eq!(task, before);
        assert_eq!(
            err.to_string(),
            "Invalid transition from 'completed' to 'working'"
        );
        assert_eq!(err.details()["task_id"], "task_01");
    }

    #[test]
    fn transitions_update_the_clock_and_cancellation_follows_the_table() {
        let mut task = Task::new("t", "c");
        task.updated_at = "2020-01-01T00:00:00Z".parse().unwrap();
        task.transition(Working).unwrap();
        assert!(task.updated_at.to_offset_datetime().year() >= 2026);
        task.transition(InputRequired).unwrap();
        assert!(task.can_be_cancelled());
        task.transition(Cancelled).unwrap();
        assert!(task.is_terminal() && !task.can_be_cancelled());
        assert!(task.transition(Cancelled).is_err());
    }
}
