//! The SQLite store's single writer: group commit.
//!
//! SQLite lets one connection write at a time; connections that wait for the lock
//! poll with growing sleeps, so concurrent requests each committing their own
//! transactions mostly sleep. Instead every [`WriteBatch`] goes to one task that owns
//! the write connection and commits the batches that arrived together in one
//! transaction. A batch's conflict undoes that batch alone (savepoints); a database
//! error fails the group, whose batches are then retried one transaction each so a bad
//! batch cannot fail its neighbours. A caller is answered only after the transaction
//! holding its batch committed.

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sqlite_bulk as bulk;
use super::{StoreError, Write, WriteBatch};
use crate::json;
use crate::model::{Model, Task};

/// Batches waiting for the writer before callers wait for room.
const QUEUE_DEPTH: usize = 4096;
/// Batches committed in one transaction at most.
const MAX_GROUP: usize = 512;
/// Times the writer yields to other tasks before a commit, gathering their writes.
const GATHER_YIELDS: usize = 2;
/// How often the WAL is folded into the database file when something was written.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

struct Job {
    writes: Vec<Write>,
    savepoint: bool,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle batches are sent through; the writer task stops when every handle is
/// dropped.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("writes", &self.writes).finish()
    }
}

fn backend(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Backend(e.into())
}

impl Writer {
    /// Starts the writer task on `pool` (whose connections it takes one group at a time).
    ///
    /// With `checkpoints`, the writer's connection does not checkpoint the WAL itself
    /// (`wal_autocheckpoint = 0` on it): a task folds the WAL into the database file
    /// from a connection of `checkpoints` every [`CHECKPOINT_INTERVAL`] after writes
    /// (`PRAGMA wal_checkpoint(PASSIVE)`, which never waits for the writer), so copying
    /// pages and syncing the file happen beside the commits, not inside them.
    pub(super) fn start(pool: SqlitePool, checkpoints: Option<SqlitePool>) -> Self {
        let (jobs, receiver) = mpsc::channel(QUEUE_DEPTH);
        let written = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(readers) = checkpoints {
            tokio::spawn(checkpoint(readers, jobs.downgrade(), written.clone()));
        }
        tokio::spawn(run(pool, receiver, written));
        Self { jobs }
    }

    /// Commits `batch` (with the batches arriving meanwhile) and waits for the outcome.
    pub(super) async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let savepoint = batch.conditional_count() > 1;
        let (done, outcome) = oneshot::channel();
        let job = Job {
            writes: batch.into_ordered(),
            savepoint,
            done,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| backend("the SQLite writer has stopped"))?;
        outcome
            .await
            .map_err(|_| backend("the SQLite writer stopped before committing"))?
    }
}

async fn run(
    pool: SqlitePool,
    mut receiver: mpsc::Receiver<Job>,
    written: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        // Let the requests running beside this task queue their writes too: a larger
        // group costs a few more rows in the same statements, while every group costs a
        // transaction and several hand-offs to SQLite's thread.
        for _ in 0..GATHER_YIELDS {
            tokio::task::yield_now().await;
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
        }
        commit_group(&pool, &mut group).await;
        written.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Folds the WAL into the database file after writes, until the store is dropped or
/// closed.
async fn checkpoint(
    readers: SqlitePool,
    store: mpsc::WeakSender<Job>,
    written: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.upgrade().is_none() || readers.is_closed() {
            return;
        }
        if written.swap(false, std::sync::atomic::Ordering::Relaxed)
            && let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&readers)
                .await
        {
            tracing::warn!(%error, "SQLite WAL checkpoint failed");
        }
    }
}

/// Commits `group` in one transaction; on a database error, each job alone.
async fn commit_group(pool: &SqlitePool, group: &mut Vec<Job>) {
    match write_group(pool, group).await {
        Ok(outcomes) => {
            for (job, outcome) in group.drain(..).zip(outcomes) {
                let _ = job.done.send(outcome);
            }
        }
        Err(_) if group.len() > 1 => {
            for job in group.drain(..) {
                let outcome = write_group(pool, std::slice::from_ref(&job))
                    .await
                    .and_then(|mut outcomes| outcomes.pop().unwrap_or(Ok(())));
                let _ = job.done.send(outcome);
            }
        }
        Err(error) => {
            if let Some(job) = group.pop() {
                let _ = job.done.send(Err(error));
            }
        }
    }
}

