//! One delivery's attempts, for the queue and [`deliver_now`] alike: the headers and
//! signatures of a delivery, and what follows each attempt (retry after a backoff, give
//! up, or done).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::config::{Webhook, WebhookConfig, WebhookError};
use super::delivery::{Outcome, Resolver, attempt, check_url, http_client};
use super::signature::{
    DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TIMESTAMPED_SIGNATURE_HEADER, sign,
    sign_timestamped,
};
use super::ssrf::BlockReason;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A delivery ready to send: its id, canonical body, and headers (delivery id, creation
/// time, the signatures when there is a secret, then the caller's).
pub(super) struct Prepared {
    pub(super) id: String,
    pub(super) body: Vec<u8>,
    pub(super) headers: Vec<(String, String)>,
}

impl Prepared {
    pub(super) fn new(payload: Value, secret: Option<&[u8]>, extra: Vec<(String, String)>) -> Self {
        let id = crate::model::generate_id();
        let created = now() as i64;
        let body = crate::json::to_canonical(&payload).into_bytes();
        let mut headers = vec![
            (DELIVERY_ID_HEADER.to_owned(), id.clone()),
            (TIMESTAMP_HEADER.to_owned(), created.to_string()),
        ];
        if let Some(secret) = secret {
            headers.push((SIGNATURE_HEADER.to_owned(), sign(secret, &body)));
            headers.push((
                TIMESTAMPED_SIGNATURE_HEADER.to_owned(),
                sign_timestamped(secret, created, &id, &body),
            ));
        }
        headers.extend(extra);
        Self { id, body, headers }
    }
}

/// How a delivery made at once ([`deliver_now`]) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// A 2xx arrived.
    pub delivered: bool,
    /// The last HTTP status (0 when there was no answer).
    pub status_code: u16,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
}

/// Delivers `webhook` now, without the queue (nothing is stored): the same checks,
/// headers, retries and backoff as the queue, waiting for the outcome. For callers that
/// must report the outcome at once; durable delivery is
/// [`WebhookQueue::enqueue`](super::WebhookQueue::enqueue).
pub async fn deliver_now(
    webhook: Webhook,
    config: &WebhookConfig,
    resolver: Arc<dyn Resolver>,
) -> Result<DeliveryReport, WebhookError> {
    check_url(&webhook.url, &config.policy, resolver.as_ref()).await?;
    let http = http_client(
        &config.policy,
        resolver,
        config.connect_timeout,
        config.timeout,
    )?;
    let Prepared { body, headers, .. } =
        Prepared::new(webhook.payload, webhook.secret.as_deref(), webhook.headers);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let outcome = attempt(&http, &config.policy, &webhook.url, body.clone(), &headers).await;
        let (delivered, status_code, error) = match Step::after(outcome, attempts, config) {
            Step::Delivered(status) => (true, status, None),
            Step::Again { wait, .. } => {
                tokio::time::sleep(wait).await;
                continue;
            }
            Step::Blocked(reason) => return Err(WebhookError::Blocked(reason)),
            Step::GiveUp { status, error } => (false, status, Some(error)),
        };
        return Ok(DeliveryReport {
            delivered,
            status_code,
            attempts,
            error,
        });
    }
}

/// What follows an attempt, for the queue and [`deliver_now`] alike.
pub(super) enum Step {
    /// A 2xx.
    Delivered(u16),
    /// Worth another attempt after `wait` (the backoff, or `Retry-After` if longer).
    Again { wait: Duration, error: String },
    /// The target is not allowed.
    Blocked(BlockReason),
    /// Not retried (a 4xx) or out of retries: the last status (0 for none) and why.
    GiveUp { status: u16, error: String },
}

impl Step {
    /// The step after attempt number `attempts` ended with `outcome`.
    pub(super) fn after(outcome: Outcome, attempts: u32, config: &WebhookConfig) -> Self {
        match outcome {
            Outcome::Delivered(status) => Self::Delivered(status),
            Outcome::Refused(status) => Self::GiveUp {
                status,
                error: format!("HTTP {status} (a 4xx is not retried)"),
            },
            Outcome::Blocked(reason) => Self::Blocked(reason),
            Outcome::Retry {
                error, retry_after, ..
            } if attempts <= config.max_retries => Self::Again {
                wait: backoff(config, attempts).max(retry_after.unwrap_or_default()),
                error,
            },
            Outcome::Retry { status, error, .. } => Self::GiveUp {
                status: status.unwrap_or(0),
                error,
            },
        }
    }
}

/// The wait after `failures` failed attempts: `min(base × 2^(failures−1), cap)`, jittered.
pub(crate) fn backoff(config: &WebhookConfig, failures: u32) -> Duration {
    let jitter = config.jitter.clamp(0.0, 1.0);
    crate::client::exponential_backoff(
        config.backoff_base,
        config.backoff_cap,
        failures,
        1.0 - jitter..=1.0 + jitter,
    )
}
