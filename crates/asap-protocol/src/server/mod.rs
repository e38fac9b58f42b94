//! The ASAP HTTP server (wire spec section 9): `POST /asap` (JSON-RPC 2.0), the
//! well-known manifest and health documents, probes and metrics, on axum.
//!
//! ```no_run
//! use asap_protocol::model::{Manifest, Skill};
//! use asap_protocol::server::{HandlerRegistry, Server, default_skills};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut manifest = Manifest::new("urn:asap:agent:echo", "Echo", "1.0.0", "Echoes input",
//!     "http://127.0.0.1:8000/asap");
//! manifest.capabilities.skills.push(Skill::new("echo", "Echo back the input"));
//! let server = Server::builder()
//!     .manifest(manifest)
//!     .registry(HandlerRegistry::agent(default_skills()))
//!     .build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! server.serve(listener, asap_protocol::server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod access_log;
mod agent;
mod auth;
mod batch;
mod body;
mod client_addr;
mod config;
mod connections;
mod dialect;
mod discovery;
mod handler;
mod metrics;
#[cfg(feature = "oauth2")]
mod oauth2;
#[cfg(feature = "oauth2")]
mod oauth2_settings;
mod origin;
mod pipeline;
mod rate_limit;
mod replay;
mod response;
mod shared_state;
mod stream;
mod tls;
mod trace;
mod websocket;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, Method, StatusCode, header};
use tokio::net::TcpListener;

pub use access_log::TARGET as ACCESS_LOG_TARGET;
pub use agent::{
    CancelHandler, EchoHandler, EchoSkill, MessageHandler, STATE_RESTORE_ACK, STATE_SNAPSHOT,
    Skill, Skills, StateQueryHandler, StateRestoreHandler, TaskHandler, default_skills, reply,
    reply_with,
};
pub use auth::{AuthFailure, AuthenticatedCaller, StaticTokens, TokenValidator, bearer_token};
pub use body::{BodyRejection, Coding};
pub use client_addr::{ForwardedHeader, TrustedProxies, TrustedProxyError};
pub use config::{
    ConfigError, DEFAULT_MAX_REQUEST_SIZE, DEFAULT_RATE_LIMIT, ServerConfig, WebSocketConfig,
    truthy,
};
pub use discovery::{ManifestDialect, ServedManifest};
pub use handler::{
    Handler, HandlerContext, HandlerError, HandlerRegistry, Push, PushError, TaskEvents,
};
pub use metrics::{
    AuthCall, Direction, ErrorType, FetchOutcome, IntrospectionOutcome, METRICS_CONTENT_TYPE,
    Metrics, RefusalReason, SendErrorReason, StoreBackend, StoreOperation, WebhookOutcome,
};
#[cfg(feature = "oauth2")]
pub use oauth2::{OAuth2, ScopeMode};
#[cfg(feature = "oauth2")]
pub use oauth2_settings::{OAuth2Settings, OAuth2SetupError};
pub use origin::AllowedOrigins;
pub use rate_limit::{Limited, RateLimitError, RateLimitRule};
pub use replay::{NonceStore, check_timestamp};
#[cfg(feature = "redis")]
pub use shared_state::redis::{RedisConfig, RedisSharedState};
pub use shared_state::{
    Admission, Arrival, DEPENDENCY_UNAVAILABLE, FirstArrival, InProcess, PendingAnswer,
    RateLimitStore, ReplayGuard, ReplayKind, RetransmissionCache, SharedStateBackend,
    SharedStateError,
};
pub use stream::{STREAM_BUFFER, StreamClosed, StreamEmitter, StreamingEcho, StreamingHandler};
pub use tls::{PemFileError, TlsConfig, TlsError};
pub use trace::ServerSpan;
// Internal steps reached by `crate::fuzzing` (feature `fuzzing`) only.
#[cfg(feature = "fuzzing")]
pub(crate) use body::{coding as request_coding, decode as decode_request_body};

use crate::model::Manifest;
use crate::store::{MemoryStore, MeteredStore, Store};

