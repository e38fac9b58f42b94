//! The webhook queue in SQLite: the agent's state file, or any SQLite database; the
//! workers sharing it are processes on one machine. A claim is one
//! `UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING` (SQLite runs one writer at a
//! time, so two claims never take the same row).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::config::{DeadLetter, WebhookError};
use super::storage::{
    DeliveryStore, MIGRATION_TABLE, StoredDelivery, attempts_from, headers_from_json,
    headers_to_json, sql_limit,
};
use crate::store::{BoxError, SqliteStore};

/// A transaction that takes the write lock at once (a deferred one could fail to
/// upgrade its read snapshot when another connection wrote meanwhile).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// The webhook queue's tables in a SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteDeliveries {
    pool: SqlitePool,
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn delivery(row: &SqliteRow) -> StoredDelivery {
    StoredDelivery {
        id: row.get("id"),
        url: row.get("url"),
        body: row.get("body"),
        headers: headers_from_json(&row.get::<String, _>("headers")),
        attempts: attempts_from(row.get("attempts")),
    }
}

impl SqliteDeliveries {
    /// The queue in `store`'s database (the agent's state file), its tables brought up
    /// to date.
    pub async fn open(store: &SqliteStore) -> Result<Self, WebhookError> {
        Self::with_pool(store.pool().clone()).await
    }

    /// The queue in the database of `pool`, its tables brought up to date (the queue's
    /// migrations, recorded in their own table, `_asap_webhook_migrations`).
    pub async fn with_pool(pool: SqlitePool) -> Result<Self, WebhookError> {
        let mut migrator = sqlx::migrate!("./migrations/webhooks-sqlite");
        migrator.dangerous_set_table_name(MIGRATION_TABLE);
        migrator
            .run(&pool)
            .await
            .map_err(|e| WebhookError::Storage(e.into()))?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl DeliveryStore for SqliteDeliveries {
    async fn insert(&self, delivery: &StoredDelivery) -> Result<(), BoxError> {
        let at = now();
        sqlx::query(
            "INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
        )
        .bind(&delivery.id)
        .bind(&delivery.url)
        .bind(&delivery.body)
        .bind(headers_to_json(&delivery.headers)?)
        .bind(at)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<StoredDelivery>, BoxError> {
        let at = now();
        let rows = sqlx::query(
            "UPDATE asap_webhook_deliveries SET lease_owner = ?1, lease_expires_at = ?2, next_attempt_at = ?2 WHERE id IN (SELECT id FROM asap_webhook_deliveries WHERE next_attempt_at <= ?3 ORDER BY next_attempt_at LIMIT ?4) RETURNING id, url, body, headers, attempts",
        )
        .bind(worker)
        .bind(at + lease.as_secs_f64())
        .bind(at)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(delivery).collect())
    }

    async fn renew(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, BoxError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let until = now() + lease.as_secs_f64();
        let rows = sqlx::query(
            "UPDATE asap_webhook_deliveries SET lease_expires_at = ?1, next_attempt_at = ?1 WHERE lease_owner = ?2 AND id IN (SELECT value FROM json_each(?3)) RETURNING id",
        )
        .bind(until)
        .bind(worker)
        .bind(serde_json::to_string(ids)?)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    async fn complete(&self, worker: &str, id: &str) -> Result<bool, BoxError> {
        let done =
            sqlx::query("DELETE FROM asap_webhook_deliveries WHERE id = ? AND lease_owner = ?")
                .bind(id)
                .bind(worker)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn reschedule(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        after: Duration,
        error: Option<&str>,
    ) -> Result<bool, BoxError> {
        let done = sqlx::query(
            "UPDATE asap_webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = ?, next_attempt_at = ?, last_error = COALESCE(?, last_error) WHERE id = ? AND lease_owner = ?",
        )
        .bind(i64::from(attempts))
        .bind(now() + after.as_secs_f64())
        .bind(error)
        .bind(id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn bury(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        error: &str,
    ) -> Result<bool, BoxError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let moved = sqlx::query(
            "INSERT OR REPLACE INTO asap_webhook_dead_letters (id, url, body, headers, attempts, last_error, created_at, died_at) SELECT id, url, body, headers, ?, ?, created_at, ? FROM asap_webhook_deliveries WHERE id = ? AND lease_owner = ?",
        )
        .bind(i64::from(attempts))
        .bind(error)
        .bind(now())
        .bind(id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM asap_webhook_deliveries WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn pending(&self) -> Result<u64, BoxError> {
        let row = sqlx::query("SELECT COUNT(*) FROM asap_webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or(0))
    }

    async fn next_due(&self) -> Result<Option<Duration>, BoxError> {
        let row = sqlx::query("SELECT MIN(next_attempt_at) FROM asap_webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row
            .get::<Option<f64>, _>(0)
            .map(|at| Duration::from_secs_f64((at - now()).max(0.0))))
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BoxError> {
        let rows = sqlx::query(
            "SELECT id, url, body, attempts, last_error FROM asap_webhook_dead_letters ORDER BY died_at",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get("id"),
                url: r.get("url"),
                body: String::from_utf8_lossy(&r.get::<Vec<u8>, _>("body")).into_owned(),
                attempts: attempts_from(r.get("attempts")),
                last_error: r.get::<Option<String>, _>("last_error").unwrap_or_default(),
            })
            .collect())
    }

    async fn replay(&self, id: &str) -> Result<bool, BoxError> {
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let moved = sqlx::query(
            "INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at) SELECT id, url, body, headers, 0, ?, created_at FROM asap_webhook_dead_letters WHERE id = ?",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM asap_webhook_dead_letters WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
