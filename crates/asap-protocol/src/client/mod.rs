//! The ASAP HTTP client (wire spec sections 9.14 and 13.3): sends envelopes over
//! JSON-RPC, retries transient failures with backoff, guards each peer with a circuit
//! breaker, and discovers agents through their well-known manifest with HTTP caching.
//!
//! ```no_run
//! use asap_protocol::client::Client;
//! use asap_protocol::model::{Envelope, TaskRequest};
//!
//! # async fn run() -> Result<(), asap_protocol::client::ClientError> {
//! let client = Client::builder().build()?;
//! let manifest = client.discover("http://127.0.0.1:8000").await?;
//! let request = Envelope::new("urn:asap:agent:me", manifest.id.clone(),
//!     TaskRequest::new("conv_1", "echo", serde_json::json!({"text": "hi"})));
//! let response = client.send("http://127.0.0.1:8000", &request).await?;
//! println!("{}", response.payload_type);
//! # Ok(()) }
//! ```

mod batch;
pub(crate) mod body;
mod breaker;
mod discovery;
mod error;
mod metrics;
mod retry;
mod stream;
pub(crate) mod tls;
mod websocket;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use tracing::Instrument;

pub use batch::BatchAnswer;
pub use body::{MAX_IDENTITY_DOCUMENT, MAX_REGISTRY_DOCUMENT, ResponseLimits};
pub use breaker::{BreakerConfig, CircuitBreakers};
pub use discovery::DiscoveryCache;
#[cfg(feature = "signing")]
pub use discovery::{ManifestSignatureError, ManifestTrust};
pub(crate) use discovery::{fetch_health, max_age};
pub use error::{
    ClientError, Disconnect, RequestError, ResponseError, SUPPORTED_ASAP_VERSIONS, TlsError,
    WebSocketError,
};
pub(crate) use retry::exponential_backoff;
pub use retry::{RetryPolicy, parse_retry_after};
pub use stream::EnvelopeStream;
pub use websocket::{TransportMode, WebSocketOptions, http_base_url, websocket_url};

use crate::json;
use crate::model::{Dialect, Envelope, generate_id};
use crate::rpc::{JsonRpcRequest, RequestId};

/// Supplies the bearer token for each request (for example OAuth2 client credentials,
/// refreshed before expiry).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// The token to send now, or why there is none.
    async fn bearer_token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>>;
}

#[cfg(feature = "oauth2")]
#[async_trait::async_trait]
impl TokenSource for crate::auth::ClientCredentials {
    async fn bearer_token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.token().await?.secret)
    }
}

#[cfg(feature = "oauth2")]
#[async_trait::async_trait]
impl TokenSource for crate::auth::RefreshingToken {
    async fn bearer_token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.token().await?.secret)
    }
}

/// Where the bearer token of each request or WebSocket handshake comes from.
#[derive(Clone, Default)]
pub(crate) enum Credentials {
    #[default]
    None,
    Static(String),
    Source(Arc<dyn TokenSource>),
}

impl Credentials {
    /// The token to send now, if any (a source may refresh it first).
    pub(crate) async fn token(&self) -> Result<Option<String>, ClientError> {
        match self {
            Self::None => Ok(None),
            Self::Static(token) => Ok(Some(token.clone())),
            Self::Source(source) => source
                .bearer_token()
                .await
                .map(Some)
                .map_err(ClientError::NoToken),
        }
    }
}

/// Bodies at least this large are sent Brotli-compressed (when that makes them smaller).
pub const COMPRESSION_THRESHOLD: usize = 1024;

/// Configures a [`Client`].
#[derive(Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ClientBuilder {
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
    breaker: Option<BreakerConfig>,
    compression: bool,
    bearer_token: Option<String>,
    token_source: Option<Arc<dyn TokenSource>>,
    require_https: bool,
    transport: TransportMode,
    websocket: WebSocketOptions,
    root_certificates: Vec<Vec<u8>>,
    limits: ResponseLimits,
    /// The `ASAP-Version` value offered on HTTP sends (none: a 1.1 request).
    asap_version: Option<HeaderValue>,
    /// The most envelopes [`Client::batch`] sends at once.
    max_batch_size: usize,
    /// Which signed manifests discovery accepts.
    #[cfg(feature = "signing")]
    manifest_trust: ManifestTrust,
    /// Where sends are counted (`ClientBuilder::metrics`).
    metrics: metrics::SendMetrics,
    /// Whether sends carry W3C trace context (`traceparent`, `tracestate`).
    trace_context: bool,
}

