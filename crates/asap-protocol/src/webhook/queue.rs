//! The durable delivery queue: every accepted webhook is written to the database
//! (SQLite or PostgreSQL, behind [`DeliveryStore`]) before it is attempted, retried with
//! backoff on failures worth retrying, moved to a dead-letter table after the last
//! attempt, and resumed after a crash.
//!
//! Several workers ([`WebhookQueue::run`], in one process or in several agents) can
//! share one database: each claims due deliveries under a lease of its own, renews the
//! leases of the attempts it is making, and takes over a delivery only when its lease
//! expired. Delivery is at least once: a delivery whose worker died mid-attempt is sent
//! again when its lease expires, with the same delivery id.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use super::config::{DeadLetter, Webhook, WebhookConfig, WebhookError};
use super::delivery::{Resolver, SystemResolver, attempt, check_url, http_client};
use super::send::{Prepared, Step};
use super::sqlite_deliveries::SqliteDeliveries;
use super::ssrf::UrlPolicy;
use super::storage::{DeliveryStore, StoredDelivery};
use crate::store::SqliteStore;

type DeadLetterHook = Arc<dyn Fn(&DeadLetter) + Send + Sync>;

/// Stands in for the metrics in a build without them.
#[cfg(not(feature = "server"))]
struct NoMetrics;

#[cfg(not(feature = "server"))]
impl NoMetrics {
    fn webhook_attempt(&self, _: Outcome) {}
    fn webhook_attempt_duration(&self, _: f64) {}
}

#[cfg(feature = "server")]
use crate::server::WebhookOutcome as Outcome;

/// The outcomes of an attempt, in a build without metrics.
#[cfg(not(feature = "server"))]
#[derive(Clone, Copy)]
enum Outcome {
    Delivered,
    Retry,
    DeadLetter,
    Blocked,
    RateLimited,
}

/// The shortest lease the queue uses, whatever the configuration says.
const MIN_LEASE: Duration = Duration::from_millis(30);

struct Shared {
    store: Arc<dyn DeliveryStore>,
    config: WebhookConfig,
    resolver: Arc<dyn Resolver>,
    http: reqwest::Client,
    wake: Notify,
    idle: Notify,
    slots: Arc<Semaphore>,
    limiter: DefaultKeyedRateLimiter<String>,
    on_dead_letter: std::sync::RwLock<Option<DeadLetterHook>>,
    /// Where attempts are counted (`WebhookQueue::metrics`, feature `server`).
    #[cfg(feature = "server")]
    metrics: std::sync::OnceLock<crate::server::Metrics>,
    /// When the queue depth was last read for the metrics (a `COUNT` over the table:
    /// at most once per poll interval, never without metrics).
    #[cfg(feature = "server")]
    depth_read: Mutex<Option<tokio::time::Instant>>,
}

impl Shared {
    /// Records into the queue's metrics, when it has some.
    #[cfg(feature = "server")]
    fn record(&self, f: impl FnOnce(&crate::server::Metrics)) {
        if let Some(metrics) = self.metrics.get() {
            f(metrics);
        }
    }

    #[cfg(not(feature = "server"))]
    fn record(&self, _: impl FnOnce(&NoMetrics)) {}

    /// Sets the queue-depth gauge, when the queue has metrics and the poll interval has
    /// passed since the last read (the first pass always reads).
    #[cfg(feature = "server")]
    async fn record_depth(&self) {
        let Some(metrics) = self.metrics.get() else {
            return;
        };
        {
            let mut last = self
                .depth_read
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let now = tokio::time::Instant::now();
            if last.is_some_and(|at| now.duration_since(at) < self.config.poll_interval) {
                return;
            }
            *last = Some(now);
        }
        if let Ok(depth) = self.store.pending().await {
            metrics.webhook_queue_depth(depth);
        }
    }

    #[cfg(not(feature = "server"))]
    async fn record_depth(&self) {}

    fn lease(&self) -> Duration {
        self.config.lease.max(MIN_LEASE)
    }
}

