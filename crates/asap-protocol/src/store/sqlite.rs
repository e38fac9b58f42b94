//! SQLite stores through sqlx: WAL journal, a busy timeout, and the reference's
//! schema, so a file written by either implementation can be read by the other.
//!
//! Reads go through a pool of connections (WAL readers never wait for the writer);
//! every write goes through one writer connection that commits the batches of
//! concurrent requests together ([`super::sqlite_writer`]).
//!
//! Durability: `synchronous = NORMAL` in WAL mode. A committed transaction is in the
//! WAL file (in the operating system's cache) before the caller is answered, so an
//! answered request survives a crash or kill of the process; the WAL is synced to the
//! disk at checkpoints, so a power loss or kernel crash can lose the last
//! transactions. `FULL` (a sync at every commit) survives those too, at the cost of
//! one disk flush per group: choose it with [`SqliteStore::open_with`].

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::sqlite_writer::Writer;
use super::{MeteringStore, SnapshotStore, Store, StoreError, StoredTask, TaskStore, WriteBatch};
use crate::json;
use crate::model::{Model, StateSnapshot, Task, Timestamp, UsageEvent, UsageMetrics};

/// How long a writer waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections of a file database.
const READERS: u32 = 8;
/// The writer connection's page cache (negative: KiB), 16 MiB: the pages a group
/// touches stay in memory.
const WRITER_CACHE_KIB: &str = "-16384";

/// Every store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers (and the webhook queue's statements).
    pool: SqlitePool,
    writer: Writer,
}

/// How a [`SqliteStore`] syncs commits to the disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// `synchronous = NORMAL` (the default): an answered write survives a crash of the
    /// process, not necessarily a power loss.
    #[default]
    Process,
    /// `synchronous = FULL`: an answered write survives a power loss too (one disk
    /// flush per commit group).
    PowerLoss,
}

fn backend(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Backend(e.into())
}

fn corrupt(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Corrupt(e.into())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Durability::default()).await
    }

    /// [`open`](Self::open) with a choice of durability.
    pub async fn open_with(
        path: impl AsRef<Path>,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Process => SqliteSynchronous::Normal,
                Durability::PowerLoss => SqliteSynchronous::Full,
            })
            .busy_timeout(BUSY_TIMEOUT);
        let pool = Self::open_pool(options.clone(), READERS).await?;
        // The writer leaves checkpoints to a task beside it (see Writer::start).
        let writer_options = options
            .pragma("wal_autocheckpoint", "0")
            .pragma("cache_size", WRITER_CACHE_KIB);
        let writer = Self::open_pool(writer_options, 1).await?;
        Ok(Self {
            writer: Writer::start(writer, Some(pool.clone())),
            pool,
        })
    }

    /// A private in-memory database (for tests): one connection, for reads and writes.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(backend)?;
        let pool = Self::open_pool(options, 1).await?;
        Ok(Self {
            writer: Writer::start(pool.clone(), None),
            pool,
        })
    }

    /// The connection pool (shared with the webhook queue, which keeps its tables, and
    /// its own migrations, in the same file).
    #[cfg(feature = "webhooks")]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A pool of `connections` with the schema brought up to date.
    async fn open_pool(
        options: SqliteConnectOptions,
        connections: u32,
    ) -> Result<SqlitePool, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            // A local file: a broken connection shows in the statement's own error.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(backend)?;
        // Version 2 (the webhook tables) moved to the webhook queue's own migrations;
        // databases that applied it here stay valid.
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await.map_err(backend)?;
        Ok(pool)
    }
}

super::sql_reads::sql_reads!(SqliteStore, sqlx::sqlite::SqliteRow, |row| row
    .get::<i64, _>("checkpoint")
    != 0);

#[async_trait]
impl Store for SqliteStore {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        self.writer.commit(batch).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn close(&self) {
        // Fold the WAL into the main file so a copied database is complete, then close.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await;
        self.pool.close().await;
    }
}