/// Why a server could not be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No manifest was given.
    #[error("a server needs a manifest (ServerBuilder::manifest)")]
    MissingManifest,
    /// The manifest declares an authentication scheme other than bearer or basic.
    #[error("{0}")]
    Manifest(#[from] crate::model::AsapError),
    /// The manifest cannot be signed (`verification.verified_at` is set).
    #[cfg(feature = "signing")]
    #[error("{0}")]
    Signing(#[from] crate::signing::SigningError),
    /// Listening or serving failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub(crate) struct Inner {
    pub(crate) manifest: ServedManifest,
    pub(crate) registry: HandlerRegistry,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: ServerConfig,
    pub(crate) rate_limiter: Option<Arc<dyn RateLimitStore>>,
    pub(crate) nonces: Arc<dyn ReplayGuard>,
    pub(crate) body_budget: body::BodyBudget,
    /// Envelope ids seen in the nonce window (`reject_repeated_ids`).
    pub(crate) seen_ids: Option<Arc<dyn ReplayGuard>>,
    /// Where the replay guards, rate limits and retransmission cache live (readiness).
    pub(crate) shared_state: Arc<dyn SharedStateBackend>,
    pub(crate) metrics: Metrics,
    pub(crate) token_validator: Option<Arc<dyn TokenValidator>>,
    pub(crate) started: Instant,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) handler_slots: Option<Arc<tokio::sync::Semaphore>>,
    pub(crate) ws: websocket::Hub,
    pub(crate) task_events: Option<Arc<dyn TaskEvents>>,
    /// Where the exported spans go (the global tracer provider's, when built).
    pub(crate) tracer: crate::spans::Tracer,
    #[cfg(feature = "oauth2")]
    pub(crate) oauth2: Option<OAuth2>,
}

/// Shared state of every route.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Whether the store and the shared state both answer (readiness and health).
    pub(crate) async fn dependencies_up(&self) -> bool {
        let (store, shared) = tokio::join!(self.store.ping(), self.shared_state.ping());
        store.is_ok() && shared.is_ok()
    }

    /// The client's address for rate limiting and logs: the peer, or the client a
    /// trusted proxy names. Without `ConnectInfo` (the router nested in an app served
    /// without it) the peer is unknown and every caller counts as `0.0.0.0`.
    pub(crate) fn client_ip(
        &self,
        connect_info: Option<axum::Extension<axum::extract::ConnectInfo<SocketAddr>>>,
        headers: &http::HeaderMap,
    ) -> std::net::IpAddr {
        match connect_info {
            Some(axum::Extension(axum::extract::ConnectInfo(peer))) => {
                self.config.trusted_proxies.client_ip(peer.ip(), headers)
            }
            None => std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        }
    }
}

/// Configures a [`Server`].
#[derive(Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ServerBuilder {
    manifest: Option<Manifest>,
    registry: Option<HandlerRegistry>,
    store: Option<Arc<dyn Store>>,
    config: ServerConfig,
    token_validator: Option<Arc<dyn TokenValidator>>,
    task_events: Option<Arc<dyn TaskEvents>>,
    shared_state: Option<Arc<dyn SharedStateBackend>>,
    metrics: Option<Metrics>,
    #[cfg(feature = "oauth2")]
    oauth2: Option<OAuth2>,
    #[cfg(feature = "signing")]
    manifest_signing_key: Option<crate::signing::SigningKey>,
}

impl ServerBuilder {
    /// Where the replay guards (nonces, envelope ids), the per-client rate limits and
    /// the WebSocket retransmission cache live (default: [`InProcess`]). Replicas
    /// behind one load balancer share them through one backend, e.g.
    /// `RedisSharedState` (feature `redis`).
    pub fn shared_state(mut self, backend: Arc<dyn SharedStateBackend>) -> Self {
        self.shared_state = Some(backend);
        self
    }

    /// Records into `metrics` (default: a fresh [`Metrics`]): share one with clients,
    /// the webhook queue and the application's own metrics, all served on
    /// `/asap/metrics`.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Requires a valid OAuth2 bearer JWT on every path under the prefix (section 10.2).
    #[cfg(feature = "oauth2")]
    pub fn oauth2(mut self, oauth2: OAuth2) -> Self {
        self.oauth2 = Some(oauth2);
        self
    }

    /// The agent's manifest (required).
    pub fn manifest(mut self, manifest: Manifest) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// Serves the 2.x manifest shape as a signed document (`SignedManifest`,
    /// self-signed with `key`, docs/asap-2.md section 5); the 1.1 shape stays unsigned.
    #[cfg(feature = "signing")]
    pub fn manifest_signing_key(mut self, key: crate::signing::SigningKey) -> Self {
        self.manifest_signing_key = Some(key);
        self
    }