/// The durable webhook queue. Clones share it; each [`run`](Self::run) is one worker.
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

/// One running worker: its id (the owner of its leases) and the deliveries it is
/// attempting.
struct Worker {
    id: String,
    in_flight: Mutex<HashSet<String>>,
}

impl Worker {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            id: format!("{}-{}", std::process::id(), crate::model::generate_id()),
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A delivery this worker is attempting, for as long as the value lives (its lease is
/// renewed meanwhile).
struct InFlight {
    worker: Arc<Worker>,
    id: String,
}

impl InFlight {
    fn new(worker: &Arc<Worker>, id: &str) -> Self {
        worker.in_flight().insert(id.to_owned());
        Self {
            worker: worker.clone(),
            id: id.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.worker.in_flight().remove(&self.id);
    }
}

impl WebhookQueue {
    /// The queue in `store`, resolving names with the system resolver; fails when the
    /// delivery HTTP client cannot be built.
    pub fn new(store: Arc<dyn DeliveryStore>, config: WebhookConfig) -> Result<Self, WebhookError> {
        Self::with_resolver(store, config, Arc::new(SystemResolver))
    }

    /// The queue in the agent's SQLite state file (`store`'s database), its tables
    /// brought up to date; see [`new`](Self::new).
    pub async fn sqlite(store: &SqliteStore, config: WebhookConfig) -> Result<Self, WebhookError> {
        Self::new(Arc::new(SqliteDeliveries::open(store).await?), config)
    }

    /// The queue in the agent's PostgreSQL database (`store`'s), its tables brought up to
    /// date; several agents on one database share it. See [`new`](Self::new).
    #[cfg(feature = "postgres")]
    pub async fn postgres(
        store: &crate::store::PostgresStore,
        config: WebhookConfig,
    ) -> Result<Self, WebhookError> {
        let deliveries = super::postgres_deliveries::PostgresDeliveries::open(store).await?;
        Self::new(Arc::new(deliveries), config)
    }

    /// The queue with another resolver (tests, or a resolver of your own); fails when
    /// the delivery HTTP client cannot be built.
    pub fn with_resolver(
        store: Arc<dyn DeliveryStore>,
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
                store,
                limiter: RateLimiter::keyed(Quota::per_second(rate)),
                slots: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
                config,
                resolver,
                http,
                wake: Notify::new(),
                idle: Notify::new(),
                on_dead_letter: std::sync::RwLock::new(None),
                #[cfg(feature = "server")]
                metrics: std::sync::OnceLock::new(),
                #[cfg(feature = "server")]
                depth_read: Mutex::new(None),
            }),
        })
    }

    /// Records the queue's depth and every attempt's outcome and duration in `metrics`
    /// (`asap_webhook_*`); the first call wins.
    #[cfg(feature = "server")]
    pub fn metrics(&self, metrics: &crate::server::Metrics) {
        let _ = self.shared.metrics.set(metrics.clone());
    }

    /// Where this queue's callbacks may go.
    pub fn policy(&self) -> &UrlPolicy {
        &self.shared.config.policy
    }

    /// The resolver deliveries use.
    pub fn resolver(&self) -> &dyn Resolver {
        self.shared.resolver.as_ref()
    }

    /// Calls `hook` for every delivery that becomes a dead letter (in the worker that
    /// buried it).
    pub fn on_dead_letter(&self, hook: impl Fn(&DeadLetter) + Send + Sync + 'static) {
        *self
            .shared
            .on_dead_letter
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
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
        let Prepared { id, body, headers } =
            Prepared::new(webhook.payload, webhook.secret.as_deref(), webhook.headers);
        let delivery = StoredDelivery {
            id,
            url: webhook.url,
            body,
            headers,
            attempts: 0,
        };
        self.shared
            .store
            .insert(&delivery)
            .await
            .map_err(WebhookError::Storage)?;
        self.shared.wake.notify_one();
        Ok(delivery.id)
    }

    /// Deliveries waiting or in flight (in any worker).
    pub async fn pending(&self) -> Result<u64, WebhookError> {
        self.shared
            .store
            .pending()
            .await
            .map_err(WebhookError::Storage)
    }

    /// Every dead letter, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, WebhookError> {
        self.shared
            .store
            .dead_letters()
            .await
            .map_err(WebhookError::Storage)
    }

    /// Puts a dead letter back in the queue (same id, attempts from zero).
    pub async fn replay(&self, id: &str) -> Result<(), WebhookError> {
        let found = self
            .shared
            .store
            .replay(id)
            .await
            .map_err(WebhookError::Storage)?;
        if !found {
            return Err(WebhookError::NotFound(id.to_owned()));
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Delivers, as one worker, until `stop` completes: claims what is due under a
    /// lease of this worker's (as many at once as allowed), renews the leases of its
    /// attempts every third of the lease, and takes nothing another live worker holds.
    /// When `stop` completes, it claims no more and returns once its attempts in flight
    /// have ended. Dropping the future instead abandons them: their leases expire and
    /// another worker (or the next run) sends them again.
    ///
    /// A storage failure is logged and the queue tries again after the poll interval.
    pub async fn run(&self, stop: impl Future<Output = ()>) -> Result<(), WebhookError> {
        let worker = Worker::new();
        let mut attempts = JoinSet::new();
        let mut renewals = tokio::time::interval(self.shared.lease() / 3);
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            let wait = match self.dispatch_due(&worker, &mut attempts).await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::warn!(%error, "webhook queue: storage failed; trying again");
                    self.shared.config.poll_interval
                }
            };
            tokio::select! {
                () = &mut stop => break,
                () = self.shared.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = renewals.tick() => self.renew(&worker).await,
                Some(ended) = attempts.join_next() => report_panic(ended),
            }
        }
        while !attempts.is_empty() {
            tokio::select! {
                Some(ended) = attempts.join_next() => report_panic(ended),
                _ = renewals.tick() => self.renew(&worker).await,
            }
        }
        Ok(())
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

    /// Renews the leases of `worker`'s attempts in flight.
    async fn renew(&self, worker: &Worker) {
        let ids: Vec<String> = worker.in_flight().iter().cloned().collect();
        if ids.is_empty() {
            return;
        }
        match self
            .shared
            .store
            .renew(&worker.id, &ids, self.shared.lease())
            .await
        {
            // An attempt may have ended meanwhile; a lease really lost shows when its
            // attempt records the outcome.
            Ok(kept) if kept.len() < ids.len() => {
                tracing::debug!(
                    renewed = kept.len(),
                    held = ids.len(),
                    "webhook leases: some not renewed"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "webhook queue: renewing leases failed"),
        }
    }

    /// Claims what is due (up to the free slots), starts an attempt for each, and says
    /// how long to wait before looking again (at most the poll interval).
    async fn dispatch_due(
        &self,
        worker: &Arc<Worker>,
        attempts: &mut JoinSet<()>,
    ) -> Result<Duration, WebhookError> {
        let shared = &self.shared;
        let free = shared.slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            shared
                .store
                .claim(&worker.id, free, shared.lease())
                .await
                .map_err(WebhookError::Storage)?
        };
        let taken = claimed.len();
        shared.record_depth().await;
        for delivery in claimed {
            // Only this loop takes slots, and it claimed no more rows than were free.
            let Ok(permit) = shared.slots.clone().acquire_owned().await else {
                return Err(WebhookError::Storage(
                    "the delivery slots were closed".into(),
                ));
            };
            let in_flight = InFlight::new(worker, &delivery.id);
            let shared = shared.clone();
            attempts.spawn(async move {
                if let Err(error) = deliver(&shared, &in_flight.worker.id, delivery).await {
                    tracing::warn!(%error, "webhook queue storage failed");
                }
                drop(in_flight);
                drop(permit);
                shared.wake.notify_one();
            });
        }
        let all_free = shared.slots.available_permits() == shared.config.max_in_flight.max(1);
        if taken == 0 && all_free {
            // Idle: forget rate-limit state of URLs not seen lately, so the limiter
            // does not grow with every URL ever delivered to.
            shared.limiter.retain_recent();
            shared.limiter.shrink_to_fit();
            shared.idle.notify_waiters();
        }
        let poll = shared.config.poll_interval;
        if taken == free && free > 0 {
            // Possibly more due: look again once a slot frees (which wakes the loop).
            return Ok(poll);
        }
        let next = shared
            .store
            .next_due()
            .await
            .map_err(WebhookError::Storage)?;
        Ok(match next {
            Some(wait) if shared.slots.available_permits() > 0 => wait.min(poll),
            _ => poll,
        })
    }
}

