//! RFC 7662 token introspection (wire spec section 10.4), for opaque tokens, with a
//! cache bounded by each token's remaining lifetime.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::document::{DocumentError, fetch_json, identity_http};

/// What the provider says about an active token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// `sub`.
    pub subject: Option<String>,
    /// `scope`, split.
    pub scopes: Vec<String>,
    /// `exp` (Unix seconds).
    pub expires_at: Option<i64>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `username`.
    pub username: Option<String>,
    /// `token_type`.
    pub token_type: Option<String>,
    /// Every member of the answer (for `iss`, `aud` or an identity claim).
    pub claims: serde_json::Map<String, Value>,
}

/// Why introspection failed (the provider did not answer usefully).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IntrospectionError {
    /// The HTTP client could not be built ([`TokenIntrospector::new`]).
    #[error("token introspection: the HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// The provider's answer could not be had.
    #[error("token introspection at {url} failed")]
    Fetch {
        /// The introspection endpoint.
        url: String,
        /// Why.
        #[source]
        source: DocumentError,
    },
}

/// Asks the provider whether opaque tokens are active, as the reference's
/// `TokenIntrospector` does (HTTP Basic client authentication, form body), and caches
/// answers: an active token until 30 s before its `exp` (at most 3600 s; 60 s without
/// `exp`), an inactive one for 60 s; at most `capacity` tokens (default 1000).
pub struct TokenIntrospector {
    url: String,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
    max_document: usize,
    capacity: usize,
    cache: std::sync::Mutex<HashMap<String, (Option<TokenInfo>, Instant)>>,
    #[cfg(feature = "server")]
    metrics: Option<crate::server::Metrics>,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(crate::model::pyrepr::python_str(other)),
    }
}

impl TokenIntrospector {
    /// An introspector for the endpoint `url`, authenticating as `client_id`, asking
    /// with a client that times out after 10 s; fails when that client cannot be built.
    pub fn new(
        url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Result<Self, IntrospectionError> {
        let http = identity_http().map_err(IntrospectionError::ClientBuild)?;
        Ok(Self {
            url: url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            http,
            max_document: crate::client::MAX_IDENTITY_DOCUMENT,
            capacity: 1000,
            cache: std::sync::Mutex::new(HashMap::new()),
            #[cfg(feature = "server")]
            metrics: None,
        })
    }

    /// Counts every request to the provider in `metrics`
    /// (`asap_introspection_requests_total`,
    /// `asap_auth_call_duration_seconds{call="introspection"}`).
    #[cfg(feature = "server")]
    pub fn metrics(mut self, metrics: &crate::server::Metrics) -> Self {
        self.metrics = Some(metrics.clone());
        self
    }

    /// Records one request to the provider: `Some(active)`, or `None` when it failed.
    fn record(&self, active: Option<bool>, started: Instant) {
        #[cfg(feature = "server")]
        if let Some(metrics) = &self.metrics {
            use crate::server::IntrospectionOutcome as O;
            let outcome = match active {
                Some(true) => O::Active,
                Some(false) => O::Inactive,
                None => O::Error,
            };
            metrics.introspection(outcome, started.elapsed().as_secs_f64());
        }
        #[cfg(not(feature = "server"))]
        let _ = (active, started);
    }

    /// The largest document read (default
    /// [`MAX_IDENTITY_DOCUMENT`](crate::client::MAX_IDENTITY_DOCUMENT), 1 MiB); a larger
    /// answer is refused while it streams.
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_document = bytes;
        self
    }

    /// Caches at most `capacity` answers.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// `Some` for an active token, `None` for an inactive one.
    pub async fn introspect(&self, token: &str) -> Result<Option<TokenInfo>, IntrospectionError> {
        if let Some((answer, until)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token)
            && Instant::now() < *until
        {
            return Ok(answer.clone());
        }
        let request = self
            .http
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .header("accept", "application/json")
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        let started = Instant::now();
        let fetched = fetch_json::<Value>(request, "introspection answer", self.max_document).await;
        if fetched.is_err() {
            self.record(None, started);
        }
        let body = fetched.map_err(|source| IntrospectionError::Fetch {
            url: self.url.clone(),
            source,
        })?;
        let answer = (body.get("active") == Some(&Value::Bool(true))).then(|| TokenInfo {
            subject: text(body.get("sub")),
            scopes: match body.get("scope") {
                Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            },
            expires_at: body.get("exp").and_then(Value::as_f64).map(|f| f as i64),
            client_id: text(body.get("client_id")),
            username: text(body.get("username")),
            token_type: text(body.get("token_type")),
            // `active` was found, so the answer is an object: nothing is lost here.
            claims: body.as_object().cloned().unwrap_or_default(),
        });
        self.record(Some(answer.is_some()), started);
        let ttl = match &answer {
            None => Some(Duration::from_secs(60)),
            Some(TokenInfo {
                expires_at: None, ..
            }) => Some(Duration::from_secs(60)),
            Some(TokenInfo {
                expires_at: Some(exp),
                ..
            }) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                // A token within 30 s of its expiry (negative): not cached.
                u64::try_from(exp - now - 30)
                    .ok()
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(s.min(3600)))
            }
        };
        if let Some(ttl) = ttl.filter(|_| self.capacity > 0) {
            let mut cache = self
                .cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= self.capacity {
                let now = Instant::now();
                cache.retain(|_, (_, until)| now < *until);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(token.to_owned(), (answer.clone(), Instant::now() + ttl));
        }
        Ok(answer)
    }
}
