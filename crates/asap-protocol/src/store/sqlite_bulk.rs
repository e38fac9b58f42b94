//! The SQLite writer's statement: four statements in one (task creations, snapshots,
//! task updates, usage events), each writing up to a fixed number of rows, padded with
//! rows of NULLs that it skips. The SQL text never changes with the number of rows, so
//! it is prepared once per connection, and a commit group's rows usually go to
//! SQLite's thread in one hand-off.
//!
//! Rows are encoded by the caller ([`Row::encode`]), on the request's own task, so the
//! single writer only binds them.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use sqlx::Row as _;
use sqlx::sqlite::{Sqlite, SqliteArguments, SqliteConnection};
use sqlx::{Arguments, Encode, Type};

use super::{StoreError, Write};
use crate::json;
use crate::model::Model;

/// The statements of [`WRITE`], in order: rows per statement, parameters per row.
const LAYOUT: [(usize, usize); 4] = [
    (TASK_ROWS, 3),     // creations: id, record, updated_at
    (TASK_ROWS * 2, 6), // snapshots: task_id, id, version, data, checkpoint, created_at
    (TASK_ROWS, 4),     // updates: id, record, updated_at, expected
    (TASK_ROWS, 6),     // usage events: id, task_id, agent_id, consumer_id, metrics, timestamp
];
/// Task rows per statement (a task's request writes up to two snapshots).
const TASK_ROWS: usize = 64;

/// `VALUES` with `rows` rows of `columns` parameters.
fn values((rows, columns): (usize, usize)) -> String {
    let row = format!("({})", vec!["?"; columns].join(","));
    format!("VALUES {}", vec![row; rows].join(","))
}

/// Four statements, each skipping its rows of NULLs: inserts the new tasks (returning
/// their ids), inserts or replaces snapshots (a later row replacing an earlier one of
/// the same task and version), updates the tasks whose revision is the expected one
/// (returning their ids), inserts usage events.
static WRITE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO asap_tasks (id, record, updated_at, revision) \
         SELECT column1, column2, column3, 1 FROM ({}) WHERE column1 IS NOT NULL \
         ON CONFLICT (id) DO NOTHING RETURNING id; \
         INSERT OR REPLACE INTO snapshots (task_id, id, version, data, checkpoint, created_at) \
         SELECT column1, column2, column3, column4, column5, column6 FROM ({}) \
         WHERE column1 IS NOT NULL; \
         UPDATE asap_tasks SET record = v.column2, updated_at = v.column3, revision = v.column4 + 1 \
         FROM ({}) AS v WHERE asap_tasks.id = v.column1 AND asap_tasks.revision = v.column4 \
         RETURNING asap_tasks.id; \
         INSERT INTO usage_events (id, task_id, agent_id, consumer_id, metrics, timestamp) \
         SELECT column1, column2, column3, column4, column5, column6 FROM ({}) \
         WHERE column1 IS NOT NULL",
        values(LAYOUT[0]),
        values(LAYOUT[1]),
        values(LAYOUT[2]),
        values(LAYOUT[3]),
    )
});

/// One write, encoded as the parameters its statement binds.
#[derive(Debug)]
pub(super) enum Row {
    /// A task to create: `id, record, updated_at`.
    Create {
        /// The task's id.
        task_id: Arc<str>,
        /// Its record and time of update.
        record: [Arc<str>; 2],
    },
    /// A task to update: `id, record, updated_at, expected`.
    Update {
        /// The task's id.
        task_id: Arc<str>,
        /// Its record and time of update.
        record: [Arc<str>; 2],
        /// The revision the update expects.
        expected: u64,
    },
    /// A snapshot: `task_id, id, version, data, checkpoint, created_at`.
    Snapshot {
        /// Task id, snapshot id.
        ids: [Arc<str>; 2],
        /// Its version.
        version: i64,
        /// Its data.
        data: Arc<str>,
        /// Whether it is a checkpoint (0 or 1).
        checkpoint: i64,
        /// When it was made.
        created_at: Arc<str>,
    },
    /// A usage event: `id, task_id, agent_id, consumer_id, metrics, timestamp`.
    Usage([Arc<str>; 6]),
}

impl Row {
    /// Encodes `write`.
    pub(super) fn encode(write: &Write) -> Self {
        match write {
            Write::CreateTask(task) => Self::Create {
                task_id: task.id.as_str().into(),
                record: [task.to_json().into(), task.updated_at.isoformat().into()],
            },
            Write::UpdateTask { task, expected } => Self::Update {
                task_id: task.id.as_str().into(),
                record: [task.to_json().into(), task.updated_at.isoformat().into()],
                expected: *expected,
            },
            Write::SaveSnapshot(snapshot) => Self::Snapshot {
                ids: [
                    snapshot.task_id.as_str().into(),
                    snapshot.id.as_str().into(),
                ],
                version: snapshot.version,
                data: json::to_python_default(&snapshot.data).into(),
                checkpoint: i64::from(snapshot.checkpoint),
                created_at: snapshot.created_at.isoformat().into(),
            },
            Write::RecordUsage(event) => Self::Usage([
                super::usage_event_id().into(),
                event.task_id.as_str().into(),
                event.agent_id.as_str().into(),
                event.consumer_id.as_str().into(),
                event.metrics.to_json().into(),
                event.timestamp.isoformat().into(),
            ]),
        }
    }