/// Hides the bearer token.
impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("compression", &self.compression)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| crate::REDACTED),
            )
            .field(
                "token_source",
                &self.token_source.as_ref().map(|_| "TokenSource"),
            )
            .field("require_https", &self.require_https)
            .field("transport", &self.transport)
            .field("websocket", &self.websocket)
            .field("root_certificates", &self.root_certificates.len())
            .field("limits", &self.limits)
            .field("asap_version", &self.asap_version)
            .field("max_batch_size", &self.max_batch_size)
            .field("trace_context", &self.trace_context)
            .finish()
    }
}

impl std::fmt::Debug for dyn TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource")
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            breaker: Some(BreakerConfig::default()),
            compression: true,
            bearer_token: None,
            token_source: None,
            require_https: true,
            transport: TransportMode::Auto,
            websocket: WebSocketOptions::default(),
            root_certificates: Vec::new(),
            limits: ResponseLimits::default(),
            asap_version: None,
            max_batch_size: crate::rpc::DEFAULT_MAX_BATCH_SIZE,
            #[cfg(feature = "signing")]
            manifest_trust: ManifestTrust::default(),
            metrics: metrics::SendMetrics::default(),
            trace_context: true,
        }
    }
}

impl ClientBuilder {
    /// Records every [`Client::send`] in `metrics`' `asap_transport_send_total`,
    /// `asap_transport_send_errors_total`, `asap_transport_retries_total` and
    /// `asap_transport_send_duration_seconds`, as the reference's client does.
    #[cfg(feature = "server")]
    pub fn metrics(mut self, metrics: &crate::server::Metrics) -> Self {
        self.metrics.metrics = Some(metrics.clone());
        self
    }

    /// Total time allowed for one attempt (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retry policy (default: 3 attempts, 1 s doubling, capped at 60 s, 10 % jitter).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Circuit breaker per base URL (default on: 5 failures, 60 s); `None` turns it off.
    pub fn circuit_breaker(mut self, config: Option<BreakerConfig>) -> Self {
        self.breaker = config;
        self
    }