fn report_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended
        && error.is_panic()
    {
        tracing::error!(%error, "a webhook attempt panicked");
    }
}

/// Logs an outcome not recorded because the lease was lost.
fn lease_lost(id: &str, outcome: &str) {
    tracing::warn!(
        id,
        outcome,
        "webhook lease lost before the outcome was recorded (this worker stalled past its lease and another took the delivery): not recorded"
    );
}

async fn deliver(
    shared: &Shared,
    worker: &str,
    leased: StoredDelivery,
) -> Result<(), WebhookError> {
    let store = shared.store.as_ref();
    // The per-URL rate limit: wait for a turn without using up an attempt.
    if let Err(not_until) = shared.limiter.check_key(&leased.url) {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        if !store
            .reschedule(worker, &leased.id, leased.attempts, wait, None)
            .await
            .map_err(WebhookError::Storage)?
        {
            lease_lost(&leased.id, "rate limited");
        }
        shared.record(|m| m.webhook_attempt(Outcome::RateLimited));
        return Ok(());
    }
    let started = tokio::time::Instant::now();
    let outcome = attempt(
        &shared.http,
        &shared.config.policy,
        &leased.url,
        leased.body.clone(),
        &leased.headers,
    )
    .await;
    shared.record(|m| m.webhook_attempt_duration(started.elapsed().as_secs_f64()));
    let attempts = leased.attempts + 1;
    let step = Step::after(outcome, attempts, &shared.config);
    let counted = match &step {
        Step::Delivered(_) => Outcome::Delivered,
        Step::Again { .. } => Outcome::Retry,
        Step::Blocked(_) => Outcome::Blocked,
        Step::GiveUp { .. } => Outcome::DeadLetter,
    };
    shared.record(|m| m.webhook_attempt(counted));
    let failure = match step {
        Step::Delivered(status) => {
            tracing::debug!(id = %leased.id, status, attempts, "webhook delivered");
            if !store
                .complete(worker, &leased.id)
                .await
                .map_err(WebhookError::Storage)?
            {
                lease_lost(&leased.id, "delivered");
            }
            return Ok(());
        }
        Step::Blocked(reason) => format!("blocked: {reason}"),
        Step::GiveUp { error, .. } => error,
        Step::Again { wait, error } => {
            tracing::debug!(id = %leased.id, %error, attempts, wait_ms = wait.as_millis() as u64, "webhook attempt failed; will retry");
            if !store
                .reschedule(worker, &leased.id, attempts, wait, Some(&error))
                .await
                .map_err(WebhookError::Storage)?
            {
                lease_lost(&leased.id, "retry");
            }
            return Ok(());
        }
    };
    if !store
        .bury(worker, &leased.id, attempts, &failure)
        .await
        .map_err(WebhookError::Storage)?
    {
        lease_lost(&leased.id, "dead letter");
        return Ok(());
    }
    tracing::warn!(id = %leased.id, url = %leased.url, attempts, error = %failure, "webhook moved to the dead letters");
    let hook = shared
        .on_dead_letter
        .read()
        .unwrap_or_else(PoisonError::into_inner)
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
