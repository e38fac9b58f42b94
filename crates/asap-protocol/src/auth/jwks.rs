//! A JWKS fetched over HTTP, cached, and refetched on an unknown key at most once per
//! throttle interval, with one fetch at a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::document::{DocumentError, fetch_json, identity_http};

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The HTTP client could not be built ([`JwksCache::new`]).
    #[error("JWKS: the HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// The key set could not be fetched.
    #[error("JWKS unavailable at {uri}")]
    Fetch {
        /// The key set's URL.
        uri: String,
        /// Why.
        #[source]
        source: DocumentError,
    },
}

#[derive(Default)]
struct Cached {
    keys: Option<Arc<JwkSet>>,
    fetched_at: Option<Instant>,
    /// When an unknown key last caused a fetch; only these fetches are throttled, so a
    /// rotation right after start-up is still picked up.
    refreshed_at: Option<Instant>,
}

/// The key set of `uri`, cached for `ttl` (default 3600 s, as the reference's
/// middleware) and refetched on demand no more often than `min_refetch` (default 10 s).
pub struct JwksCache {
    uri: String,
    http: reqwest::Client,
    max_document: usize,
    ttl: Duration,
    min_refetch: Duration,
    state: tokio::sync::Mutex<Cached>,
    fetches: AtomicU64,
    #[cfg(feature = "server")]
    metrics: Option<crate::server::Metrics>,
}

impl JwksCache {
    /// A cache of `uri` with the default TTL and throttle, fetching with a client
    /// that times out after 10 s; fails when that client cannot be built.
    pub fn new(uri: impl Into<String>) -> Result<Self, JwksError> {
        let http = identity_http().map_err(JwksError::ClientBuild)?;
        Ok(Self::with_client(uri, http))
    }

    /// A cache using `http` to fetch.
    pub fn with_client(uri: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            uri: uri.into(),
            http,
            max_document: crate::client::MAX_IDENTITY_DOCUMENT,
            ttl: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(10),
            state: tokio::sync::Mutex::new(Cached::default()),
            fetches: AtomicU64::new(0),
            #[cfg(feature = "server")]
            metrics: None,
        }
    }

    /// Counts every fetch in `metrics` (`asap_jwks_fetches_total`,
    /// `asap_auth_call_duration_seconds{call="jwks"}`).
    #[cfg(feature = "server")]
    pub fn metrics(mut self, metrics: &crate::server::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// The largest document read (default
    /// [`MAX_IDENTITY_DOCUMENT`](crate::client::MAX_IDENTITY_DOCUMENT), 1 MiB); a larger
    /// answer is refused while it streams.
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_document = bytes;
        self
    }

    /// Sets how long a fetched key set is used.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the shortest interval between two fetches caused by unknown keys.
    pub fn min_refetch(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// How many times the key set was fetched.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn fetch(&self) -> Result<Arc<JwkSet>, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let fetched = fetch_json(self.http.get(&self.uri), "JWK set", self.max_document).await;
        #[cfg(feature = "server")]
        if let Some(metrics) = &self.metrics {
            use crate::server::FetchOutcome;
            let outcome = if fetched.is_ok() {
                FetchOutcome::Ok
            } else {
                FetchOutcome::Error
            };
            metrics.jwks_fetch(outcome, started.elapsed().as_secs_f64());
        }
        #[cfg(not(feature = "server"))]
        let _ = started;
        let set: JwkSet = fetched.map_err(|source| JwksError::Fetch {
            uri: self.uri.clone(),
            source,
        })?;
        Ok(Arc::new(set))
    }

    /// The current key set (fetched when absent or older than the TTL).
    pub async fn keys(&self) -> Result<Arc<JwkSet>, JwksError> {
        let mut state = self.state.lock().await;
        if let (Some(keys), Some(at)) = (&state.keys, state.fetched_at)
            && at.elapsed() < self.ttl
        {
            return Ok(keys.clone());
        }
        let keys = self.fetch().await?;
        state.keys = Some(keys.clone());
        state.fetched_at = Some(Instant::now());
        Ok(keys)
    }

    /// A fresh key set after a token named a key we do not have, unless such a refresh
    /// already happened less than `min_refetch` ago (then `None`: the caller keeps the
    /// current set). Fetches for the TTL do not count against this throttle.
    pub async fn refresh(&self) -> Result<Option<Arc<JwkSet>>, JwksError> {
        let mut state = self.state.lock().await;
        if state
            .refreshed_at
            .is_some_and(|at| at.elapsed() < self.min_refetch)
        {
            return Ok(None);
        }
        state.refreshed_at = Some(Instant::now());
        let keys = self.fetch().await?;
        state.keys = Some(keys.clone());
        state.fetched_at = Some(Instant::now());
        Ok(Some(keys))
    }
}