    /// The task a conditional row writes.
    pub(super) fn task_id(&self) -> Option<&str> {
        match self {
            Self::Create { task_id, .. } | Self::Update { task_id, .. } => Some(task_id),
            Self::Snapshot { .. } | Self::Usage(_) => None,
        }
    }

    /// The conflict this row reports when its condition fails.
    pub(super) fn conflict(&self) -> StoreError {
        match self {
            Self::Create { task_id, .. } => StoreError::Conflict {
                task_id: task_id.to_string(),
                expected: 0,
            },
            Self::Update {
                task_id, expected, ..
            } => StoreError::Conflict {
                task_id: task_id.to_string(),
                expected: *expected,
            },
            Self::Snapshot { .. } | Self::Usage(_) => {
                StoreError::Backend("an unconditional write cannot conflict".into())
            }
        }
    }

    /// Binds this row's parameters.
    fn bind(&self, args: &mut SqliteArguments) -> Result<(), sqlx::Error> {
        match self {
            Self::Create { task_id, record } => {
                add(args, task_id.clone())?;
                record.iter().try_for_each(|v| add(args, v.clone()))
            }
            Self::Update {
                task_id,
                record,
                expected,
            } => {
                add(args, task_id.clone())?;
                record.iter().try_for_each(|v| add(args, v.clone()))?;
                add(args, revision(*expected))
            }
            Self::Snapshot {
                ids,
                version,
                data,
                checkpoint,
                created_at,
            } => {
                ids.iter().try_for_each(|v| add(args, v.clone()))?;
                add(args, *version)?;
                add(args, data.clone())?;
                add(args, *checkpoint)?;
                add(args, created_at.clone())
            }
            Self::Usage(fields) => fields.iter().try_for_each(|v| add(args, v.clone())),
        }
    }
}

fn add<T: for<'q> Encode<'q, Sqlite> + Type<Sqlite>>(
    args: &mut SqliteArguments,
    value: T,
) -> Result<(), sqlx::Error> {
    args.add(value).map_err(sqlx::Error::Encode)
}

/// A revision as SQLite stores it (INTEGER is signed; revisions never come near 2^63).
pub(super) fn revision(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Row {
    /// The statement of [`WRITE`] that writes this row.
    fn statement(&self) -> usize {
        match self {
            Self::Create { .. } => 0,
            Self::Snapshot { .. } => 1,
            Self::Update { .. } => 2,
            Self::Usage(_) => 3,
        }
    }
}

/// Writes `rows` (at most one conditional row per task): a few rows of each kind per
/// execution of [`WRITE`], most groups in one. The ids of the tasks whose condition
/// held.
pub(super) async fn write<'a>(
    conn: &mut SqliteConnection,
    rows: impl Iterator<Item = &'a Row>,
) -> Result<HashSet<String>, sqlx::Error> {
    let mut lists: [Vec<&Row>; 4] = Default::default();
    for row in rows {
        lists[row.statement()].push(row);
    }
    let executions = lists
        .iter()
        .zip(LAYOUT)
        .map(|(list, (per, _))| list.len().div_ceil(per))
        .max()
        .unwrap_or(0);
    let mut written = HashSet::new();
    for execution in 0..executions {
        let parts: Vec<&[&Row]> = lists
            .iter()
            .zip(LAYOUT)
            .map(|(list, (per, _))| list.chunks(per).nth(execution).unwrap_or_default())
            .collect();
        let last = parts.iter().rposition(|part| !part.is_empty());
        let mut args = SqliteArguments::default();
        for (index, (part, (per, params))) in parts.iter().zip(LAYOUT).enumerate() {
            if Some(index) > last {
                break;
            }
            part.iter().try_for_each(|row| row.bind(&mut args))?;
            if Some(index) < last {
                // A later statement's parameters follow all of this one's: its unused
                // rows are NULLs (unbound parameters are NULL too, hence only here).
                for _ in part.len() * params..per * params {
                    add(&mut args, None::<i64>)?;
                }
            }
        }
        for row in sqlx::query_with(WRITE.as_str(), args)
            .fetch_all(&mut *conn)
            .await?
        {
            written.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(written)
}

/// Applies one job's rows in order, stopping at the first conflict (the rows before it
/// stay until the caller undoes them).
pub(super) async fn one_by_one(
    conn: &mut SqliteConnection,
    rows: &[Row],
) -> Result<Result<(), StoreError>, sqlx::Error> {
    for row in rows {
        let written = write(conn, std::iter::once(row)).await?;
        if let Some(task_id) = row.task_id()
            && !written.contains(task_id)
        {
            return Ok(Err(row.conflict()));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_has_a_parameter_per_padded_row_column() {
        let params: usize = LAYOUT.iter().map(|(rows, columns)| rows * columns).sum();
        assert_eq!(WRITE.matches('?').count(), params);
        assert_eq!(values((2, 3)), "VALUES (?,?,?),(?,?,?)");
    }
}