    /// Compress request bodies of 1 KiB or more with Brotli (default on).
    pub fn compression(mut self, on: bool) -> Self {
        self.compression = on;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Asks `source` for the bearer token of every request (takes precedence over
    /// [`ClientBuilder::bearer_token`]).
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Refuse plain `http://` except to loopback hosts (default on, as the reference).
    pub fn require_https(mut self, on: bool) -> Self {
        self.require_https = on;
        self
    }

    /// How agents are reached (default [`TransportMode::Auto`]: by the URL's scheme).
    pub fn transport(mut self, mode: TransportMode) -> Self {
        self.transport = mode;
        self
    }

    /// Settings of the WebSocket transport.
    pub fn websocket(mut self, options: WebSocketOptions) -> Self {
        self.websocket = options;
        self
    }

    /// Also trusts the root certificates in `pem` (one or more `CERTIFICATE` blocks),
    /// for `https://` and `wss://` alike: for agents behind a private CA. The platform's
    /// trust store still applies. A malformed document fails [`build`](Self::build).
    ///
    /// ```no_run
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = asap_protocol::client::Client::builder()
    ///     .root_certificates_pem(std::fs::read("corporate-ca.pem")?)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates.push(pem.into());
        self
    }

    /// The largest response bodies the client reads (default [`ResponseLimits::default`]:
    /// 16 MiB answers, 1 MiB manifests, 64 KiB health documents).
    pub fn response_limits(mut self, limits: ResponseLimits) -> Self {
        self.limits = limits;
        self
    }

    #[cfg(feature = "signing")]
    /// Verifies signed manifests at discovery (off by default, as the 2.5.10
    /// client's `verify_signatures`): a signed document must verify against the key
    /// pinned for its agent ([`ClientBuilder::trusted_manifest_key`]) or, with trust
    /// level `verified`, be signed by a CA key ([`ClientBuilder::trusted_ca_key`]).
    /// Off, a signed document is read without checking its signature.
    pub fn verify_manifest_signatures(mut self, on: bool) -> Self {
        self.manifest_trust.verify = on;
        self
    }

    #[cfg(feature = "signing")]
    /// Pins the Ed25519 key that signs the manifest of the agent at `url` (its base
    /// URL or its manifest URL) and turns verification on: the manifest must then be a
    /// signed document that verifies against this key (an unsigned one is refused).
    pub fn trusted_manifest_key(mut self, url: &str, key: crate::signing::VerifyingKey) -> Self {
        self.manifest_trust.pin(url, key);
        self.manifest_trust.verify = true;
        self
    }

    #[cfg(feature = "signing")]
    /// Trusts an ASAP CA key: a signed manifest with trust level `verified` whose
    /// `public_key` is this key is accepted for any agent. Turns verification on.
    pub fn trusted_ca_key(mut self, key: crate::signing::VerifyingKey) -> Self {
        self.manifest_trust.cas.push(key);
        self.manifest_trust.verify = true;
        self
    }

    /// Offers these protocol versions, most preferred first, in an `ASAP-Version`
    /// header on every HTTP send (`POST /asap`), e.g. `[V2_2, V2_1]` sends
    /// `ASAP-Version: 2.2, 2.1` as the 2.5.10 reference client does. Default (and with an
    /// empty list): the offer follows the agent's manifest once [`Client::discover`] has
    /// read it: the 2.x versions its `supported_versions` lists (`2.2` before `2.1`), or
    /// no header (a 1.1 request, byte for byte as before) for a 1.1 manifest, an agent
    /// not discovered yet, or a list without 2.1/2.2. A server that
    /// accepts none of them answers `-32000` ([`ClientError::Remote`]). Responses are
    /// still read as 1.1. The WebSocket handshake offers the same (the dialect of a
    /// WebSocket connection is negotiated once, at the upgrade; one pooled connection
    /// per agent and offer).
    pub fn asap_versions(mut self, versions: &[Dialect]) -> Self {
        let offer: Vec<&str> = versions.iter().map(|d| d.as_str()).collect();
        self.asap_version = (!offer.is_empty()).then(|| {
            HeaderValue::from_str(&offer.join(", ")).expect("version tokens are valid headers")
        });
        self
    }

    /// The most envelopes [`Client::batch`] sends in one batch (default 50, the 2.5.10
    /// reference server's limit); a larger batch fails before it is sent.
    pub fn max_batch_size(mut self, max: usize) -> Self {
        self.max_batch_size = max;
        self
    }

    /// Whether sends carry W3C trace context (default on, as the reference's
    /// instrumented client): every HTTP attempt a `traceparent` (and `tracestate` when
    /// the current context has one) continuing the current trace with a new span id, or
    /// starting one; the WebSocket handshake likewise, and each WebSocket envelope
    /// without a `trace_id` gets `trace_id` and `extensions.span_id`
    /// ([`crate::trace_context`]).
    pub fn trace_context(mut self, on: bool) -> Self {
        self.trace_context = on;
        self
    }

    /// Builds the client.
    pub fn build(mut self) -> Result<Client, ClientError> {
        self.websocket.trace_context = self.trace_context;
        let mut extra_roots = Vec::new();
        for pem in &self.root_certificates {
            extra_roots.extend(tls::certificates_from_pem(pem)?);
        }
        // Made here, not on the first wss:// call, so a bad root fails the build for
        // both transports alike.
        let websocket_tls = tls::websocket_config(&extra_roots)?;
        let certificates = extra_roots
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(TlsError::HttpsRoot)?;
        let make = |redirects: reqwest::redirect::Policy| {
            let http = crate::client::tls::http_builder()
                .connect_timeout(self.connect_timeout)
                .user_agent(concat!("asap-protocol-rs/", env!("CARGO_PKG_VERSION")))
                .redirect(redirects);
            if certificates.is_empty() {
                http
            } else {
                http.tls_certs_merge(certificates.clone())
            }
        };
        // JSON-RPC sends follow no redirect (a 307 would re-POST the envelope, and its
        // token, elsewhere); discovery and health follow same-origin redirects only.
        let http = make(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .build()?;
        let fetch = make(same_origin_redirects())
            .timeout(self.timeout)
            .build()?;
        // Streams last as long as the agent streams: the timeout bounds each wait.
        let stream_http = make(reqwest::redirect::Policy::none())
            .read_timeout(self.timeout)
            .build()?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                fetch,
                stream_http,
                breakers: self.breaker.clone().map(CircuitBreakers::new),
                discovery: self.discovery_cache(),
                sockets: websocket::Pool::new(websocket_tls),
                next_id: AtomicU64::new(1),
                tracer: crate::spans::Tracer::global(),
                config: self,
            }),
        })
    }
}

impl ClientBuilder {
    fn discovery_cache(&self) -> DiscoveryCache {
        let cache = DiscoveryCache::new(self.limits);
        #[cfg(feature = "signing")]
        let cache = cache.with_trust(self.manifest_trust.clone());
        cache
    }
}

