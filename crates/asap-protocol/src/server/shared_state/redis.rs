//! Shared state in Redis (feature `redis`): every replica of an agent pointed at the
//! same Redis refuses an envelope replayed through another replica, counts a client's
//! requests against one set of buckets, and answers a WebSocket retransmission with the
//! answer another replica gave. See `docs/redis.md` for the keys, their lifetimes, the
//! rate-limit script and the failure behaviour.
//!
//! One multiplexed connection (the `redis` crate's connection manager, which reconnects
//! by itself) serves every request; each command is bounded by
//! [`RedisConfig::response_timeout`], so a hung Redis cannot hang a request.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde_json::Value;

use super::{
    Admission, Arrival, FirstArrival, RateLimitStore, ReplayGuard, ReplayKind, RetransmissionCache,
    SharedStateBackend, SharedStateError,
};
use crate::server::rate_limit::{Limited, RateLimitRule};

/// The backend's name in errors and answers.
const BACKEND: &str = "redis";
/// How long a WebSocket envelope being handled holds its id before another arrival may
/// take it over (renewed every third of it while the handler runs; shorter than the
/// window when the window is shorter).
const PENDING_LEASE: Duration = Duration::from_secs(10);
/// Longest pause between two looks at a retransmission's pending answer.
const POLL_MAX: Duration = Duration::from_millis(200);

/// Where the Redis shared state lives and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]`, `rediss://...` is not supported (no
    /// TLS built in); `redis+unix:///path/to/socket` for a Unix socket.
    pub url: String,
    /// Prepended to every key (`asap:`), so several agents can share one Redis.
    pub key_prefix: String,
    /// Longest wait for a connection to be established (2 s).
    pub connect_timeout: Duration,
    /// Longest wait for any one answer from Redis (1 s); past it the check that needed
    /// it fails as unavailable.
    pub response_timeout: Duration,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "asap:".to_owned(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(1),
        }
    }
}

/// Shared state in one Redis: build it with [`RedisSharedState::connect`] and give it to
/// [`ServerBuilder::shared_state`](crate::server::ServerBuilder::shared_state).
#[derive(Clone)]
pub struct RedisSharedState {
    connection: ConnectionManager,
    prefix: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisSharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSharedState")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn unavailable(error: impl std::fmt::Display) -> SharedStateError {
    SharedStateError::new(BACKEND, error.to_string())
}

impl RedisSharedState {
    /// Connects to `config.url` and checks that Redis answers (`PING`) within the
    /// connect timeout. Once connected, a lost connection is re-established by itself.
    pub async fn connect(config: RedisConfig) -> Result<Self, SharedStateError> {
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.response_timeout))
            .set_max_delay(Duration::from_secs(1));
        let connection =
            ConnectionManager::new_lazy_with_config(client, manager).map_err(unavailable)?;
        let state = Self {
            connection,
            prefix: config.key_prefix.into(),
            timeout: config.response_timeout,
        };
        let ping = redis::cmd("PING");
        let mut connection = state.connection.clone();
        match tokio::time::timeout(
            config.connect_timeout,
            ping.query_async::<()>(&mut connection),
        )
        .await
        {
            Ok(Ok(())) => Ok(state),
            Ok(Err(error)) => Err(unavailable(error)),
            Err(_) => Err(unavailable(format!(
                "no answer within {:?}",
                config.connect_timeout
            ))),
        }
    }

    /// Runs one Redis call within the response timeout.
    async fn run<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, SharedStateError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }
}

/// At least one millisecond (Redis refuses `PX 0`).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

#[async_trait::async_trait]
impl SharedStateBackend for RedisSharedState {
    fn replay_guard(
        &self,
        kind: ReplayKind,
        ttl: Duration,
        _capacity: usize,
    ) -> Arc<dyn ReplayGuard> {
        let kind = match kind {
            ReplayKind::Nonce => "nonce",
            ReplayKind::EnvelopeId => "envelope",
        };
        Arc::new(RedisReplayGuard {
            redis: self.clone(),
            kind,
            ttl_ms: millis(ttl),
        })
    }

