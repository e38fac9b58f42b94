//! Multi-row statements for the SQLite writer's group commit: one statement writes the
//! rows of many requests. Rows go in chunks of fixed sizes, so the connection's
//! prepared-statement cache holds a handful of statements, not one per group size.

use std::collections::HashSet;

use sqlx::sqlite::{Sqlite, SqliteConnection};
use sqlx::{QueryBuilder, Row};

use super::Write;
use super::sqlite_writer::revision;
use crate::json;
use crate::model::{Model, StateSnapshot, Task, UsageEvent};

/// Rows per statement: a group is cut greedily into chunks of these sizes.
const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// `items` in chunks of [`CHUNK_SIZES`].
fn chunked<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = CHUNK_SIZES
            .iter()
            .copied()
            .find(|&size| size <= items.len())?;
        let (chunk, rest) = items.split_at(size);
        items = rest;
        Some(chunk)
    })
}

/// Inserts the tasks that do not exist yet; the ids inserted.
pub(super) async fn create_tasks(
    conn: &mut SqliteConnection,
    tasks: &[(usize, &Task)],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut inserted = HashSet::with_capacity(tasks.len());
    for chunk in chunked(tasks) {
        let mut query: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO asap_tasks (id, record, updated_at, revision) ");
        query.push_values(chunk, |mut row, (_, task)| {
            row.push_bind(task.id.clone())
                .push_bind(task.to_json())
                .push_bind(task.updated_at.isoformat())
                .push_bind(1_i64);
        });
        query.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let rows = query.build().fetch_all(&mut *conn).await?;
        inserted.extend(rows.iter().map(|row| row.get::<String, _>(0)));
    }
    Ok(inserted)
}

/// Replaces each task whose stored revision is the expected one; the ids replaced.
pub(super) async fn update_tasks(
    conn: &mut SqliteConnection,
    tasks: &[(usize, (&Task, u64))],
) -> Result<HashSet<String>, sqlx::Error> {
    let mut updated = HashSet::with_capacity(tasks.len());
    for chunk in chunked(tasks) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "UPDATE asap_tasks SET record = v.column2, updated_at = v.column3, revision = v.column4 + 1 FROM (",
        );
        query.push_values(chunk, |mut row, (_, (task, expected))| {
            row.push_bind(task.id.clone())
                .push_bind(task.to_json())
                .push_bind(task.updated_at.isoformat())
                .push_bind(revision(*expected));
        });
        query.push(
            ") AS v WHERE asap_tasks.id = v.column1 AND asap_tasks.revision = v.column4 RETURNING id",
        );
        let rows = query.build().fetch_all(&mut *conn).await?;
        updated.extend(rows.iter().map(|row| row.get::<String, _>(0)));
    }
    Ok(updated)
}

/// The snapshots and usage events among `writes`, in order (a later snapshot of the same
/// task and version replaces an earlier one, as one at a time would).
pub(super) async fn unconditional(
    conn: &mut SqliteConnection,
    writes: impl Iterator<Item = &Write>,
) -> Result<(), sqlx::Error> {
    let mut snapshots: Vec<&StateSnapshot> = Vec::new();
    let mut events: Vec<&UsageEvent> = Vec::new();
    for write in writes {
        match write {
            Write::SaveSnapshot(snapshot) => snapshots.push(snapshot),
            Write::RecordUsage(event) => events.push(event),
            Write::CreateTask(_) | Write::UpdateTask { .. } => {}
        }
    }
    for chunk in chunked(&snapshots) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR REPLACE INTO snapshots (task_id, id, version, data, checkpoint, created_at) ",
        );
        query.push_values(chunk, |mut row, snapshot| {
            row.push_bind(snapshot.task_id.clone())
                .push_bind(snapshot.id.clone())
                .push_bind(snapshot.version)
                .push_bind(json::to_python_default(&snapshot.data))
                .push_bind(i64::from(snapshot.checkpoint))
                .push_bind(snapshot.created_at.isoformat());
        });
        query.build().execute(&mut *conn).await?;
    }
    for chunk in chunked(&events) {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO usage_events (id, task_id, agent_id, consumer_id, metrics, timestamp) ",
        );
        query.push_values(chunk, |mut row, event| {
            row.push_bind(super::usage_event_id())
                .push_bind(event.task_id.clone())
                .push_bind(event.agent_id.clone())
                .push_bind(event.consumer_id.clone())
                .push_bind(event.metrics.to_json())
                .push_bind(event.timestamp.isoformat());
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_cut_into_the_fixed_chunk_sizes() {
        let items: Vec<u32> = (0..90).collect();
        let sizes: Vec<usize> = chunked(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 16, 4, 4, 1, 1]);
        assert_eq!(chunked(&items).flatten().count(), 90);
        assert_eq!(chunked::<u32>(&[]).count(), 0);
    }
}