/// What one HTTP attempt of a send posts.
struct Attempt<'a> {
    base: &'a str,
    body: &'a [u8],
    coding: Option<&'static str>,
    key: &'a str,
    id: &'a RequestId,
    offer: Option<&'a HeaderValue>,
    /// The trace context the request carries (`traceparent`): the attempt's span's.
    trace: &'a crate::trace_context::TraceContext,
}

struct Inner {
    http: reqwest::Client,
    /// The client for discovery and health: same-origin redirects.
    fetch: reqwest::Client,
    /// The client for `POST /asap/stream`: a read timeout, no overall one.
    stream_http: reqwest::Client,
    breakers: Option<CircuitBreakers>,
    discovery: DiscoveryCache,
    sockets: websocket::Pool,
    next_id: AtomicU64,
    /// Where the exported `asap.client.send` spans go (the global provider's, at build).
    tracer: crate::spans::Tracer,
    config: ClientBuilder,
}

/// An ASAP client; cheap to clone (clones share connections, breakers and caches).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Follows a redirect only to the origin (scheme, host, port) of the first URL, at most
/// five times: a manifest or health document is never fetched from another host (a
/// cross-host redirect could point at a cloud metadata address or an internal service).
pub(crate) fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let Some(first) = attempt.previous().first() else {
            return attempt.stop();
        };
        let same = first.scheme() == attempt.url().scheme()
            && first.host() == attempt.url().host()
            && first.port_or_known_default() == attempt.url().port_or_known_default();
        if !same {
            let refusal = format!("redirect to another origin refused: {}", attempt.url());
            attempt.error(refusal)
        } else if attempt.previous().len() > 5 {
            attempt.error("more than 5 redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Whether `url` names this machine: a loopback IP literal (`127.0.0.0/8`, `::1`) or
/// exactly `localhost`. Decided from the parsed host, never from its text: a name that
/// merely starts with `127.` (`127.evil.com`, `127.0.0.1.evil.com`) is a remote host.
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `base_url` without a trailing `/`, checked for scheme; a WebSocket URL stands for
/// the agent's matching `http(s)://` base.
fn normalize_base(base_url: &str, require_https: bool) -> Result<String, ClientError> {
    let converted;
    let base_url = if websocket::is_websocket_url(base_url) {
        converted = http_base_url(base_url);
        converted.as_str()
    } else {
        base_url
    };
    let url = reqwest::Url::parse(base_url).map_err(|source| RequestError::InvalidUrl {
        url: base_url.to_owned(),
        source,
    })?;
    match url.scheme() {
        "https" => {}
        "http" if !require_https || is_loopback(&url) => {}
        "http" => {
            return Err(RequestError::InsecureTransport {
                url: base_url.to_owned(),
            }
            .into());
        }
        other => {
            return Err(RequestError::UnsupportedScheme {
                scheme: other.to_owned(),
            }
            .into());
        }
    }
    Ok(base_url.trim_end_matches('/').to_owned())
}

impl Client {
    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Sends `envelope` to the agent at `base_url` (`POST {base_url}/asap`) and returns
    /// the response envelope. Transient failures (connection errors, timeouts, 429
    /// honouring `Retry-After`, 5xx) are retried with the same request id and
    /// idempotency key; JSON-RPC errors and other 4xx are not.
    ///
    /// `ws://` and `wss://` URLs (or [`TransportMode::WebSocket`]) go over the agent's
    /// WebSocket instead: one pooled connection per agent, state-changing envelopes
    /// (`task.request`, `task.cancel`, `state.restore`, `message.send`) marked
    /// `requires_ack` and retransmitted while unacknowledged, reconnection with backoff,
    /// and HTTP as a fallback while the agent's circuit breaker is open.
    pub async fn send(&self, base_url: &str, envelope: &Envelope) -> Result<Envelope, ClientError> {
        let started = tokio::time::Instant::now();
        let result = if self.uses_websocket(base_url) {
            self.send_websocket(base_url, envelope).await
        } else {
            self.send_http(base_url, envelope).await
        };
        self.inner.config.metrics.record(&result, started);
        result
    }

    /// Whether a request to `base_url` goes over the WebSocket (the transport mode).
    fn uses_websocket(&self, base_url: &str) -> bool {
        match self.inner.config.transport {
            TransportMode::Auto => websocket::is_websocket_url(base_url),
            TransportMode::Http => false,
            TransportMode::WebSocket => true,
        }
    }

    /// Envelopes the agent at `url` pushes over its WebSocket (opening the connection
    /// if needed): `task.update` progress and the like, sent as frames with `id: null`.
    pub async fn subscribe(
        &self,
        url: &str,
    ) -> Result<tokio::sync::broadcast::Receiver<Envelope>, ClientError> {
        let url = self.checked_websocket_url(url)?;
        let offer = self.websocket_offer(&url);
        let connection = self
            .inner
            .sockets
            .get(
                (&url, offer),
                self.credentials(),
                &self.inner.config.websocket,
            )
            .await?;
        Ok(connection.subscribe())
    }

    /// Open WebSocket connections in the pool.
    pub fn websocket_connections(&self) -> usize {
        self.inner.sockets.len()
    }

    fn checked_websocket_url(&self, url: &str) -> Result<String, ClientError> {
        // The scheme rules of HTTP apply to the matching http(s) URL.
        normalize_base(url, self.inner.config.require_https)?;
        Ok(websocket_url(url))
    }

    async fn send_websocket(
        &self,
        base_url: &str,
        envelope: &Envelope,
    ) -> Result<Envelope, ClientError> {
        let url = self.checked_websocket_url(base_url)?;
        let offer = self.websocket_offer(&url);
        let mut envelope = envelope_to_send(envelope, offer.is_some())?.into_owned();
        if websocket::needs_ack(&envelope.payload_type) {
            envelope.requires_ack = true;
        }
        // Before the spans: an open circuit sends over HTTP, which makes its own.
        let options = &self.inner.config.websocket;
        if let Some(breakers) = &self.inner.breakers
            && let Err(open) = breakers.allow(&url)
        {
            if options.http_fallback {
                tracing::debug!(%url, "circuit open; sending over HTTP");
                return self.send_http(&url, &envelope).await;
            }
            return Err(ClientError::CircuitOpen(open));
        }
        let span = tracing::info_span!(
            "asap.client.send",
            otel.kind = "client",
            url.full = %url,
            asap.envelope.id = envelope.id.as_str(),
            asap.payload_type = envelope.payload_type.as_str(),
        );
        let (mut exported, context) = self.start_send_span(&url, &envelope, None);
        if self.inner.config.trace_context && envelope.trace_id.is_none() {
            // The reference's envelope convention (section 9.12): the calling span's
            // trace and span ids, which a reference server continues.
            envelope.trace_id = Some(context.parent.trace_id_hex());
            envelope
                .extensions
                .get_or_insert_with(Default::default)
                .insert("span_id".into(), context.parent.span_id_hex().into());
        }
        let outcome = async {
            let connection = self
                .inner
                .sockets
                .get((&url, offer), self.credentials(), options)
                .await?;
            connection
                .call(&envelope, self.inner.config.timeout, options)
                .await
        }
        .instrument(span)
        .await;
        exported.set_ok(outcome.is_ok());
        exported.end();
        if let Some(breakers) = &self.inner.breakers {
            match &outcome {
                Ok(_) | Err(ClientError::Http { .. }) => breakers.success(&url),
                Err(_) => breakers.failure(&url),
            }
        }
        answer_envelope(&outcome?)
    }

    /// The `ASAP-Version` a WebSocket handshake to `url` offers, by the rules of
    /// `POST /asap`: the configured offer, else the 2.x versions the agent's cached
    /// manifest lists, else none (the 1.1 dialect).
    fn websocket_offer(&self, url: &str) -> Option<HeaderValue> {
        self.inner.config.asap_version.clone().or_else(|| {
            let base = http_base_url(url);
            self.inner.discovery.version_offer(&base)
        })
    }

    /// Where bearer tokens come from: the token source, else the fixed token.
    /// The `Authorization` header value for the next request, when the client has
    /// credentials.
    async fn authorization(&self) -> Result<Option<HeaderValue>, ClientError> {
        let Some(token) = self.credentials().token().await? else {
            return Ok(None);
        };
        HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Some)
            .map_err(|e| RequestError::InvalidToken(e).into())
    }

    /// The headers of a 2.x-only exchange (batch, stream): a JSON body, `accept`, the
    /// 2.x `ASAP-Version` offer and the `Authorization` value when the client has
    /// credentials.
    async fn headers_2x(&self, accept: &'static str) -> Result<HeaderMap, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
        headers.insert("asap-version", self.offer_2x());
        if let Some(value) = self.authorization().await? {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        if self.inner.config.trace_context {
            crate::trace_context::for_outgoing().inject(&mut headers);
        }
        Ok(headers)
    }

    /// The `ASAP-Version` a 2.x-only exchange (batch, stream) offers: the configured
    /// offer, else the 2.x client's `2.2, 2.1`.
    fn offer_2x(&self) -> HeaderValue {
        self.inner
            .config
            .asap_version
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static("2.2, 2.1"))
    }

    fn credentials(&self) -> Credentials {
        match (
            &self.inner.config.token_source,
            &self.inner.config.bearer_token,
        ) {
            (Some(source), _) => Credentials::Source(source.clone()),
            (None, Some(token)) => Credentials::Static(token.clone()),
            (None, None) => Credentials::None,
        }
    }

    async fn send_http(
        &self,
        base_url: &str,
        envelope: &Envelope,
    ) -> Result<Envelope, ClientError> {
        let base = normalize_base(base_url, self.inner.config.require_https)?;
        // An explicit offer (`ClientBuilder::asap_versions`) wins; otherwise the agent's
        // cached manifest decides (2.x versions it lists) or nothing is offered (1.1).
        let offer = self
            .inner
            .config
            .asap_version
            .clone()
            .or_else(|| self.inner.discovery.version_offer(&base));
        let envelope = envelope_to_send(envelope, offer.is_some())?;
        let id = RequestId::from(format!(
            "req-{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let key = generate_id();
        let mut request = JsonRpcRequest::send(&envelope, id.clone());
        request
            .params
            .insert("idempotency_key".into(), key.clone().into());
        let body = json::to_python_default(&request).into_bytes();
        let (body, coding) = self.maybe_compress(body);
        let policy = &self.inner.config.retry;
        let mut attempt = 1;
        loop {
            if let Some(breakers) = &self.inner.breakers {
                breakers.allow(&base).map_err(ClientError::CircuitOpen)?;
            }
            let span = tracing::info_span!(
                "asap.client.send",
                otel.kind = "client",
                url.full = %format_args!("{base}/asap"),
                asap.envelope.id = envelope.id.as_str(),
                asap.payload_type = envelope.payload_type.as_str(),
                asap.attempt = attempt,
                http.response.status_code = tracing::field::Empty,
                otel.status_code = tracing::field::Empty,
            );
            let url = format!("{base}/asap");
            let (mut exported, context) = self.start_send_span(&url, &envelope, Some(attempt));
            let sending = Attempt {
                base: &base,
                body: &body,
                coding,
                key: &key,
                id: &id,
                offer: offer.as_ref(),
                trace: &context,
            };
            let outcome = self
                .attempt(sending, &mut exported)
                .instrument(span.clone())
                .await;
            span.record(
                "otel.status_code",
                if outcome.is_ok() { "OK" } else { "ERROR" },
            );
            exported.set_ok(outcome.is_ok());
            exported.end();
            let breaker_failure = matches!(&outcome, Err((e, _)) if e.is_transient());
            if let Some(breakers) = &self.inner.breakers {
                if breaker_failure {
                    breakers.failure(&base)
                } else {
                    breakers.success(&base)
                }
            }
            match outcome {
                Err((error, retry_after))
                    if error.is_transient() && attempt < policy.max_attempts.max(1) =>
                {
                    let delay = policy.delay_after(attempt, retry_after);
                    tracing::debug!(%error, attempt, delay_ms = delay.as_millis() as u64, "retrying");
                    tokio::time::sleep(delay).await;
                    self.inner.config.metrics.retry();
                    attempt += 1;
                }
                Err((error, _)) => return Err(error),
                Ok(envelope) => return Ok(envelope),
            }
        }
    }

    fn maybe_compress(&self, body: Vec<u8>) -> (Vec<u8>, Option<&'static str>) {
        if !self.inner.config.compression || body.len() < COMPRESSION_THRESHOLD {
            return (body, None);
        }
        let mut out = Vec::with_capacity(body.len() / 2);
        {
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            if writer.write_all(&body).is_err() {
                return (body, None);
            }
        }
        if out.len() < body.len() {
            (out, Some("br"))
        } else {
            (body, None)
        }
    }

    /// Starts the exported `asap.client.send` span of one attempt, a child of the
    /// current trace context (the handler's, in a server) or, outside one, of the
    /// current OpenTelemetry context: the span and the context the request carries.
    fn start_send_span(
        &self,
        url: &str,
        envelope: &Envelope,
        attempt: Option<u32>,
    ) -> (crate::spans::Span, crate::trace_context::TraceContext) {
        let parent = crate::trace_context::current();
        let (mut span, context) = self.inner.tracer.start(
            "asap.client.send",
            crate::spans::Kind::Client,
            parent.as_ref(),
        );
        if span.is_recording() {
            span.set_str("url.full", url);
            span.set_str("asap.envelope.id", &envelope.id);
            span.set_str("asap.payload_type", &envelope.payload_type);
            if let Some(attempt) = attempt {
                span.set_i64("asap.attempt", i64::from(attempt));
            }
        }
        (span, context)
    }

    async fn attempt(
        &self,
        sending: Attempt<'_>,
        exported: &mut crate::spans::Span,
    ) -> Result<Envelope, (ClientError, Option<Duration>)> {
        let Attempt {
            base,
            body,
            coding,
            key,
            id,
            offer,
            trace,
        } = sending;
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "x-idempotency-key",
            HeaderValue::from_str(key).expect("a ULID is a valid header"),
        );
        if let Some(coding) = coding {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(coding),
            );
        }
        if let Some(offer) = offer {
            headers.insert("asap-version", offer.clone());
        }
        if let Some(value) = self.authorization().await.map_err(|e| (e, None))? {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        if self.inner.config.trace_context {
            trace.inject(&mut headers);
        }
        let response = self
            .inner
            .http
            .post(format!("{base}/asap"))
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| (ClientError::Transport(e), None))?;
        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        exported.set_i64("http.response.status_code", i64::from(status.as_u16()));
        let dialect = answered_dialect(response.headers());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let limit = self.inner.config.limits.envelope;
        let text = body::read_capped_text(response, limit, "response envelope")
            .await
            .map_err(|e| (e, None))?;
        // Anything but 2xx is an HTTP error, redirects included (sends follow none).
        if !status.is_success() {
            return Err((ClientError::Http { status, body: text }, retry_after));
        }
        parse_response(&text, id, dialect).map_err(|e| (e, None))
    }

    /// The agent's manifest, from `{base_url}/.well-known/asap/manifest.json`, cached per
    /// base URL for `Cache-Control: max-age` and revalidated with its ETag. Fails if the
    /// manifest is invalid or speaks another major protocol version.
    pub async fn discover(&self, base_url: &str) -> Result<crate::model::Manifest, ClientError> {
        let base = normalize_base(base_url, self.inner.config.require_https)?;
        self.inner
            .discovery
            .manifest(&self.inner.fetch, &base)
            .await
    }

    /// The agent's health, cached for at most the manifest's `ttl_seconds`. An
    /// `unhealthy` document (HTTP 503) is returned as such, not as an error.
    pub async fn health_check(
        &self,
        base_url: &str,
    ) -> Result<crate::model::HealthStatus, ClientError> {
        let base = normalize_base(base_url, self.inner.config.require_https)?;
        self.inner.discovery.health(&self.inner.fetch, &base).await
    }
}

/// The envelope a request carries: checked for sending and, in a 2.x exchange, its
/// payload typed as the 2.5.10 client writes it (every member), so that a payload a
/// 2.x agent would refuse fails here with [`RequestError::Payload2x`].
pub(crate) fn envelope_to_send(
    envelope: &Envelope,
    two_x: bool,
) -> Result<std::borrow::Cow<'_, Envelope>, ClientError> {
    envelope.check_for_sending().map_err(RequestError::from)?;
    if !two_x {
        return Ok(std::borrow::Cow::Borrowed(envelope));
    }
    let mut typed = envelope.clone();
    typed.type_payload_2x().map_err(RequestError::Payload2x)?;
    Ok(std::borrow::Cow::Owned(typed))
}

