//! What the webhook queue needs from its database ([`DeliveryStore`]), with leases per
//! worker so that several workers (processes, replicas) share one queue safely.
//!
//! A worker *claims* due deliveries: each claimed row records the worker and a lease
//! expiry, and while leased the delivery's next attempt time is that expiry, so it
//! becomes claimable again only when the lease runs out. The worker renews the leases
//! of the deliveries it is attempting, and every outcome it writes (completed,
//! rescheduled, buried) applies only while the lease is still its own: a worker that
//! lost a lease (it stalled longer than the lease, and another worker took the delivery)
//! writes nothing.

use std::time::Duration;

use async_trait::async_trait;

use super::config::DeadLetter;
use crate::store::BoxError;

/// One delivery as stored: what an attempt sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The delivery id (also the `X-ASAP-Delivery-Id` header).
    pub id: String,
    /// The callback URL.
    pub url: String,
    /// The body, byte for byte as sent.
    pub body: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// The storage of a [`WebhookQueue`](super::WebhookQueue): deliveries waiting or in
/// flight, their leases, and the dead letters. Times are the store's clock (the
/// database server's for PostgreSQL), given to it as durations from now.
///
/// Implementations: [`SqliteDeliveries`](super::SqliteDeliveries) and, with the
/// `postgres` feature, [`PostgresDeliveries`](super::PostgresDeliveries).
#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    /// Adds a delivery, due now, with no attempt made.
    async fn insert(&self, delivery: &StoredDelivery) -> Result<(), BoxError>;

    /// Leases to `worker`, for `lease`, up to `limit` deliveries that are due (waiting
    /// and due, or leased with the lease expired), oldest due first; each is claimed
    /// by one worker only, even when several claim at once.
    async fn claim(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<StoredDelivery>, BoxError>;

    /// Extends to `lease` from now the leases `worker` still holds among `ids`;
    /// returns the ids renewed (a missing one was completed, or lost to another worker).
    async fn renew(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, BoxError>;

    /// Removes a delivered delivery, if `worker` still holds its lease (else `false`).
    async fn complete(&self, worker: &str, id: &str) -> Result<bool, BoxError>;

    /// Releases the lease and makes the delivery due `after` from now, recording the
    /// attempts made and (if given) the last error; only if `worker` still holds the
    /// lease (else `false`).
    async fn reschedule(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        after: Duration,
        error: Option<&str>,
    ) -> Result<bool, BoxError>;

    /// Moves the delivery to the dead letters with its attempts and last error, if
    /// `worker` still holds its lease (else `false`).
    async fn bury(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        error: &str,
    ) -> Result<bool, BoxError>;

    /// Deliveries waiting or in flight.
    async fn pending(&self) -> Result<u64, BoxError>;

    /// How long until a delivery is claimable (zero if one is now); `None` when the
    /// queue is empty.
    async fn next_due(&self) -> Result<Option<Duration>, BoxError>;

    /// Every dead letter, oldest first.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BoxError>;

    /// Puts a dead letter back in the queue, due now, attempts from zero (same id);
    /// `false` when there is no dead letter `id`.
    async fn replay(&self, id: &str) -> Result<bool, BoxError>;
}

/// The queue's own migration table (its migrations are versioned apart from the
/// state store's, in the same database).
pub(crate) const MIGRATION_TABLE: &str = "_asap_webhook_migrations";

/// Attempts as stored (a non-negative integer column).
pub(crate) fn attempts_from(value: i64) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

/// The headers as stored: a JSON array of `[name, value]` pairs.
pub(crate) fn headers_to_json(headers: &[(String, String)]) -> Result<String, BoxError> {
    Ok(serde_json::to_string(headers)?)
}

/// The headers from their stored JSON (none if unreadable: the row was not ours).
pub(crate) fn headers_from_json(json: &str) -> Vec<(String, String)> {
    serde_json::from_str(json).unwrap_or_default()
}

/// A limit as a SQL integer.
pub(crate) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