/// Writes every job in one transaction: the outer error is the transaction's (nothing
/// committed), the inner ones each job's conflict (that job undone, the others kept).
///
/// Most jobs go in bulk: their conditional writes as multi-row statements that return
/// the rows they changed (so each job learns whether its condition held), then the
/// unconditional writes of the jobs that passed, a few statements for the whole group
/// instead of a few per job. Jobs with several conditional writes, or touching a task
/// another job of the group touches, run one by one afterwards.
async fn write_group(
    pool: &SqlitePool,
    group: &[Job],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    let mut tx = conn.begin().await.map_err(backend)?;
    let mut outcomes: Vec<Option<Result<(), StoreError>>> = group.iter().map(|_| None).collect();
    let (bulk, one_by_one) = partition(group);

    let creates: Vec<(usize, &Task)> = conditional_writes(group, &bulk, |w| match w {
        Write::CreateTask(task) => Some(task),
        _ => None,
    });
    let created = bulk::create_tasks(&mut tx, &creates)
        .await
        .map_err(backend)?;
    let updates: Vec<(usize, (&Task, u64))> = conditional_writes(group, &bulk, |w| match w {
        Write::UpdateTask { task, expected } => Some((task, *expected)),
        _ => None,
    });
    let updated = bulk::update_tasks(&mut tx, &updates)
        .await
        .map_err(backend)?;
    for (index, task) in creates {
        if !created.contains(task.id.as_str()) {
            outcomes[index] = Some(Err(StoreError::conflict(&group[index].writes[0])));
        }
    }
    for (index, (task, _)) in updates {
        if !updated.contains(task.id.as_str()) {
            outcomes[index] = Some(Err(StoreError::conflict(&group[index].writes[0])));
        }
    }
    let passed: Vec<usize> = bulk
        .into_iter()
        .filter(|&index| outcomes[index].is_none())
        .collect();
    let unconditional = passed
        .iter()
        .flat_map(|&index| group[index].writes.iter())
        .filter(|w| !w.is_conditional());
    bulk::unconditional(&mut tx, unconditional)
        .await
        .map_err(backend)?;
    for index in passed {
        outcomes[index] = Some(Ok(()));
    }

    for index in one_by_one {
        let job = &group[index];
        let outcome = if job.savepoint {
            let mut inner = tx.begin().await.map_err(backend)?;
            match write_job(&mut inner, &job.writes).await? {
                Ok(()) => inner.commit().await.map_err(backend).map(|()| Ok(()))?,
                Err(conflict) => {
                    inner.rollback().await.map_err(backend)?;
                    Err(conflict)
                }
            }
        } else {
            // At most one conditional write, and it comes first: a conflict leaves
            // nothing of the job written.
            write_job(&mut tx, &job.writes).await?
        };
        outcomes[index] = Some(outcome);
    }
    tx.commit().await.map_err(backend)?;
    Ok(outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))).collect())
}

/// The jobs that can go in bulk (at most one conditional write, on a task no other bulk
/// job touches) and the others, by index.
fn partition(group: &[Job]) -> (Vec<usize>, Vec<usize>) {
    let mut bulk = Vec::with_capacity(group.len());
    let mut one_by_one = Vec::new();
    let mut touched = std::collections::HashSet::new();
    for (index, job) in group.iter().enumerate() {
        let conditional: Vec<&str> = job
            .writes
            .iter()
            .filter_map(|w| match w {
                Write::CreateTask(task) | Write::UpdateTask { task, .. } => Some(task.id.as_str()),
                _ => None,
            })
            .collect();
        match conditional.as_slice() {
            [] => bulk.push(index),
            [task_id] if touched.insert(*task_id) => bulk.push(index),
            _ => one_by_one.push(index),
        }
    }
    (bulk, one_by_one)
}

/// The first write of each of `jobs` that `pick` selects (a bulk job's conditional
/// write comes first), with the job's index.
fn conditional_writes<'a, T>(
    group: &'a [Job],
    jobs: &[usize],
    pick: impl Fn(&'a Write) -> Option<T>,
) -> Vec<(usize, T)> {
    jobs.iter()
        .filter_map(|&index| {
            let first = group[index].writes.first()?;
            pick(first).map(|t| (index, t))
        })
        .collect()
}

/// Applies one job's writes; the inner error is a conflict (the writes before it stay
/// until the caller undoes them).
async fn write_job(
    conn: &mut SqliteConnection,
    writes: &[Write],
) -> Result<Result<(), StoreError>, StoreError> {
    for write in writes {
        let applied = apply(conn, write).await.map_err(backend)?;
        if !applied {
            return Ok(Err(StoreError::conflict(write)));
        }
    }
    Ok(Ok(()))
}

/// One write; whether its condition held.
async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<bool, sqlx::Error> {
    let affected = match write {
        Write::CreateTask(task) => sqlx::query(
            "INSERT INTO asap_tasks (id, record, updated_at, revision) VALUES (?, ?, ?, 1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&task.id)
        .bind(task.to_json())
        .bind(task.updated_at.isoformat())
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        Write::UpdateTask { task, expected } => sqlx::query(
            "UPDATE asap_tasks SET record = ?, updated_at = ?, revision = ? WHERE id = ? AND revision = ?",
        )
        .bind(task.to_json())
        .bind(task.updated_at.isoformat())
        .bind(revision(expected + 1))
        .bind(&task.id)
        .bind(revision(*expected))
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        Write::SaveSnapshot(snapshot) => sqlx::query(
            "INSERT OR REPLACE INTO snapshots (task_id, id, version, data, checkpoint, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&snapshot.task_id)
        .bind(&snapshot.id)
        .bind(snapshot.version)
        .bind(json::to_python_default(&snapshot.data))
        .bind(i64::from(snapshot.checkpoint))
        .bind(snapshot.created_at.isoformat())
        .execute(&mut *conn)
        .await?
        .rows_affected(),
        Write::RecordUsage(event) => sqlx::query(
            "INSERT INTO usage_events (id, task_id, agent_id, consumer_id, metrics, timestamp) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(super::usage_event_id())
        .bind(&event.task_id)
        .bind(&event.agent_id)
        .bind(&event.consumer_id)
        .bind(event.metrics.to_json())
        .bind(event.timestamp.isoformat())
        .execute(&mut *conn)
        .await?
        .rows_affected(),
    };
    Ok(affected > 0 || !write.is_conditional())
}

/// A revision as SQLite stores it (INTEGER is signed; revisions never come near 2^63).
pub(super) fn revision(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