/// The dialect an answer speaks: the 2.x version its `ASAP-Version` header names, else
/// 1.1 (a 1.1 server sends no such header).
pub(crate) fn answered_dialect(headers: &HeaderMap) -> Dialect {
    headers
        .get(crate::model::ASAP_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<Dialect>().ok())
        .unwrap_or(Dialect::V1_1)
}

/// Reads a JSON-RPC response body: the envelope of a success (read in the answer's
/// dialect), or the remote error.
fn parse_response(text: &str, id: &RequestId, dialect: Dialect) -> Result<Envelope, ClientError> {
    let value = json::parse(text.as_bytes()).map_err(ResponseError::NotJson)?;
    let echoed = value
        .get("id")
        .and_then(|v| RequestId::echo_from(&serde_json::json!({"id": v})));
    if value.get("error").is_none() && echoed.as_ref() != Some(id) {
        return Err(ResponseError::IdMismatch {
            expected: id.clone(),
            received: value.get("id").cloned().unwrap_or_default(),
        }
        .into());
    }
    answer_envelope_in(&value, dialect)
}

/// The [`ClientError::Remote`] a JSON-RPC `error` member describes.
pub(crate) fn remote_error(error: &Value) -> ClientError {
    ClientError::Remote {
        code: error
            .get("code")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        message: error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        data: error.get("data").cloned().filter(|d| !d.is_null()),
    }
}