    /// The handlers (default: [`HandlerRegistry::echo`], as the reference).
    pub fn registry(mut self, registry: HandlerRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// The state store (default: in memory).
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Limits and switches (default: [`ServerConfig::default`]).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Tells `events` about every task status change the built-in handlers make (for
    /// example [`crate::webhook::TaskWebhooks`], which sends them as webhooks).
    pub fn task_events(mut self, events: Arc<dyn TaskEvents>) -> Self {
        self.task_events = Some(events);
        self
    }

    /// Turns on manifest bearer authentication (when the manifest declares `auth`).
    pub fn token_validator(mut self, validator: Arc<dyn TokenValidator>) -> Self {
        self.token_validator = Some(validator);
        self
    }

    /// Builds the server.
    pub fn build(self) -> Result<Server, ServerError> {
        let manifest = self.manifest.ok_or(ServerError::MissingManifest)?;
        if let Some(error) = manifest.unsupported_auth_scheme() {
            return Err(error.into());
        }
        let config = self.config;
        let served =
            ServedManifest::for_dialects(manifest, &config.dialects, config.manifest_dialect);
        #[cfg(feature = "signing")]
        let served = match &self.manifest_signing_key {
            Some(key) => served.signed(key)?,
            None => served,
        };
        let shared = self.shared_state.unwrap_or_else(|| Arc::new(InProcess));
        let (ttl, capacity) = (config.nonce_ttl, config.nonce_capacity);
        let metrics = self.metrics.unwrap_or_default();
        let store = self.store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let registry = self.registry.unwrap_or_else(HandlerRegistry::echo);
        metrics.payload_types(registry.payload_types());
        let tracer = crate::spans::Tracer::global();
        let inner = Inner {
            manifest: served,
            registry,
            store: Arc::new(MeteredStore::new(store, metrics.clone()).with_tracer(tracer.clone())),
            rate_limiter: shared.rate_limiter(&config.rate_limits),
            nonces: shared.replay_guard(ReplayKind::Nonce, ttl, capacity),
            body_budget: body::BodyBudget::new(config.max_buffered_bytes),
            seen_ids: config
                .reject_repeated_ids
                .then(|| shared.replay_guard(ReplayKind::EnvelopeId, ttl, capacity)),
            metrics,
            token_validator: self.token_validator,
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            handler_slots: config
                .max_concurrent_handlers
                .map(|n| Arc::new(tokio::sync::Semaphore::new(n))),
            ws: websocket::Hub::new(shared.retransmission_cache(
                config.websocket.dedup_window,
                config.websocket.dedup_capacity,
            )),
            shared_state: shared,
            task_events: self.task_events,
            tracer,
            #[cfg(feature = "oauth2")]
            oauth2: self.oauth2,
            config,
        };
        Ok(Server {
            state: AppState(Arc::new(inner)),
        })
    }
}

/// An ASAP agent server.
#[must_use = "a server answers nothing until `serve` (or its router) runs"]
pub struct Server {
    state: AppState,
}

/// The reference answers `HEAD` with 405 on every route; so does this server.
async fn refuse_head(request: Request, next: Next) -> Response {
    if request.method() != Method::HEAD {
        return next.run(request).await;
    }
    let allow = if matches!(request.uri().path(), "/asap" | "/asap/stream") {
        "POST"
    } else {
        "GET"
    };
    let mut response = response::detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(feature = "fuzzing")]
impl Server {
    /// The frames a WebSocket connection of this server sends for one text frame.
    pub(crate) async fn answer_text_frame(&self, text: &str) -> Vec<String> {
        websocket::answer_text_frame(&self.state, text).await
    }
}

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The metrics this server records.
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The axum router with every route, to serve yourself or nest in your own app.
    ///
    /// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so rate limits
    /// and logs know each client; without `ConnectInfo` it still answers every route,
    /// but all callers share one rate-limit bucket (as `0.0.0.0`). [`Server::serve`]
    /// adds what the router cannot: the connection cap and the header, idle and shutdown
    /// timeouts.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/asap", post(pipeline::handle))
            .route("/asap/stream", post(stream::handle));
        if self.state.config.websocket.enabled {
            router = router.route("/asap/ws", get(websocket::upgrade));
        }
        let router = router
            .route("/.well-known/asap/manifest.json", get(discovery::manifest))
            .route("/.well-known/asap/health", get(discovery::health))
            .route("/health", get(discovery::liveness))
            .route("/ready", get(discovery::readiness))
            .route("/asap/metrics", get(discovery::metrics))
            .fallback(response::not_found)
            .method_not_allowed_fallback(response::method_not_allowed)
            .layer(middleware::from_fn(refuse_head))
            .with_state(self.state.clone());
        // OAuth2 runs first of all (step 1), before size limits and rate limiting.
        #[cfg(feature = "oauth2")]
        let router = match &self.state.oauth2 {
            Some(oauth) => {
                router.layer(middleware::from_fn_with_state(oauth.clone(), oauth2::guard))
            }
            None => router,
        };
        let router = if self.state.config.compress_responses {
            router.layer(
                tower_http::compression::CompressionLayer::new()
                    .gzip(true)
                    .br(true),
            )
        } else {
            router
        };
        // Before size limits, OAuth2 and parsing (after the origin check): the dialect,
        // or the -32000 refusal of an unsupported `ASAP-Version`.
        let accepted: dialect::Accepted = self.state.config.dialects.iter().copied().collect();
        let router = router.layer(middleware::from_fn_with_state(accepted, dialect::negotiate));
        // Before anything else: a browser page on a foreign origin gets nothing.
        let router = router.layer(middleware::from_fn_with_state(
            self.state.config.allowed_origins.clone(),
            origin::guard,
        ));
        // Counts the refusals the layers above marked.
        let router = router.layer(middleware::from_fn_with_state(
            self.state.metrics.clone(),
            metrics::count_refusals,
        ));
        // Outermost: every answer, refusals included, gets its access-log line.
        router.layer(middleware::from_fn_with_state(
            self.state.clone(),
            access_log::log,
        ))
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, lets
    /// requests in flight finish (at most `shutdown_grace`), and closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        use axum::serve::ListenerExt as _;
        // Nagle off, as for TLS: an answer written right after an ack frame would wait
        // for the peer's delayed ACK (up to 40 ms on Linux).
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        self.serve_on(listener, shutdown).await
    }

