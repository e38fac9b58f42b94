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
use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::sqlite_bulk::{self as bulk, Row};
use super::{StoreError, WriteBatch};

/// Batches waiting for the writer before callers wait for room.
const QUEUE_DEPTH: usize = 4096;
/// Batches committed in one transaction at most.
const MAX_GROUP: usize = 512;
/// Times the writer yields to other tasks before a commit, gathering their writes.
const GATHER_YIELDS: usize = 2;
/// How often the WAL is folded into the database file when something was written.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1000);

struct Job {
    /// The writes, conditional ones first.
    rows: Vec<Row>,
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
        f.debug_struct("Job").field("rows", &self.rows).finish()
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
            rows: batch.into_ordered().iter().map(Row::encode).collect(),
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
/// Most jobs go in bulk (at most one conditional write each, on a task no other job of
/// the group touches). When every job does, the whole group is first written in one
/// execution, expecting every condition to hold (conflicts are rare): if one fails,
/// that transaction is rolled back and the group written again as below.
///
/// Otherwise the conditional rows of the bulk jobs are written in one execution that
/// returns the tasks written (so each job learns whether its condition held), then
/// the other rows of the jobs that passed; then the remaining jobs one by one.
async fn write_group(
    pool: &SqlitePool,
    group: &[Job],
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let mut conn = pool.acquire().await.map_err(backend)?;
    let (bulk, one_by_one) = partition(group);
    if one_by_one.is_empty() {
        let mut tx = conn.begin().await.map_err(backend)?;
        let rows = group.iter().flat_map(|job| job.rows.iter());
        let written = bulk::write(&mut tx, rows.clone()).await.map_err(backend)?;
        if rows.filter_map(Row::task_id).all(|id| written.contains(id)) {
            tx.commit().await.map_err(backend)?;
            return Ok(group.iter().map(|_| Ok(())).collect());
        }
        tx.rollback().await.map_err(backend)?;
    }

    let mut tx = conn.begin().await.map_err(backend)?;
    let conditional = bulk.iter().flat_map(|&i| group[i].rows.first());
    let written = bulk::write(&mut tx, conditional.filter(|row| row.task_id().is_some()))
        .await
        .map_err(backend)?;
    let mut outcomes: Vec<Result<(), StoreError>> = group.iter().map(|_| Ok(())).collect();
    let mut passed = Vec::with_capacity(bulk.len());
    for index in bulk {
        match group[index].rows.first() {
            Some(row) if row.task_id().is_some_and(|id| !written.contains(id)) => {
                outcomes[index] = Err(row.conflict());
            }
            _ => passed.push(index),
        }
    }
    let unconditional = passed
        .iter()
        .flat_map(|&index| group[index].rows.iter())
        .filter(|row| row.task_id().is_none());
    bulk::write(&mut tx, unconditional).await.map_err(backend)?;

    for index in one_by_one {
        let job = &group[index];
        outcomes[index] = if job.savepoint {
            let mut inner = tx.begin().await.map_err(backend)?;
            match bulk::one_by_one(&mut inner, &job.rows)
                .await
                .map_err(backend)?
            {
                Ok(()) => inner.commit().await.map_err(backend).map(|()| Ok(()))?,
                Err(conflict) => {
                    inner.rollback().await.map_err(backend)?;
                    Err(conflict)
                }
            }
        } else {
            // At most one conditional write, and it comes first: a conflict leaves
            // nothing of the job written.
            bulk::one_by_one(&mut tx, &job.rows)
                .await
                .map_err(backend)?
        };
    }
    tx.commit().await.map_err(backend)?;
    Ok(outcomes)
}

/// The jobs that can go in bulk (at most one conditional write, on a task no other bulk
/// job touches) and the others, by index.
fn partition(group: &[Job]) -> (Vec<usize>, Vec<usize>) {
    let mut bulk = Vec::with_capacity(group.len());
    let mut one_by_one = Vec::new();
    let mut touched = std::collections::HashSet::new();
    for (index, job) in group.iter().enumerate() {
        let mut conditional = job.rows.iter().filter_map(Row::task_id);
        match (conditional.next(), conditional.next()) {
            (None, _) => bulk.push(index),
            (Some(task_id), None) if touched.insert(task_id) => bulk.push(index),
            _ => one_by_one.push(index),
        }
    }
    (bulk, one_by_one)
}
