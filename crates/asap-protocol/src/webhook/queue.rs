//! The durable delivery queue: every accepted webhook is written to SQLite before it is
//! attempted, retried with backoff on failures worth retrying, moved to a dead-letter
//! table after the last attempt, and resumed after a crash (at least once: a delivery
//! in flight when the process died is sent again, with the same delivery id).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::sync::{Notify, Semaphore};

use super::delivery::{Outcome, Resolver, SystemResolver, attempt, check_url, http_client};
use super::signature::{
    DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TIMESTAMPED_SIGNATURE_HEADER, sign,
    sign_timestamped,
};
use super::ssrf::{BlockReason, UrlPolicy};
use crate::store::SqliteStore;

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
    /// The database failed: its error.
    #[error("webhook queue storage: {0}")]
    Storage(#[source] crate::store::BoxError),
    /// No dead letter with this id.
    #[error("no dead letter {0}")]
    NotFound(String),
}

fn storage(e: impl Into<crate::store::BoxError>) -> WebhookError {
    WebhookError::Storage(e.into())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

type DeadLetterHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

struct Shared {
    pool: SqlitePool,
    config: WebhookConfig,
    resolver: Arc<dyn Resolver>,
    http: reqwest::Client,
    wake: Notify,
    idle: Notify,
    slots: Arc<Semaphore>,
    limiter: DefaultKeyedRateLimiter<String>,
    on_dead_letter: std::sync::RwLock<Option<DeadLetterHook>>,
}

/// The durable webhook queue in the agent's SQLite database. Clones share it.
#[derive(Clone)]
pub struct WebhookQueue {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for WebhookQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookQueue")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl WebhookQueue {
    /// The queue in `store`'s database, resolving names with the system resolver;
    /// fails when the delivery HTTP client cannot be built.
    pub fn new(store: &SqliteStore, config: WebhookConfig) -> Result<Self, WebhookError> {
        Self::with_resolver(store, config, Arc::new(SystemResolver))
    }

    /// The queue with another resolver (tests, or a resolver of your own); fails when
    /// the delivery HTTP client cannot be built.
    pub fn with_resolver(
        store: &SqliteStore,
        config: WebhookConfig,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self, WebhookError> {
        let http = http_client(
            &config.policy,
            resolver.clone(),
            config.connect_timeout,
            config.timeout,
        )?;
        let rate = std::num::NonZeroU32::new(config.per_url_rate.max(1)).expect("at least one");
        Ok(Self {
            shared: Arc::new(Shared {
                pool: store.pool().clone(),
                limiter: RateLimiter::keyed(Quota::per_second(rate)),
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
                resolver,
                http,
                wake: Notify::new(),
                idle: Notify::new(),
                on_dead_letter: std::sync::RwLock::new(None),
            }),
        })
    }

    /// Where this queue's callbacks may go.
    pub fn policy(&self) -> &UrlPolicy {
        &self.shared.config.policy
    }

    /// The resolver deliveries use.
    pub fn resolver(&self) -> &dyn Resolver {
        self.shared.resolver.as_ref()
    }

    /// Calls `hook` for every delivery that becomes a dead letter.
    pub fn on_dead_letter(&self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) {
        *self
            .shared
            .on_dead_letter
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(hook));
    }

    /// Checks the URL now (scheme, host, every resolved address), writes the delivery to
    /// the database and wakes the dispatcher. Returns the delivery id.
    pub async fn enqueue(&self, webhook: Webhook) -> Result<String, WebhookError> {
        check_url(
            &webhook.url,
            &self.shared.config.policy,
            self.shared.resolver.as_ref(),
        )
        .await?;
        self.enqueue_checked(webhook).await
    }

    /// [`enqueue`](Self::enqueue) for a URL checked already (a subscription's, checked
    /// when it was made): no DNS lookup in the caller's path. Every attempt checks the
    /// addresses it connects to all the same.
    pub(crate) async fn enqueue_checked(&self, webhook: Webhook) -> Result<String, WebhookError> {
        let Prepared {
            id, body, headers, ..
        } = Prepared::new(webhook.payload, webhook.secret.as_deref(), webhook.headers);
        let queued_at = now();
        let headers = serde_json::to_string(&headers).map_err(storage)?;
        sqlx::query(
            "INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at, leased) VALUES (?, ?, ?, ?, 0, ?, ?, 0)",
        )
        .bind(&id)
        .bind(&webhook.url)
        .bind(body)
        .bind(headers)
        .bind(queued_at)
        .bind(queued_at)
        .execute(&self.shared.pool)
        .await
        .map_err(storage)?;
        self.shared.wake.notify_one();
        Ok(id)
    }

    /// Deliveries waiting or in flight.
    pub async fn pending(&self) -> Result<u64, WebhookError> {
        let row = sqlx::query("SELECT COUNT(*) FROM asap_webhook_deliveries")
            .fetch_one(&self.shared.pool)
            .await
            .map_err(storage)?;
        Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or(0))
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, WebhookError> {
        let rows = sqlx::query(
            "SELECT id, url, body, attempts, last_error FROM asap_webhook_dead_letters ORDER BY died_at",
        )
        .fetch_all(&self.shared.pool)
        .await
        .map_err(storage)?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get("id"),
                url: r.get("url"),
                body: String::from_utf8_lossy(&r.get::<Vec<u8>, _>("body")).into_owned(),
                attempts: u32::try_from(r.get::<i64, _>("attempts")).unwrap_or(0),
                last_error: r.get::<Option<String>, _>("last_error").unwrap_or_default(),
            })
            .collect())
    }

    /// Puts a dead letter back in the queue (same id, attempts from zero).
    pub async fn replay(&self, id: &str) -> Result<(), WebhookError> {
        let mut tx = self.shared.pool.begin().await.map_err(storage)?;
        let moved = sqlx::query(
            "INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at, leased) SELECT id, url, body, headers, 0, ?, created_at, 0 FROM asap_webhook_dead_letters WHERE id = ?",
        )
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
        if moved.rows_affected() == 0 {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        sqlx::query("DELETE FROM asap_webhook_dead_letters WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Delivers until `stop` completes: first takes back deliveries a previous process
    /// left in flight, then sends what is due, as many at once as allowed.
    pub async fn run(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), WebhookError> {
        sqlx::query("UPDATE asap_webhook_deliveries SET leased = 0 WHERE leased = 1")
            .execute(&self.shared.pool)
            .await
            .map_err(storage)?;
        tokio::pin!(stop);
        loop {
            let taken = self.dispatch_due().await?;
            if taken == 0
                && self.shared.slots.available_permits() == self.shared.config.max_in_flight.max(1)
            {
                // Idle: forget rate-limit state of URLs not seen lately, so the limiter
                // does not grow with every URL ever delivered to.
                self.shared.limiter.retain_recent();
                self.shared.limiter.shrink_to_fit();
                self.shared.idle.notify_waiters();
            }
            let wait = self.next_wait().await?;
            tokio::select! {
                () = &mut stop => return Ok(()),
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Waits until nothing is pending (deliveries done or dead), at most `timeout`.
    pub async fn drained(&self, timeout: Duration) -> Result<bool, WebhookError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.pending().await? == 0 {
                return Ok(true);
            }
            let idle = self.shared.idle.notified();
            if tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    () = idle => {}
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            })
            .await
            .is_err()
            {
                return Ok(self.pending().await? == 0);
            }
        }
    }

    /// How long until the next delivery is due (at most the poll interval).
    async fn next_wait(&self) -> Result<Duration, WebhookError> {
        let row = sqlx::query(
            "SELECT MIN(next_attempt_at) FROM asap_webhook_deliveries WHERE leased = 0",
        )
        .fetch_one(&self.shared.pool)
        .await
        .map_err(storage)?;
        let poll = self.shared.config.poll_interval;
        Ok(match row.get::<Option<f64>, _>(0) {
            Some(at) if self.shared.slots.available_permits() > 0 => {
                Duration::from_secs_f64((at - now()).clamp(0.0, poll.as_secs_f64()))
            }
            _ => poll,
        })
    }

    /// Leases what is due (up to the free slots) and starts an attempt for each.
    async fn dispatch_due(&self) -> Result<usize, WebhookError> {
        let free = self.shared.slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let rows = sqlx::query(
            "UPDATE asap_webhook_deliveries SET leased = 1 WHERE id IN (SELECT id FROM asap_webhook_deliveries WHERE leased = 0 AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) RETURNING id, url, body, headers, attempts",
        )
        .bind(now())
        .bind(i64::try_from(free).unwrap_or(i64::MAX))
        .fetch_all(&self.shared.pool)
        .await
        .map_err(storage)?;
        let taken = rows.len();
        for row in rows {
            // Only this loop takes slots, and it leased no more rows than were free.
            let Ok(permit) = self.shared.slots.clone().acquire_owned().await else {
                return Err(WebhookError::Storage(
                    "the delivery slots were closed".into(),
                ));
            };
            let leased = Leased {
                id: row.get("id"),
                url: row.get("url"),
                body: row.get("body"),
                headers: serde_json::from_str(&row.get::<String, _>("headers")).unwrap_or_default(),
                attempts: u32::try_from(row.get::<i64, _>("attempts")).unwrap_or(0),
            };
            let shared = self.shared.clone();
            tokio::spawn(async move {
                if let Err(error) = deliver(&shared, leased).await {
                    tracing::warn!(%error, "webhook queue storage failed");
                }
                drop(permit);
                shared.wake.notify_one();
            });
        }
        Ok(taken)
    }
}

/// A delivery ready to send: its id, canonical body, and headers (delivery id, creation
/// time, the signatures when there is a secret, then the caller's).
struct Prepared {
    id: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl Prepared {
    fn new(payload: Value, secret: Option<&[u8]>, extra: Vec<(String, String)>) -> Self {
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
/// must report the outcome at once; durable delivery is [`WebhookQueue::enqueue`].
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
enum Step {
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
    fn after(outcome: Outcome, attempts: u32, config: &WebhookConfig) -> Self {
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

struct Leased {
    id: String,
    url: String,
    body: Vec<u8>,
    headers: Vec<(String, String)>,
    attempts: u32,
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

async fn deliver(shared: &Shared, leased: Leased) -> Result<(), WebhookError> {
    // The per-URL rate limit: wait for a turn without using up an attempt.
    if let Err(not_until) = shared.limiter.check_key(&leased.url) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        sqlx::query(
            "UPDATE asap_webhook_deliveries SET leased = 0, next_attempt_at = ? WHERE id = ?",
        )
        .bind(now() + wait.as_secs_f64())
        .bind(&leased.id)
        .execute(&shared.pool)
        .await
        .map_err(storage)?;
        return Ok(());
    }
    let outcome = attempt(
        &shared.http,
        &shared.config.policy,
        &leased.url,
        leased.body.clone(),
        &leased.headers,
    )
    .await;
    let attempts = leased.attempts + 1;
    let failure = match Step::after(outcome, attempts, &shared.config) {
        Step::Delivered(status) => {
            tracing::debug!(id = %leased.id, status, attempts, "webhook delivered");
            sqlx::query("DELETE FROM asap_webhook_deliveries WHERE id = ?")
                .bind(&leased.id)
                .execute(&shared.pool)
                .await
                .map_err(storage)?;
            return Ok(());
        }
        Step::Blocked(reason) => format!("blocked: {reason}"),
        Step::GiveUp { error, .. } => error,
        Step::Again { wait, error } => {
            tracing::debug!(id = %leased.id, %error, attempts, wait_ms = wait.as_millis() as u64, "webhook attempt failed; will retry");
            sqlx::query("UPDATE asap_webhook_deliveries SET leased = 0, attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?")
                .bind(i64::from(attempts))
                .bind(now() + wait.as_secs_f64())
                .bind(&error)
                .bind(&leased.id)
                .execute(&shared.pool)
                .await
                .map_err(storage)?;
            return Ok(());
        }
    };
    tracing::warn!(id = %leased.id, url = %leased.url, attempts, error = %failure, "webhook moved to the dead letters");
    let mut tx = shared.pool.begin().await.map_err(storage)?;
    sqlx::query("INSERT OR REPLACE INTO asap_webhook_dead_letters (id, url, body, headers, attempts, last_error, created_at, died_at) SELECT id, url, body, headers, ?, ?, created_at, ? FROM asap_webhook_deliveries WHERE id = ?")
        .bind(i64::from(attempts))
        .bind(&failure)
        .bind(now())
        .bind(&leased.id)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
    sqlx::query("DELETE FROM asap_webhook_deliveries WHERE id = ?")
        .bind(&leased.id)
        .execute(&mut *tx)
        .await
        .map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    let hook = shared
        .on_dead_letter
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(hook) = hook {
        hook(&DeadLetter {
            id: leased.id,
            url: leased.url,
            body: String::from_utf8_lossy(&leased.body).into_owned(),
            attempts,
            last_error: failure,
        });
    }
    Ok(())
}