    /// Like [`Server::serve`], over TLS: every connection on `listener` must complete a
    /// TLS handshake with `tls` (within 5 s; at most 512 in progress, further
    /// connections are closed at once) before it is served.
    pub async fn serve_tls(
        self,
        listener: TcpListener,
        tls: TlsConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let listener = tls::TlsListener::new(listener, &tls, self.state.metrics.clone())?;
        self.serve_on(listener, shutdown).await
    }

    /// Serves on any listener whose connections know their peer's address.
    async fn serve_on<L>(
        self,
        listener: L,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError>
    where
        L: axum::serve::Listener<Addr = SocketAddr>,
    {
        let state = self.state.clone();
        let grace = state.config.shutdown_grace;
        let limits = connections::ConnectionLimits {
            // At least one; at most what the slot semaphore can count and the drain can
            // wait for at once (u32), so no setting can make serving panic.
            max_connections: state.config.max_connections.clamp(1, u32::MAX as usize),
            header_read_timeout: state.config.header_read_timeout,
            idle_timeout: state.config.idle_timeout,
        };
        // When shutdown began: the grace counts from there, for HTTP and WebSocket alike.
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stopping_since = None::<Instant>;
        let router = self.router();
        let sweeper = state.rate_limiter.clone().map(|limiter| {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    limiter.forget_idle();
                }
            })
        });
        let mut task = tokio::spawn(connections::serve(
            listener,
            router,
            limits,
            stop_rx,
            state.metrics.clone(),
        ));
        let result = tokio::select! {
            joined = &mut task => joined,
            () = shutdown => {
                state.shutting_down.store(true, Ordering::Relaxed);
                state.ws.begin_shutdown();
                stopping_since = Some(Instant::now());
                let _ = stop_tx.send(true);
                match tokio::time::timeout(grace, &mut task).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        tracing::warn!(grace_seconds = grace.as_secs(), in_flight = state.in_flight(), "shutdown deadline passed; dropping remaining connections");
                        task.abort();
                        Ok(())
                    }
                }
            }
        };
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        // WebSocket connections are not tracked by the HTTP graceful shutdown: wait for
        // them to finish their message and close (1001), within what is left of the grace
        // counted from when shutdown began (not from when serving began: a server up for
        // longer than its grace used to close the store with WebSocket handlers running).
        let left = grace.saturating_sub(stopping_since.unwrap_or_else(Instant::now).elapsed());
        if tokio::time::timeout(left, state.ws.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                open = state.ws.open(),
                "WebSocket connections still open at the shutdown deadline"
            );
        }
        state.store.close().await;
        match result {
            Ok(()) => Ok(()),
            Err(join) if join.is_cancelled() => Ok(()),
            Err(join) => Err(ServerError::Io(std::io::Error::other(join))),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