    fn rate_limiter(&self, rules: &[RateLimitRule]) -> Option<Arc<dyn RateLimitStore>> {
        if rules.is_empty() {
            return None;
        }
        let rules = rules
            .iter()
            .map(|rule| {
                let window = u64::try_from(rule.window().as_micros()).unwrap_or(u64::MAX);
                let interval = (window / u64::from(rule.count.max(1))).max(1);
                Gcra {
                    rule: rule.clone(),
                    name: format!("{}/{}/{}", rule.count, rule.per, rule.unit),
                    interval,
                    tolerance: interval.saturating_mul(u64::from(rule.count.max(1) - 1)),
                }
            })
            .collect();
        Some(Arc::new(RedisRateLimiter {
            redis: self.clone(),
            rules,
            script: Arc::new(Script::new(include_str!("gcra.lua"))),
        }))
    }

    fn retransmission_cache(
        &self,
        window: Duration,
        capacity: usize,
    ) -> Arc<dyn RetransmissionCache> {
        Arc::new(RedisRetransmissionCache {
            redis: self.clone(),
            window,
            off: window.is_zero() || capacity == 0,
        })
    }

    async fn ping(&self) -> Result<(), SharedStateError> {
        let mut connection = self.connection.clone();
        self.run(redis::cmd("PING").query_async::<()>(&mut connection))
            .await
    }
}

/// Nonces or envelope ids: `SET <prefix><kind>:<key> 1 NX PX <ttl>`, one round trip.
struct RedisReplayGuard {
    redis: RedisSharedState,
    kind: &'static str,
    ttl_ms: u64,
}

#[async_trait::async_trait]
impl ReplayGuard for RedisReplayGuard {
    async fn first_use(&self, key: &str) -> Result<bool, SharedStateError> {
        let mut connection = self.redis.connection.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.redis.key(self.kind, key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms);
        let stored: Option<String> = self.redis.run(set.query_async(&mut connection)).await?;
        Ok(stored.is_some())
    }
}

/// One rule's GCRA parameters, in microseconds.
struct Gcra {
    rule: RateLimitRule,
    /// The key part naming the rule, `10/1/second`.
    name: String,
    interval: u64,
    tolerance: u64,
}

/// Every rule for one client in one script run (`gcra.lua`).
struct RedisRateLimiter {
    redis: RedisSharedState,
    rules: Vec<Gcra>,
    script: Arc<Script>,
}

#[async_trait::async_trait]
impl RateLimitStore for RedisRateLimiter {
    async fn admit(&self, client: IpAddr) -> Result<Admission, SharedStateError> {
        self.admit_n(client, NonZeroU32::MIN).await
    }

    async fn admit_n(
        &self,
        client: IpAddr,
        hits: NonZeroU32,
    ) -> Result<Admission, SharedStateError> {
        let mut invocation = self.script.prepare_invoke();
        for gcra in &self.rules {
            invocation.key(
                self.redis
                    .key("ratelimit", &format!("{}:{client}", gcra.name)),
            );
            invocation.arg(gcra.interval).arg(gcra.tolerance);
        }
        invocation.arg(hits.get());
        let mut connection = self.redis.connection.clone();
        let (refused_by, wait_us): (usize, u64) = self
            .redis
            .run(invocation.invoke_async(&mut connection))
            .await?;
        let Some(gcra) = refused_by.checked_sub(1).and_then(|i| self.rules.get(i)) else {
            return Ok(Ok(()));
        };
        let retry_after = wait_us.div_ceil(1_000_000).max(1);
        Ok(Err(Limited {
            limit: gcra.rule.to_string(),
            retry_after,
        }))
    }
}

/// Deletes a pending marker only if it is still this arrival's.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// Renews a pending marker's lease only if it is still this arrival's.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

/// `<prefix>ws:<envelope id>` holds `P<token>` while the first arrival is handled (a
/// lease, renewed while it runs), then `A<answer JSON>` for the window.
struct RedisRetransmissionCache {
    redis: RedisSharedState,
    window: Duration,
    off: bool,
}

/// A stored value: a first arrival in progress, or its answer.
enum Stored {
    Pending,
    Answer(Arc<Value>),
}

fn stored(value: &str) -> Stored {
    match value.strip_prefix('A') {
        Some(json) => Stored::Answer(Arc::new(
            crate::json::parse(json.as_bytes()).unwrap_or(Value::Null),
        )),
        None => Stored::Pending,
    }
}

