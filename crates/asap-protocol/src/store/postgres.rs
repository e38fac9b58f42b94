//! PostgreSQL stores through sqlx: a connection pool, a statement timeout, and one
//! transaction per [`WriteBatch`]. Several agents (replicas) can share one database:
//! conditional task writes keep the state machine whole across them.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use super::{
    MeteringStore, SnapshotStore, Store, StoreError, StoredTask, TaskStore, Write, WriteBatch,
};
use crate::json;
use crate::model::{Model, StateSnapshot, Task, Timestamp, UsageEvent, UsageMetrics};

/// How a [`PostgresStore`] connects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// The database URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// Connections in the pool (16).
    pub max_connections: u32,
    /// Longest a statement may run before the server cancels it (30 s).
    pub statement_timeout: Duration,
    /// Longest a request waits for a free connection, or for a connection to open (10 s).
    pub acquire_timeout: Duration,
}

impl PostgresConfig {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            statement_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Every store in one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

fn backend(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Backend(e.into())
}

fn corrupt(e: impl Into<super::BoxError>) -> StoreError {
    StoreError::Corrupt(e.into())
}

fn revision(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl PostgresStore {
    /// Connects and brings the schema up to date (the migrations take an advisory lock,
    /// so replicas starting together apply them once).
    pub async fn connect(config: &PostgresConfig) -> Result<Self, StoreError> {
        let options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| StoreError::Config(format!("invalid PostgreSQL URL: {e}")))?;
        let timeout_ms = config.statement_timeout.as_millis().max(1).to_string();
        let options = options.options([("statement_timeout", timeout_ms.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(backend)?;
        Ok(Self { pool })
    }

    /// The connection pool (shared with the webhook queue's PostgreSQL backend).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// One write inside `tx`; whether its condition held.
async fn apply(tx: &mut sqlx::PgConnection, write: &Write) -> Result<bool, sqlx::Error> {
    let affected = match write {
        Write::CreateTask(task) => sqlx::query(
            "INSERT INTO asap_tasks (id, record, updated_at, revision) VALUES ($1, $2, $3, 1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&task.id)
        .bind(task.to_json())
        .bind(task.updated_at.isoformat())
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        Write::UpdateTask { task, expected } => sqlx::query(
            "UPDATE asap_tasks SET record = $1, updated_at = $2, revision = $3 WHERE id = $4 AND revision = $5",
        )
        .bind(task.to_json())
        .bind(task.updated_at.isoformat())
        .bind(revision(expected + 1))
        .bind(&task.id)
        .bind(revision(*expected))
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        Write::SaveSnapshot(snapshot) => sqlx::query(
            "INSERT INTO snapshots (task_id, id, version, data, checkpoint, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (task_id, version) DO UPDATE SET id = EXCLUDED.id, data = EXCLUDED.data, checkpoint = EXCLUDED.checkpoint, created_at = EXCLUDED.created_at",
        )
        .bind(&snapshot.task_id)
        .bind(&snapshot.id)
        .bind(snapshot.version)
        .bind(json::to_python_default(&snapshot.data))
        .bind(snapshot.checkpoint)
        .bind(snapshot.created_at.isoformat())
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        Write::RecordUsage(event) => sqlx::query(
            "INSERT INTO usage_events (id, task_id, agent_id, consumer_id, metrics, timestamp) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(super::usage_event_id())
        .bind(&event.task_id)
        .bind(&event.agent_id)
        .bind(&event.consumer_id)
        .bind(event.metrics.to_json())
        .bind(event.timestamp.isoformat())
        .execute(&mut *tx)
        .await?
        .rows_affected(),
    };
    Ok(affected > 0 || !write.is_conditional())
}

super::sql_reads::sql_reads!(PostgresStore, PgRow, |row| row.get("checkpoint"));

#[async_trait]
impl Store for PostgresStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for write in batch.into_ordered() {
            if !apply(&mut tx, &write).await.map_err(backend)? {
                // Dropping the transaction rolls it back.
                return Err(StoreError::conflict(&write));
            }
        }
        tx.commit().await.map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
