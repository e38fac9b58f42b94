//! The queue's settings and the values it takes and gives: webhooks, dead letters,
//! errors.

use std::time::Duration;

use serde_json::Value;

use super::ssrf::{BlockReason, UrlPolicy};

/// Limits and timing of webhook delivery.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Where callbacks may go (default: `https` to public addresses only).
    pub policy: UrlPolicy,
    /// Time to connect (10 s).
    pub connect_timeout: Duration,
    /// Time for the whole attempt (10 s).
    pub timeout: Duration,
    /// Retries after the first attempt (5): six attempts in all.
    pub max_retries: u32,
    /// Wait after the first failed attempt (1 s), doubling ...
    pub backoff_base: Duration,
    /// ... up to this (16 s): 1, 2, 4, 8, 16 s.
    pub backoff_cap: Duration,
    /// Each wait is multiplied by a random factor in `1 ± jitter` (0.2).
    pub jitter: f64,
    /// Deliveries per second per URL, with as large a burst (10); excess deliveries wait.
    pub per_url_rate: u32,
    /// Attempts in flight at once (64).
    pub max_in_flight: usize,
    /// How often the queue is checked when nothing wakes it (1 s).
    pub poll_interval: Duration,
    /// How long a worker's claim on a delivery lasts (30 s; keep it longer than
    /// `timeout`). The worker renews it every third of that while the attempt runs; a
    /// worker that dies loses it when it expires, and another worker then sends the
    /// delivery again, with the same delivery id.
    pub lease: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            policy: UrlPolicy::strict(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            max_retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(16),
            jitter: 0.2,
            per_url_rate: 10,
            max_in_flight: 64,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(30),
        }
    }
}

/// A webhook to send. Its `Debug` output hides the secret.
#[derive(Clone, PartialEq)]
pub struct Webhook {
    /// The callback URL.
    pub url: String,
    /// The JSON payload; sent in the canonical form (keys sorted, ASCII) the signature covers.
    pub payload: Value,
    /// The shared secret; without one the delivery is unsigned.
    pub secret: Option<Vec<u8>>,
    /// Extra headers (they may override the standard ones, as in the reference).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("payload", &self.payload)
            .field("secret", &self.secret.as_ref().map(|_| crate::REDACTED))
            // Names only: a header may carry a credential.
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Webhook {
    /// A signed webhook.
    pub fn signed(url: impl Into<String>, payload: Value, secret: impl Into<Vec<u8>>) -> Self {
        Self {
            url: url.into(),
            payload,
            secret: Some(secret.into()),
            headers: Vec::new(),
        }
    }
}

/// A delivery that will not be attempted again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The delivery id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// The body as sent.
    pub body: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last one failed.
    pub last_error: String,
}

/// Why the queue refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The delivery HTTP client could not be built.
    #[error("webhook delivery: the HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// The URL is not an allowed target.
    #[error("webhook URL rejected: {0}")]
    Blocked(#[from] BlockReason),
    /// The queue's database failed: its error.
    #[error("webhook queue storage: {0}")]
    Storage(#[source] crate::store::BoxError),
    /// No dead letter with this id.
    #[error("no dead letter {0}")]
    NotFound(String),
}