#[async_trait::async_trait]
impl RetransmissionCache for RedisRetransmissionCache {
    async fn arrive(&self, envelope_id: &str) -> Result<Arrival, SharedStateError> {
        if self.off {
            return Ok(Arrival::First(Box::new(NoAnswer)));
        }
        let key = self.redis.key("ws", envelope_id);
        let token = format!("P{}", ulid::Ulid::new());
        let lease = PENDING_LEASE.min(self.window);
        let mut connection = self.redis.connection.clone();
        // Redis >= 7: NX with GET sets when absent and returns what was there.
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(millis(lease));
        let earlier: Option<String> = self.redis.run(set.query_async(&mut connection)).await?;
        match earlier.as_deref().map(stored) {
            None => Ok(Arrival::First(Box::new(RedisFirst::new(
                self.redis.clone(),
                key,
                token,
                lease,
                self.window,
            )))),
            Some(Stored::Answer(answer)) => {
                Ok(Arrival::Duplicate(Box::pin(async move { Some(answer) })))
            }
            Some(Stored::Pending) => Ok(Arrival::Duplicate(Box::pin(wait_for_answer(
                self.redis.clone(),
                key,
            )))),
        }
    }
}

/// Looks at a pending answer with a growing pause until it is there (`Some`), or gone:
/// the first arrival was abandoned or its replica died (`None`, handled as new). When
/// Redis stops answering, the answer is the unavailable refusal (never a second run
/// unchecked).
async fn wait_for_answer(redis: RedisSharedState, key: String) -> Option<Arc<Value>> {
    let mut pause = Duration::from_millis(5);
    let mut connection = redis.connection.clone();
    loop {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
        let get = redis::cmd("GET").arg(&key).clone();
        match redis
            .run(get.query_async::<Option<String>>(&mut connection))
            .await
        {
            Ok(None) => return None,
            Ok(Some(value)) => match stored(&value) {
                Stored::Answer(answer) => return Some(answer),
                Stored::Pending => {}
            },
            Err(error) => return Some(Arc::new(super::unavailable_body(&error))),
        }
    }
}

/// De-duplication off: nothing to record.
struct NoAnswer;

#[async_trait::async_trait]
impl FirstArrival for NoAnswer {
    async fn finish(self: Box<Self>, _answer: Value) {}
}

/// A first arrival holding its envelope id's lease in Redis.
struct RedisFirst {
    redis: RedisSharedState,
    key: String,
    token: String,
    window: Duration,
    renewal: tokio::task::JoinHandle<()>,
    finished: bool,
}

impl RedisFirst {
    fn new(
        redis: RedisSharedState,
        key: String,
        token: String,
        lease: Duration,
        window: Duration,
    ) -> Self {
        let renewal = tokio::spawn(renew_lease(
            redis.clone(),
            key.clone(),
            token.clone(),
            lease,
        ));
        Self {
            redis,
            key,
            token,
            window,
            renewal,
            finished: false,
        }
    }
}

/// Renews the pending marker every third of its lease while the handler runs.
async fn renew_lease(redis: RedisSharedState, key: String, token: String, lease: Duration) {
    let script = Script::new(RENEW);
    let mut connection = redis.connection.clone();
    loop {
        tokio::time::sleep(lease / 3).await;
        let mut renew = script.key(&key);
        renew.arg(&token).arg(millis(lease));
        if let Err(error) = redis.run(renew.invoke_async::<i64>(&mut connection)).await {
            tracing::debug!(%error, "could not renew a WebSocket envelope's lease");
        }
    }
}

#[async_trait::async_trait]
impl FirstArrival for RedisFirst {
    async fn finish(mut self: Box<Self>, answer: Value) {
        self.renewal.abort();
        let mut set = redis::cmd("SET");
        set.arg(&self.key)
            .arg(format!("A{}", crate::json::to_compact(&answer)))
            .arg("PX")
            .arg(millis(self.window));
        let mut connection = self.redis.connection.clone();
        match self.redis.run(set.query_async::<()>(&mut connection)).await {
            Ok(()) => self.finished = true,
            Err(error) => tracing::warn!(%error, "could not record a WebSocket answer"),
        }
    }
}

impl Drop for RedisFirst {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.finished {
            return;
        }
        // Abandoned (or its answer not recorded): release the id so a retransmission
        // is handled afresh instead of waiting for the lease to run out.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (redis, key, token) = (self.redis.clone(), self.key.clone(), self.token.clone());
        runtime.spawn(async move {
            let mut connection = redis.connection.clone();
            let script = Script::new(RELEASE);
            let mut release = script.key(&key);
            release.arg(&token);
            if let Err(error) = redis
                .run(release.invoke_async::<i64>(&mut connection))
                .await
            {
                tracing::debug!(%error, "could not release a WebSocket envelope's lease");
            }
        });
    }
}
