//! SQLite stores through sqlx: WAL journal, a busy timeout, and the reference's
//! schema, so a file written by either implementation can be read by the other.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{MeteringStore, SnapshotStore, Store, StoreError, TaskStore};
use crate::json;
use crate::model::{Model, StateSnapshot, Task, Timestamp, UsageEvent, UsageMetrics};

/// How long a writer waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Every store in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
        let options = SqliteConnectOptions::new()
            .filename(path.as_ref())
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        Self::connect(options).await
    }

    /// A private in-memory database (for tests).
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(backend)?;
        let store = Self::connect_with(options, 1).await?;
        Ok(store)
    }

    /// The connection pool (shared with the webhook queue, which keeps its tables in the
    /// same file).
    #[cfg(feature = "webhooks")]
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn connect(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        Self::connect_with(options, 8).await
    }

    async fn connect_with(
        options: SqliteConnectOptions,
        connections: u32,
    ) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(options)
            .await
            .map_err(backend)?;
        sqlx::migrate!("./migrations")
            .run(&pool)
            .await
            .map_err(backend)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl TaskStore for SqliteStore {
    async fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO asap_tasks (id, record, updated_at) VALUES (?, ?, ?)")
            .bind(&task.id)
            .bind(task.to_json())
            .bind(task.updated_at.isoformat())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_task(&self, task_id: &str) -> Result<Option<Task>, StoreError> {
        let row = sqlx::query("SELECT record FROM asap_tasks WHERE id = ?")
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| Task::from_json(r.get::<String, _>(0).as_bytes()).map_err(corrupt))
            .transpose()
    }
}

fn snapshot_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StateSnapshot, StoreError> {
    let data = json::parse(row.get::<String, _>("data").as_bytes()).map_err(corrupt)?;
    let serde_json::Value::Object(data) = data else {
        return Err(StoreError::Corrupt(
            "snapshot data is not a JSON object".into(),
        ));
    };
    Ok(StateSnapshot {
        id: row.get("id"),
        task_id: row.get("task_id"),
        version: row.get("version"),
        data,
        checkpoint: row.get::<i64, _>("checkpoint") != 0,
        created_at: row
            .get::<String, _>("created_at")
            .parse::<Timestamp>()
            .map_err(corrupt)?,
    })
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO snapshots (task_id, id, version, data, checkpoint, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&snapshot.task_id)
        .bind(&snapshot.id)
        .bind(snapshot.version)
        .bind(json::to_python_default(&snapshot.data))
        .bind(i64::from(snapshot.checkpoint))
        .bind(snapshot.created_at.isoformat())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<StateSnapshot>, StoreError> {
        let query = match version {
            Some(v) => sqlx::query("SELECT * FROM snapshots WHERE task_id = ? AND version = ?")
                .bind(task_id)
                .bind(v),
            None => sqlx::query(
                "SELECT * FROM snapshots WHERE task_id = ? ORDER BY version DESC LIMIT 1",
            )
            .bind(task_id),
        };
        let row = query.fetch_optional(&self.pool).await.map_err(backend)?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM snapshots WHERE task_id = ? ORDER BY version")
            .bind(task_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
    }

    async fn delete(&self, task_id: &str, version: Option<i64>) -> Result<bool, StoreError> {
        let query = match version {
            Some(v) => sqlx::query("DELETE FROM snapshots WHERE task_id = ? AND version = ?")
                .bind(task_id)
                .bind(v),
            None => sqlx::query("DELETE FROM snapshots WHERE task_id = ?").bind(task_id),
        };
        Ok(query
            .execute(&self.pool)
            .await
            .map_err(backend)?
            .rows_affected()
            > 0)
    }
}

#[async_trait]
impl MeteringStore for SqliteStore {
    async fn record(&self, event: &UsageEvent) -> Result<(), StoreError> {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        sqlx::query("INSERT INTO usage_events (id, task_id, agent_id, consumer_id, metrics, timestamp) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(format!("evt_{}", hex::encode(raw)))
            .bind(&event.task_id)
            .bind(&event.agent_id)
            .bind(&event.consumer_id)
            .bind(event.metrics.to_json())
            .bind(event.timestamp.isoformat())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn query(
        &self,
        agent_id: &str,
        start: Option<Timestamp>,
        end: Option<Timestamp>,
    ) -> Result<Vec<UsageEvent>, StoreError> {
        let rows = sqlx::query("SELECT * FROM usage_events WHERE agent_id = ?")
            .bind(agent_id)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            events.push(UsageEvent {
                task_id: row.get("task_id"),
                agent_id: row.get("agent_id"),
                consumer_id: row.get("consumer_id"),
                metrics: UsageMetrics::from_json(row.get::<String, _>("metrics").as_bytes())
                    .map_err(corrupt)?,
                timestamp: row
                    .get::<String, _>("timestamp")
                    .parse::<Timestamp>()
                    .map_err(corrupt)?,
            });
        }
        Ok(super::within(events, start, end))
    }
}

#[async_trait]
impl Store for SqliteStore {
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
