//! The webhook queue in PostgreSQL, shared by the workers of several agents (replicas).
//! A claim locks the due rows it takes with `FOR UPDATE SKIP LOCKED`, so concurrent
//! claims take disjoint rows without waiting for each other; times are the server's
//! clock (`now()`), so the workers' clocks do not matter.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::config::{DeadLetter, WebhookError};
use super::storage::{
    DeliveryStore, MIGRATION_TABLE, StoredDelivery, attempts_from, headers_from_json,
    headers_to_json, sql_limit,
};
use crate::store::{BoxError, PostgresStore};

/// The webhook queue's tables in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresDeliveries {
    pool: PgPool,
}

fn delivery(row: &PgRow) -> StoredDelivery {
    StoredDelivery {
        id: row.get("id"),
        url: row.get("url"),
        body: row.get("body"),
        headers: headers_from_json(&row.get::<String, _>("headers")),
        attempts: attempts_from(i64::from(row.get::<i32, _>("attempts"))),
    }
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

impl PostgresDeliveries {
    /// The queue in `store`'s database, its tables brought up to date.
    pub async fn open(store: &PostgresStore) -> Result<Self, WebhookError> {
        Self::with_pool(store.pool().clone()).await
    }

    /// The queue in the database of `pool`, its tables brought up to date (the queue's
    /// migrations, recorded in their own table, `_asap_webhook_migrations`, under the
    /// migrations' advisory lock, so replicas starting together apply them once).
    pub async fn with_pool(pool: PgPool) -> Result<Self, WebhookError> {
        let mut migrator = sqlx::migrate!("./migrations/webhooks-postgres");
        migrator.dangerous_set_table_name(MIGRATION_TABLE);
        migrator
            .run(&pool)
            .await
            .map_err(|e| WebhookError::Storage(e.into()))?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl DeliveryStore for PostgresDeliveries {
    async fn insert(&self, delivery: &StoredDelivery) -> Result<(), BoxError> {
        sqlx::query(
            "INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 0, now(), now())",
        )
        .bind(&delivery.id)
        .bind(&delivery.url)
        .bind(&delivery.body)
        .bind(headers_to_json(&delivery.headers)?)
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
        // The CTE runs once (a locking CTE is always materialized), so no more than
        // `limit` rows are locked and updated.
        let rows = sqlx::query(
            "WITH due AS (SELECT id FROM asap_webhook_deliveries WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             UPDATE asap_webhook_deliveries d SET lease_owner = $1, lease_expires_at = now() + make_interval(secs => $2), next_attempt_at = now() + make_interval(secs => $2) \
             FROM due WHERE d.id = due.id RETURNING d.id, d.url, d.body, d.headers, d.attempts",
        )
        .bind(worker)
        .bind(seconds(lease))
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
        let rows = sqlx::query(
            "UPDATE asap_webhook_deliveries SET lease_expires_at = now() + make_interval(secs => $1), next_attempt_at = now() + make_interval(secs => $1) WHERE lease_owner = $2 AND id = ANY($3) RETURNING id",
        )
        .bind(seconds(lease))
        .bind(worker)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    async fn complete(&self, worker: &str, id: &str) -> Result<bool, BoxError> {
        let done =
            sqlx::query("DELETE FROM asap_webhook_deliveries WHERE id = $1 AND lease_owner = $2")
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
            "UPDATE asap_webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL, attempts = $1, next_attempt_at = now() + make_interval(secs => $2), last_error = COALESCE($3, last_error) WHERE id = $4 AND lease_owner = $5",
        )
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(seconds(after))
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
        // One statement: the delete and the insert commit together.
        let moved = sqlx::query(
            "WITH gone AS (DELETE FROM asap_webhook_deliveries WHERE id = $1 AND lease_owner = $2 RETURNING id, url, body, headers, created_at) \
             INSERT INTO asap_webhook_dead_letters (id, url, body, headers, attempts, last_error, created_at, died_at) \
             SELECT id, url, body, headers, $3, $4, created_at, clock_timestamp() FROM gone \
             ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, body = EXCLUDED.body, headers = EXCLUDED.headers, attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, created_at = EXCLUDED.created_at, died_at = EXCLUDED.died_at",
        )
        .bind(id)
        .bind(worker)
        .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }

    async fn pending(&self) -> Result<u64, BoxError> {
        let row = sqlx::query("SELECT COUNT(*) FROM asap_webhook_deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or(0))
    }

    async fn next_due(&self) -> Result<Option<Duration>, BoxError> {
        let row = sqlx::query(
            "SELECT EXTRACT(EPOCH FROM (MIN(next_attempt_at) - now()))::float8 FROM asap_webhook_deliveries",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row
            .get::<Option<f64>, _>(0)
            .map(|secs| Duration::from_secs_f64(secs.max(0.0))))
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
                attempts: attempts_from(i64::from(r.get::<i32, _>("attempts"))),
                last_error: r.get::<Option<String>, _>("last_error").unwrap_or_default(),
            })
            .collect())
    }

    async fn replay(&self, id: &str) -> Result<bool, BoxError> {
        let moved = sqlx::query(
            "WITH back AS (DELETE FROM asap_webhook_dead_letters WHERE id = $1 RETURNING id, url, body, headers, created_at) \
             INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at) \
             SELECT id, url, body, headers, 0, now(), created_at FROM back",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(moved.rows_affected() > 0)
    }
}
