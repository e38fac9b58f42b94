//! State that several replicas of one agent must share: the replay guard (nonces and
//! envelope ids seen within the replay window), the per-client rate limits and the
//! WebSocket retransmission cache. Each sits behind a small trait; a
//! [`SharedStateBackend`] builds all three. [`InProcess`] (the default) keeps them in
//! this process, exactly as a single server always has; with the `redis` feature,
//! [`RedisSharedState`](super::RedisSharedState) keeps them in Redis so every replica
//! behind a load balancer sees the same nonces, buckets and answers.
//!
//! When the backend cannot be reached, every check that needs it fails with
//! [`SharedStateError`]: the server answers `503` (never lets the request through
//! unchecked), and `/ready` and the health document turn `503` until it is back.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::rate_limit::{ClientRateLimiter, Limited, RateLimitRule};
use super::replay::NonceStore;
use super::websocket::Dedup;

#[cfg(feature = "redis")]
pub(crate) mod redis;

/// The shared state's backend could not answer (down, unreachable or too slow).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared state unavailable ({backend}): {reason}")]
pub struct SharedStateError {
    backend: &'static str,
    reason: String,
}

impl SharedStateError {
    /// An error of `backend` (e.g. `"redis"`) for `reason`.
    pub fn new(backend: &'static str, reason: impl Into<String>) -> Self {
        Self {
            backend,
            reason: reason.into(),
        }
    }

    /// The backend's name (e.g. `"redis"`).
    pub fn backend(&self) -> &'static str {
        self.backend
    }
}

/// Remembers keys for the replay window: a key seen twice within it is a replay.
#[async_trait::async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Records `key` and says whether this is its first use within the window
    /// (`true`) or a replay (`false`), atomically: of two concurrent calls with the same
    /// key, exactly one gets `true`.
    async fn first_use(&self, key: &str) -> Result<bool, SharedStateError>;
}

/// What a replay guard remembers, so nonces and envelope ids never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayKind {
    /// `extensions.nonce` values (`require_nonce`).
    Nonce,
    /// Envelope ids (`reject_repeated_ids`).
    EnvelopeId,
}

/// The outcome of a rate-limit check: admitted, or which rule refused and when to retry.
pub type Admission = Result<(), Limited>;

/// Per-client rate limits of `POST /asap` (every rule must admit the request).
#[async_trait::async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts a request from `client` and says whether it is admitted. Rules are taken
    /// in order; a refusal by a later rule still counts against the earlier ones.
    async fn admit(&self, client: IpAddr) -> Result<Admission, SharedStateError>;

    /// Counts `hits` requests from `client` at once (a JSON-RPC batch of that many
    /// members, as the 2.x reference charges it) and says whether they are admitted.
    /// Each rule admits all of them or none. The default asks [`admit`](Self::admit)
    /// `hits` times and stops at the first refusal (the hits before it stay counted);
    /// the built-in backends count them in one step.
    async fn admit_n(
        &self,
        client: IpAddr,
        hits: NonZeroU32,
    ) -> Result<Admission, SharedStateError> {
        for _ in 0..hits.get() {
            if let Err(limited) = self.admit(client).await? {
                return Ok(Err(limited));
            }
        }
        Ok(Ok(()))
    }

    /// Forgets clients whose buckets are full again (called every minute; a backend
    /// whose entries expire by themselves does nothing).
    fn forget_idle(&self) {}
}

/// The answer a retransmission waits for: `None` when the first arrival never
/// finished (its connection dropped mid-way), in which case it is handled as new.
pub type PendingAnswer = Pin<Box<dyn Future<Output = Option<Arc<Value>>> + Send>>;

/// The first arrival of an envelope id, which records its answer for retransmissions.
/// Dropped without [`FirstArrival::finish`], it releases the retransmissions waiting
/// for it.
#[async_trait::async_trait]
pub trait FirstArrival: Send {
    /// Records the answer (the whole JSON-RPC response object).
    async fn finish(self: Box<Self>, answer: Value);
}

/// What to do with an arriving envelope id.
pub enum Arrival {
    /// Never seen within the window (or forgotten): handle it, then record the answer.
    First(Box<dyn FirstArrival>),
    /// Seen: wait for (or take) the first arrival's answer.
    Duplicate(PendingAnswer),
}

/// The WebSocket retransmission cache (wire spec section 11.4, implementers' note):
/// the answer to an envelope that asked for an ack, kept by envelope id for a window,
/// so a retransmission (any connection) gets the same answer without a second run.
#[async_trait::async_trait]
pub trait RetransmissionCache: Send + Sync {
    /// Registers an arrival of `envelope_id`.
    async fn arrive(&self, envelope_id: &str) -> Result<Arrival, SharedStateError>;
}

/// Builds the shared state of one server and says whether its backend is reachable.
#[async_trait::async_trait]
pub trait SharedStateBackend: Send + Sync {
    /// A replay guard for `kind`, remembering each key for `ttl` (an in-process guard
    /// holds at most `capacity` keys, forgetting the oldest first).
    fn replay_guard(
        &self,
        kind: ReplayKind,
        ttl: Duration,
        capacity: usize,
    ) -> Arc<dyn ReplayGuard>;

    /// A rate limiter enforcing `rules` (`None` when there are none: limiting off).
    fn rate_limiter(&self, rules: &[RateLimitRule]) -> Option<Arc<dyn RateLimitStore>>;

    /// A retransmission cache keeping answers for `window` (an in-process cache holds
    /// at most `capacity`; zero of either turns de-duplication off).
    fn retransmission_cache(
        &self,
        window: Duration,
        capacity: usize,
    ) -> Arc<dyn RetransmissionCache>;

    /// Whether the backend answers now (for `/ready` and the health document).
    async fn ping(&self) -> Result<(), SharedStateError>;
}

/// The in-process backend: everything in this process's memory, never unavailable.
/// Each replica has its own; the default.
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcess;

#[async_trait::async_trait]
impl SharedStateBackend for InProcess {
    fn replay_guard(
        &self,
        _kind: ReplayKind,
        ttl: Duration,
        capacity: usize,
    ) -> Arc<dyn ReplayGuard> {
        Arc::new(NonceStore::new(ttl, capacity))
    }

    fn rate_limiter(&self, rules: &[RateLimitRule]) -> Option<Arc<dyn RateLimitStore>> {
        ClientRateLimiter::new(rules).map(|l| Arc::new(l) as Arc<dyn RateLimitStore>)
    }

    fn retransmission_cache(
        &self,
        window: Duration,
        capacity: usize,
    ) -> Arc<dyn RetransmissionCache> {
        Arc::new(Dedup::new(window, capacity))
    }

    async fn ping(&self) -> Result<(), SharedStateError> {
        Ok(())
    }
}

/// The `asap:*` code of the `503` answered when shared state is unavailable.
pub const DEPENDENCY_UNAVAILABLE: &str = "asap:transport/dependency_unavailable";

/// The `503` body for a request whose check needs unavailable shared state: the shape
/// of the thread-pool refusal (wire spec section 9.13), with its own code.
pub(crate) fn unavailable_body(error: &SharedStateError) -> Value {
    tracing::warn!(%error, "refusing a request: shared state unavailable");
    serde_json::json!({
        "error": "Service Temporarily Unavailable",
        "code": DEPENDENCY_UNAVAILABLE,
        "message": format!(
            "Shared state ({}) unavailable; the request was not processed. Retry later.",
            error.backend()
        ),
        "details": {"dependency": error.backend()},
    })
}