/// The envelope of a JSON-RPC success (read as 1.1), or the remote error.
fn answer_envelope(value: &Value) -> Result<Envelope, ClientError> {
    answer_envelope_in(value, Dialect::V1_1)
}

/// The envelope of a JSON-RPC success read in `dialect`, or the remote error.
fn answer_envelope_in(value: &Value, dialect: Dialect) -> Result<Envelope, ClientError> {
    if let Some(error) = value.get("error") {
        return Err(remote_error(error));
    }
    let envelope = value
        .get("result")
        .and_then(|r| r.get("envelope"))
        .ok_or(ResponseError::MissingEnvelope)?;
    Ok(Envelope::from_value_in(envelope, dialect).map_err(ResponseError::Envelope)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            normalize_base("http://127.0.0.1:8000/", true).unwrap(),
            "http://127.0.0.1:8000"
        );
        assert!(normalize_base("http://localhost:1", true).is_ok());
        assert!(normalize_base("http://[::1]:1", true).is_ok());
        assert!(normalize_base("http://127.8.9.10:1", true).is_ok());
        assert!(normalize_base("http://LOCALHOST:1", true).is_ok());
        // Names that only look like loopback are remote: no token over plain HTTP.
        for remote in [
            "http://127.evil.com",
            "http://127.0.0.1.evil.com",
            "http://localhost.evil.com",
            "http://[::ffff:8.8.8.8]",
        ] {
            assert!(
                matches!(
                    normalize_base(remote, true),
                    Err(ClientError::InvalidRequest(RequestError::InsecureTransport { url })) if url == remote
                ),
                "{remote}"
            );
        }
        assert!(matches!(
            normalize_base("http://example.com", true),
            Err(ClientError::InvalidRequest(
                RequestError::InsecureTransport { .. }
            ))
        ));
        assert!(normalize_base("http://example.com", false).is_ok());
        assert!(normalize_base("https://example.com", true).is_ok());
        assert!(matches!(
            normalize_base("ftp://example.com", false),
            Err(ClientError::InvalidRequest(RequestError::UnsupportedScheme { scheme })) if scheme == "ftp"
        ));
        let not_a_url = normalize_base("not a url", false).unwrap_err();
        assert!(matches!(
            &not_a_url,
            ClientError::InvalidRequest(RequestError::InvalidUrl {
                source: url::ParseError::RelativeUrlWithoutBase,
                ..
            })
        ));
        let source = std::error::Error::source(&not_a_url).and_then(std::error::Error::source);
        assert!(source.is_some_and(|e| e.is::<url::ParseError>()));
    }

    #[test]
    fn responses() {
        let id = RequestId::from("req-1");
        let err = parse_response(r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"method":"x"}},"id":"req-1"}"#, &id, Dialect::V1_1).unwrap_err();
        assert_eq!(err.rpc_code(), Some(-32601));
        let not_json = parse_response("nope", &id, Dialect::V1_1).unwrap_err();
        assert!(matches!(
            &not_json,
            ClientError::InvalidResponse(ResponseError::NotJson(_))
        ));
        let source = std::error::Error::source(&not_json).and_then(std::error::Error::source);
        assert!(source.is_some_and(|e| e.is::<serde_json::Error>()));
        assert!(matches!(
            parse_response(
                r#"{"jsonrpc":"2.0","result":{},"id":"req-1"}"#,
                &id,
                Dialect::V1_1
            ),
            Err(ClientError::InvalidResponse(ResponseError::MissingEnvelope))
        ));
        let other = parse_response(
            r#"{"jsonrpc":"2.0","result":{},"id":"req-2"}"#,
            &id,
            Dialect::V1_1,
        );
        assert!(matches!(
            &other,
            Err(ClientError::InvalidResponse(ResponseError::IdMismatch { expected, received }))
                if *expected == id && received == "req-2"
        ));
        assert_eq!(
            other.unwrap_err().to_string(),
            r#"invalid response: response id "req-2" does not match request id req-1"#
        );
        let invalid = r#"{"jsonrpc":"2.0","result":{"envelope":{}},"id":"req-1"}"#;
        assert!(matches!(
            parse_response(invalid, &id, Dialect::V1_1),
            Err(ClientError::InvalidResponse(ResponseError::Envelope(_)))
        ));
    }
}
