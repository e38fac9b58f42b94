//! `asap serve`: a working agent with no set-up (echo skill, SQLite state).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use asap_protocol::discovery::Advertiser;
use asap_protocol::model::{AuthScheme, Dialect, Manifest, Skill};
use asap_protocol::server::{
    AllowedOrigins, ForwardedHeader, HandlerRegistry, ManifestDialect, Metrics, OAuth2,
    OAuth2Settings, RateLimitRule, RedisConfig, RedisSharedState, Server, ServerConfig,
    StaticTokens, StreamingEcho, TlsConfig, TrustedProxies, default_skills, shutdown_signal,
};
use asap_protocol::store::{PostgresConfig, PostgresStore, SqliteStore, StorageConfig};
use asap_protocol::webhook::{TaskWebhooks, WebhookConfig, WebhookQueue};
use clap::{ArgAction, Args};

use super::{boolish, lines_file, secret};

/// Arguments of `asap serve`. Every option can also come from the `ASAP_*` variable it
/// names; boolean variables take `1/0`, `true/false`, `yes/no` or `on/off`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; `0.0.0.0` in a container).
    #[arg(long, env = "ASAP_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "ASAP_PORT", default_value_t = 8000)]
    port: u16,
    /// The base URL clients reach this agent at, advertised in the manifest (default:
    /// the address listened on). Set it behind a reverse proxy or when listening on
    /// 0.0.0.0.
    #[arg(long, env = "ASAP_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, env = "ASAP_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ASAP_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Believe the forwarding header (--trusted-proxy-header) from peers in this range
    /// (CIDR or address; repeatable, or comma-separated in the variable) for the client
    /// address used by rate limits and logs. Never from anyone else.
    #[arg(
        long = "trusted-proxy",
        env = "ASAP_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<String>,
    /// The header the trusted proxies maintain: `x-forwarded-for` or `forwarded`. Only
    /// this one is read (a proxy passes the other through as the client wrote it).
    #[arg(
        long,
        env = "ASAP_TRUSTED_PROXY_HEADER",
        value_name = "HEADER",
        default_value = "x-forwarded-for"
    )]
    trusted_proxy_header: ForwardedHeader,
    /// Also accept browser requests from this origin (`https://app.example`; repeatable,
    /// or comma-separated in the variable). Requests with any other `Origin` but the
    /// agent's own get 403; clients that send no `Origin` are not affected.
    #[arg(
        long = "allowed-origin",
        env = "ASAP_ALLOWED_ORIGINS",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    allowed_origins: Vec<String>,
    /// Serve this manifest (JSON file) instead of generating one: a 1.1 manifest, or a
    /// 2.x one (any of `supported_versions`, `sla`, `verification`,
    /// `capabilities.hardware`, `capabilities.inference`), whose 2.x members appear only
    /// in the 2.x shape; `supported_versions` is always the 2.x versions served.
    #[arg(long, env = "ASAP_MANIFEST", value_name = "FILE")]
    manifest: Option<PathBuf>,
    /// The manifest shape served to a GET without a 2.x `ASAP-Version` header: `1.1`
    /// (what 1.1 clients read) or `2` (every 2.x member, as 2.5.10 serves it). A GET
    /// naming a 2.x version this agent speaks always gets the 2.x shape.
    #[arg(
        long,
        env = "ASAP_MANIFEST_DIALECT",
        value_name = "DIALECT",
        default_value = "1.1"
    )]
    manifest_dialect: ManifestDialect,
    /// Serve the 2.x manifest shape as a signed document (Ed25519, self-signed with
    /// this PKCS#8 PEM private key, e.g. from `asap keys generate`); the 1.1 shape
    /// stays unsigned, since 1.1 clients cannot read the signed wrapper.
    #[arg(long, env = "ASAP_MANIFEST_SIGNING_KEY", value_name = "PEM")]
    manifest_signing_key: Option<PathBuf>,
    /// The agent's URN in a generated manifest.
    #[arg(long, env = "ASAP_AGENT_ID", default_value = "urn:asap:agent:asap-rs")]
    id: String,
    /// The agent's name in a generated manifest.
    #[arg(long, env = "ASAP_AGENT_NAME", default_value = "ASAP Rust Agent")]
    name: String,
    /// Folder for the agent's state (SQLite); created if missing.
    #[arg(long, env = "ASAP_DATA_DIR", default_value = "asap-data")]
    data_dir: PathBuf,
    /// `memory`, `sqlite` (`ASAP_STORAGE_PATH` names the SQLite file instead of
    /// `DATA_DIR/asap_state.db`) or `postgres` (with --database-url; several agents can
    /// share one database).
    #[arg(long, env = "ASAP_STORAGE_BACKEND", default_value = "sqlite")]
    storage: String,
    /// The PostgreSQL database of `--storage postgres`
    /// (`postgres://user:password@host:port/database`).
    #[arg(
        long,
        env = "ASAP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Connections to PostgreSQL.
    #[arg(long, env = "ASAP_DATABASE_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    database_pool_size: u32,
    /// Seconds a PostgreSQL statement may run before the database cancels it.
    #[arg(long, env = "ASAP_DATABASE_STATEMENT_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    database_statement_timeout: u64,
    /// Rate limit of POST /asap per client IP, e.g. "100/second;1000/minute"; "off"
    /// turns it off [default: 10/second;100/minute; 100000/second with --conformance].
    #[arg(long, env = "ASAP_RATE_LIMIT")]
    rate_limit: Option<String>,
    /// Largest request body in bytes, before and after decompression [default: 10485760].
    #[arg(long, env = "ASAP_MAX_REQUEST_SIZE")]
    max_request_size: Option<usize>,
    /// Reject envelopes whose `extensions.nonce` was already seen.
    #[arg(long, env = "ASAP_REQUIRE_NONCE", value_parser = boolish(), action = ArgAction::SetTrue)]
    require_nonce: bool,
    /// With --require-nonce, also reject envelopes that carry no nonce (the reference
    /// accepts them).
    #[arg(long, env = "ASAP_REJECT_MISSING_NONCE", value_parser = boolish(), action = ArgAction::SetTrue, requires = "require_nonce")]
    reject_missing_nonce: bool,
    /// Reject an envelope whose id was already seen within the nonce window (600 s; the
    /// reference does not check ids).
    #[arg(long, env = "ASAP_REJECT_REPEATED_IDS", value_parser = boolish(), action = ArgAction::SetTrue)]
    reject_repeated_ids: bool,
    /// Keep the replay guard (nonces, envelope ids), the rate limits and the WebSocket
    /// retransmission cache in this Redis (`redis://host:6379/0`,
    /// `redis+unix:///path/redis.sock`), shared by every replica pointed at it. While
    /// Redis is down, /ready answers 503 and requests that need it get 503.
    #[arg(long, env = "ASAP_REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// With --redis-url: milliseconds to wait for any one Redis answer (a request that
    /// needs it gets 503 past it) and for a connection.
    #[arg(long, env = "ASAP_REDIS_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), requires = "redis_url")]
    redis_timeout_ms: u64,
    /// With --redis-url: prefix of every key, so several agents can share one Redis.
    #[arg(
        long,
        env = "ASAP_REDIS_KEY_PREFIX",
        default_value = "asap:",
        requires = "redis_url"
    )]
    redis_key_prefix: String,
    /// Seconds a client has to send a request's headers (also the longest a kept-alive
    /// connection may wait for its next request).
    #[arg(long, env = "ASAP_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout: u64,
    /// Seconds a connection may stay open with no byte moving while no request is being
    /// handled (for example a client that stopped reading its response).
    #[arg(long, env = "ASAP_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Most HTTP connections open at once; further connections are closed at once
    /// (WebSocket connections count against --ws-max-connections).
    #[arg(long, env = "ASAP_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Most request body bytes held in memory across all requests; a request beyond it
    /// gets 503.
    #[arg(long, env = "ASAP_MAX_BUFFERED_BYTES", default_value_t = 256 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    max_buffered_bytes: u64,
    /// With bearer tokens, the most bytes of body read from a request whose token is
    /// missing or wrong before answering with the authentication error.
    #[arg(long, env = "ASAP_UNAUTHENTICATED_BODY_LIMIT", default_value_t = 64 * 1024)]
    unauthenticated_body_limit: u64,
    /// Require `Authorization: Bearer TOKEN` and bind it to an agent: `TOKEN=URN`
    /// (repeatable, or comma-separated in the variable).
    #[arg(
        long = "bearer-token",
        env = "ASAP_BEARER_TOKENS",
        value_name = "TOKEN=URN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    bearer_tokens: Vec<String>,
    /// Read `TOKEN=URN` pairs from this file, one per line (kept out of `ps`).
    #[arg(long, env = "ASAP_BEARER_TOKENS_FILE", value_name = "FILE")]
    bearer_tokens_file: Option<PathBuf>,
    /// Require OAuth2 bearer JWTs on every path under /asap; keys from this provider's
    /// OIDC discovery document (its issuer must match).
    #[arg(long, env = "ASAP_AUTH_ISSUER", value_name = "URL")]
    oauth2_issuer: Option<String>,
    /// Require OAuth2 bearer JWTs, with keys from this JWKS URL (overrides discovery).
    #[arg(long, env = "ASAP_AUTH_JWKS_URI", value_name = "URL")]
    oauth2_jwks_uri: Option<String>,
    /// The scope every OAuth2 token must carry ("" for none).
    #[arg(long, env = "ASAP_AUTH_SCOPE", default_value = "asap:execute")]
    oauth2_scope: String,
    /// Scopes per route instead of one for all: `asap:read` for reads such as
    /// /asap/metrics, `asap:execute` for POST /asap; `asap:admin` grants both.
    #[arg(long, env = "ASAP_AUTH_PER_ROUTE_SCOPES", value_parser = boolish(), action = ArgAction::SetTrue)]
    oauth2_per_route_scopes: bool,
    /// Require each envelope's `sender` to be the token's subject or an agent the
    /// subject map (`ASAP_AUTH_SUBJECT_MAP`) gives that subject.
    #[arg(long, env = "ASAP_AUTH_BIND_SENDER", value_parser = boolish(), action = ArgAction::SetTrue)]
    oauth2_bind_sender: bool,
    /// Accept opaque tokens through this RFC 7662 introspection endpoint (with
    /// --oauth2-issuer, the discovered one is used when this is not given).
    #[arg(long, env = "ASAP_AUTH_INTROSPECTION_URL", value_name = "URL")]
    oauth2_introspection_url: Option<String>,
    /// The client id this agent authenticates with at the introspection endpoint.
    #[arg(long, env = "ASAP_AUTH_CLIENT_ID")]
    oauth2_client_id: Option<String>,
    /// The client secret for the introspection endpoint.
    #[arg(
        long,
        env = "ASAP_AUTH_CLIENT_SECRET",
        hide_env_values = true,
        conflicts_with = "oauth2_client_secret_file"
    )]
    oauth2_client_secret: Option<String>,
    /// Read the introspection client secret from this file (kept out of `ps`).
    #[arg(long, env = "ASAP_AUTH_CLIENT_SECRET_FILE", value_name = "FILE")]
    oauth2_client_secret_file: Option<PathBuf>,
    /// Require this `aud` in OAuth2 tokens.
    #[arg(long, env = "ASAP_AUTH_AUDIENCE")]
    oauth2_audience: Option<String>,
    /// Production checks the reference does not make: require `exp`, check `nbf`
    /// (30 s leeway), with --oauth2-issuer `iss`, and with `ASAP_AUTH_SUBJECT_MAP` reject
    /// subjects the map does not list for this agent.
    #[arg(long, env = "ASAP_AUTH_STRICT", value_parser = boolish(), action = ArgAction::SetTrue)]
    oauth2_strict: bool,
    /// The protocol versions POST /asap speaks (comma-separated): a request picks one with
    /// its `ASAP-Version` header; without the header it speaks 1.1 when listed, else the
    /// newest 2.x listed; a header naming none gets -32000. Listing only 1.1 ignores the
    /// header.
    #[arg(
        long,
        env = "ASAP_VERSIONS",
        value_name = "VERSIONS",
        value_delimiter = ',',
        default_value = "1.1,2.1,2.2"
    )]
    asap_versions: Vec<Dialect>,
    /// The most requests in one JSON-RPC batch (a JSON array body, answered to 2.x
    /// requests only); a larger batch gets one -32600 error.
    #[arg(long, env = "ASAP_MAX_BATCH_SIZE", default_value_t = asap_protocol::rpc::DEFAULT_MAX_BATCH_SIZE as u64, value_parser = clap::value_parser!(u64).range(1..))]
    max_batch_size: u64,
    /// Compress responses when the client accepts gzip or br (the reference never does).
    #[arg(long, env = "ASAP_COMPRESS_RESPONSES", value_parser = boolish(), action = ArgAction::SetTrue)]
    compress_responses: bool,
    /// Serve only the reference's echo handler for `task.request` (no task records or
    /// snapshots), as the reference echo agent does.
    #[arg(long, env = "ASAP_ECHO_ONLY", value_parser = boolish(), action = ArgAction::SetTrue)]
    echo_only: bool,
    /// Seconds to let requests in flight finish on shutdown.
    #[arg(long, env = "ASAP_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// WebSocket messages per second per connection (the burst is as large); 0 turns the
    /// limit off.
    #[arg(long, env = "ASAP_WS_RATE_LIMIT", default_value_t = 10)]
    ws_rate_limit: u32,
    /// Most open WebSocket connections.
    #[arg(long, env = "ASAP_WS_MAX_CONNECTIONS", default_value_t = 1024)]
    ws_max_connections: usize,
    /// Seconds between WebSocket heartbeat pings; connections silent for three
    /// intervals are closed.
    #[arg(long, env = "ASAP_WS_PING_INTERVAL", default_value_t = 30)]
    ws_ping_interval: u64,
    /// Acknowledge only `received`, as the reference (no `processed`/`rejected` acks).
    #[arg(long, env = "ASAP_WS_RECEIVED_ACKS_ONLY", value_parser = boolish(), action = ArgAction::SetTrue)]
    ws_received_acks_only: bool,
    /// Run the interop harness's test agent: skills echo, slow, push, fail,
    /// checkpoint and webhook; nonce checking on, rate limit 100000/s, WebSocket acks
    /// `received` only (reference parity), loopback webhook targets allowed.
    #[arg(long, env = "ASAP_CONFORMANCE", value_parser = boolish(), action = ArgAction::SetTrue)]
    conformance: bool,
    /// The secret the conformance agent signs webhooks with.
    #[arg(long, env = "ASAP_WEBHOOK_SECRET", default_value = super::conformance::DEFAULT_WEBHOOK_SECRET, hide_env_values = true, hide_default_value = true)]
    webhook_secret: String,
    /// Read the conformance agent's webhook secret from this file.
    #[arg(long, env = "ASAP_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Advertise the agent on the local network (DNS-SD `_asap._tcp.local.`) while it runs.
    #[arg(long, env = "ASAP_MDNS", value_parser = boolish(), action = ArgAction::SetTrue)]
    mdns: bool,
    /// The IPv4 address to advertise with --mdns (default: the address listened on; needed
    /// when listening on 0.0.0.0).
    #[arg(long, env = "ASAP_MDNS_ADDRESS", requires = "mdns")]
    mdns_address: Option<std::net::Ipv4Addr>,
    /// Send task events to this callback, signed with SECRET (`URL=SECRET`, repeatable,
    /// or comma-separated in the variable); needs SQLite or PostgreSQL storage, which
    /// holds the delivery queue.
    #[arg(
        long = "webhook",
        env = "ASAP_WEBHOOKS",
        value_name = "URL=SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    webhooks: Vec<String>,
    /// Read `URL=SECRET` webhook subscriptions from this file, one per line.
    #[arg(long, env = "ASAP_WEBHOOKS_FILE", value_name = "FILE")]
    webhooks_file: Option<PathBuf>,
    /// Allow `http://` webhook callbacks (development only).
    #[arg(long, env = "ASAP_WEBHOOK_ALLOW_HTTP", value_parser = boolish(), action = ArgAction::SetTrue)]
    webhook_allow_http: bool,
    /// Allow this non-public range for webhook callbacks (CIDR, repeatable, or
    /// comma-separated in the variable).
    #[arg(
        long = "webhook-allow-private",
        env = "ASAP_WEBHOOK_ALLOW_PRIVATE",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    webhook_allow_private: Vec<String>,
    /// Webhook deliveries per second to one URL (from this agent), with as large a burst.
    #[arg(long, env = "ASAP_WEBHOOK_RATE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    webhook_rate: u32,
    /// Seconds a webhook delivery stays leased to this agent's worker (renewed while it
    /// runs); after a crash, another replica sends it again once the lease expires.
    #[arg(long, env = "ASAP_WEBHOOK_LEASE", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    webhook_lease: u64,
}

/// The OpenTelemetry service name: the agent's URN (the served manifest's `id`, as the
/// reference names its service), or the `--id` when the manifest file cannot be read
/// (serving then fails with the reason).
#[cfg(feature = "otel")]
pub fn service_name(args: &ServeArgs) -> String {
    args.manifest
        .as_ref()
        .and_then(|path| std::fs::read(path).ok())
        .and_then(|text| Manifest::from_wire_json(&text).ok())
        .map_or_else(|| args.id.clone(), |m| m.id)
}

fn manifest(args: &ServeArgs, base_url: &str) -> anyhow::Result<Manifest> {
    if let Some(path) = &args.manifest {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Manifest::from_wire_json(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()));
    }
    let mut m = Manifest::new(
        &args.id,
        &args.name,
        env!("CARGO_PKG_VERSION"),
        "ASAP agent (Rust) with an echo skill",
        format!("{base_url}/asap"),
    );
    if args.conformance {
        super::conformance::add_skills(&mut m);
    } else {
        m.capabilities
            .skills
            .push(Skill::new("echo", "Echo back the input"));
    }
    m.capabilities.state_persistence = true;
    Ok(m)
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // The flags carry ASAP_RATE_LIMIT and ASAP_MAX_REQUEST_SIZE; the library reads
    // ASAP_MAX_THREADS and ASAP_DEBUG.
    let mut config = ServerConfig::from_lookup(|name| match name {
        "ASAP_RATE_LIMIT" | "ASAP_MAX_REQUEST_SIZE" => None,
        other => std::env::var(other).ok(),
    })?;
    if let Some(limit) = &args.rate_limit {
        config.rate_limits = RateLimitRule::parse_setting(limit)
            .map_err(|e| super::invalid_input(format!("--rate-limit: {e}")))?;
    }
    config.trusted_proxies = TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| super::invalid_input(format!("--trusted-proxy: {e}")))?
        .header(args.trusted_proxy_header);
    if let Some(max) = args.max_request_size {
        config.max_request_size = max;
    }
    config.require_nonce = args.require_nonce;
    config.reject_missing_nonce = args.reject_missing_nonce;
    config.reject_repeated_ids = args.reject_repeated_ids;
    config.header_read_timeout = std::time::Duration::from_secs(args.header_read_timeout);
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout);
    config.max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    config.max_buffered_bytes = usize::try_from(args.max_buffered_bytes).unwrap_or(usize::MAX);
    config.unauthenticated_body_limit =
        usize::try_from(args.unauthenticated_body_limit).unwrap_or(usize::MAX);
    config.compress_responses = args.compress_responses;
    config.dialects.clone_from(&args.asap_versions);
    config.manifest_dialect = args.manifest_dialect;
    config.max_batch_size = usize::try_from(args.max_batch_size).unwrap_or(usize::MAX);
    config.shutdown_grace = std::time::Duration::from_secs(args.shutdown_grace);
    config.websocket.message_rate = Some(args.ws_rate_limit).filter(|r| *r > 0);
    config.websocket.max_connections = args.ws_max_connections;
    config.websocket.ping_interval = std::time::Duration::from_secs(args.ws_ping_interval.max(1));
    config.websocket.stale_after = config.websocket.ping_interval * 3;
    config.websocket.completion_acks = !args.ws_received_acks_only;
    if args.conformance {
        // The harness's settings; an explicit --rate-limit wins.
        let explicit = args
            .rate_limit
            .is_some()
            .then(|| config.rate_limits.clone());
        super::conformance::configure(&mut config);
        if let Some(limits) = explicit {
            config.rate_limits = limits;
        }
    }

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            TlsConfig::from_pem_files(cert, key)
                .map_err(|e| super::invalid_input(e.to_string()))?,
        ),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let listening_url = format!("{scheme}://{address}");
    let base_url = match args.public_url.as_deref().filter(|u| !u.trim().is_empty()) {
        Some(url) => public_url(url)?,
        None => {
            if address.ip().is_unspecified() {
                tracing::warn!(
                    "listening on {address}: the manifest advertises {listening_url}, which \
                     clients elsewhere cannot reach; set --public-url"
                );
            }
            listening_url.clone()
        }
    };
    // Browser pages of the agent's own public origin are not foreign.
    let public_origin = args.public_url.as_ref().map(|_| origin_of(&base_url));
    config.allowed_origins = AllowedOrigins::new(args.allowed_origins.iter().chain(&public_origin));
    let mut manifest = manifest(&args, &base_url)?;

    let storage = storage_config(&args)?;
    let (store, webhook_queue) = match &storage {
        // SQLite and PostgreSQL also hold the webhook queue, which this agent delivers
        // from (several agents on one PostgreSQL database share it).
        StorageConfig::Sqlite(path) => {
            let sqlite = SqliteStore::open(path)
                .await
                .context("opening the state store")?;
            let queue = WebhookQueue::sqlite(&sqlite, webhook_config(&args)?)
                .await
                .context("starting the webhook queue")?;
            (
                Arc::new(sqlite) as Arc<dyn asap_protocol::store::Store>,
                Some(queue),
            )
        }
        StorageConfig::Postgres(config) => {
            let postgres = PostgresStore::connect(config)
                .await
                .context("opening the state store")?;
            let queue = WebhookQueue::postgres(&postgres, webhook_config(&args)?)
                .await
                .context("starting the webhook queue")?;
            (
                Arc::new(postgres) as Arc<dyn asap_protocol::store::Store>,
                Some(queue),
            )
        }
        // Memory, and any other backend: no durable webhook queue.
        _ => (
            storage.open().await.context("opening the state store")?,
            None,
        ),
    };

    let registry = if args.conformance {
        let webhook_secret = secret(
            Some(args.webhook_secret.clone()),
            args.webhook_secret_file.as_deref(),
        )?
        .unwrap_or_default();
        super::conformance::registry(webhook_secret)
    } else {
        let mut registry = if args.echo_only {
            HandlerRegistry::echo()
        } else {
            HandlerRegistry::agent(default_skills())
        };
        // `POST /asap/stream`: the reference example's word-by-word streaming echo.
        registry.register_streaming("task.request", Arc::new(StreamingEcho));
        registry
    };
    // One registry for the server, the webhook queue and the identity-provider calls.
    let metrics = Metrics::new();
    let mut builder = Server::builder()
        .config(config)
        .store(store)
        .registry(registry)
        .metrics(metrics.clone());
    if let Some(url) = &args.redis_url {
        let mut redis = RedisConfig::new(url.as_str());
        redis.key_prefix = args.redis_key_prefix.clone();
        redis.response_timeout = std::time::Duration::from_millis(args.redis_timeout_ms);
        redis.connect_timeout = redis.response_timeout;
        let shared = RedisSharedState::connect(redis)
            .await
            .context("connecting to Redis (--redis-url)")?;
        tracing::info!("shared state (replay guard, rate limits, WebSocket cache) in Redis");
        builder = builder.shared_state(Arc::new(shared));
    }
    let mut bearer_tokens = args.bearer_tokens.clone();
    if let Some(file) = &args.bearer_tokens_file {
        bearer_tokens.extend(lines_file(file)?);
    }
    if !bearer_tokens.is_empty() {
        let pairs: Vec<(&str, &str)> = bearer_tokens
            .iter()
            .map(|pair| {
                pair.split_once('=').ok_or_else(|| {
                    super::invalid_input("--bearer-token takes TOKEN=URN, got a value without '='")
                })
            })
            .collect::<anyhow::Result<_>>()?;
        builder = builder.token_validator(Arc::new(StaticTokens::new(pairs)));
        if manifest.auth.is_none() {
            manifest.auth = Some(AuthScheme {
                schemes: vec!["bearer".into()],
                oauth2: None,
            });
        }
    }
    if let Some(oauth) = oauth2(&args, &manifest.id, &metrics).await? {
        builder = builder.oauth2(oauth);
    }
    let mut webhooks = args.webhooks.clone();
    if let Some(file) = &args.webhooks_file {
        webhooks.extend(lines_file(file)?);
    }
    if let Some(queue) = &webhook_queue {
        queue.metrics(&metrics);
        if !webhooks.is_empty() {
            let hooks = Arc::new(TaskWebhooks::new(queue.clone()));
            for spec in &webhooks {
                let (url, secret) = spec.split_once('=').ok_or_else(|| {
                    super::invalid_input("--webhook takes URL=SECRET, got a value without '='")
                })?;
                hooks
                    .subscribe(url, secret)
                    .await
                    .with_context(|| format!("--webhook {url}"))?;
            }
            builder = builder.task_events(hooks);
        }
        let running = queue.clone();
        tokio::spawn(async move {
            if let Err(error) = running.run(std::future::pending()).await {
                tracing::error!(%error, "the webhook queue stopped");
            }
        });
    } else if !webhooks.is_empty() {
        return Err(super::invalid_input(
            "--webhook needs durable storage, --storage sqlite or postgres (the delivery queue lives there)",
        ));
    }
    if let Some(path) = &args.manifest_signing_key {
        builder = builder.manifest_signing_key(super::manifest::read_private_key(path)?);
    }
    let server = builder.manifest(manifest.clone()).build()?;
    let manifest_url = format!("{base_url}/.well-known/asap/manifest.json");
    let state = match &storage {
        StorageConfig::Sqlite(path) => format!("sqlite {}", path.display()),
        StorageConfig::Memory => "memory".to_owned(),
        StorageConfig::Postgres(_) => "postgres".to_owned(),
        other => format!("{other:?}"),
    };
    crate::out!(
        "asap: {} ({}) manifest {manifest_url}, state {state}, listening on {listening_url}",
        manifest.name,
        manifest.id
    );
    tracing::info!(listening = %listening_url, manifest = %manifest_url, %state, agent = %manifest.id, "serving");
    let advertiser = if args.mdns {
        let ip = match (args.mdns_address, address.ip()) {
            (Some(ip), _) if !ip.is_unspecified() => ip,
            (None, std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            (_, listening) => {
                return Err(super::invalid_input(format!(
                    "--mdns: listening on {listening}; say which IPv4 address (not 0.0.0.0) to advertise with --mdns-address"
                )));
            }
        };
        let manifest_url = format!(
            "{scheme}://{ip}:{}/.well-known/asap/manifest.json",
            address.port()
        );
        let advertiser = Advertiser::start(&manifest, &manifest_url, ip, address.port())?;
        crate::out!(
            "asap: advertised on the local network as {}",
            advertiser.fullname()
        );
        Some(advertiser)
    } else {
        None
    };
    match tls {
        Some(tls) => server.serve_tls(listener, tls, shutdown_signal()).await?,
        None => server.serve(listener, shutdown_signal()).await?,
    }
    if let Some(advertiser) = advertiser {
        advertiser.withdraw();
    }
    crate::out!("asap: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// `--public-url` without its trailing slash; it must be an http(s) URL.
fn public_url(url: &str) -> anyhow::Result<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let ok = ["http://", "https://"].iter().any(|scheme| {
        trimmed.len() > scheme.len() && trimmed[..scheme.len()].eq_ignore_ascii_case(scheme)
    });
    if !ok || trimmed.contains(char::is_whitespace) {
        return Err(super::invalid_input(format!(
            "--public-url must be an http:// or https:// URL, not {url:?}"
        )));
    }
    Ok(trimmed.to_owned())
}

/// The webhook delivery settings the flags ask for.
fn webhook_config(args: &ServeArgs) -> anyhow::Result<WebhookConfig> {
    Ok({
        let mut value = WebhookConfig::default();
        value.policy = super::webhook_policy(
            args.webhook_allow_http,
            &args.webhook_allow_private,
            "--webhook-allow-private",
        )?;
        value.per_url_rate = args.webhook_rate;
        value.lease = Duration::from_secs(args.webhook_lease);
        value
    })
}

/// The OAuth2 protection the flags (and their `ASAP_AUTH_*` variables) ask for, if any.
async fn oauth2(
    args: &ServeArgs,
    agent_id: &str,
    metrics: &Metrics,
) -> anyhow::Result<Option<OAuth2>> {
    let settings = {
        let mut value = OAuth2Settings::default();
        value.issuer = args.oauth2_issuer.clone();
        value.jwks_uri = args.oauth2_jwks_uri.clone();
        value.introspection_url = args.oauth2_introspection_url.clone();
        value.client_id = args.oauth2_client_id.clone();
        value.client_secret = secret(
            args.oauth2_client_secret.clone(),
            args.oauth2_client_secret_file.as_deref(),
        )?;
        value.required_scope = Some(args.oauth2_scope.clone());
        value.audience = args.oauth2_audience.clone();
        value.strict = args.oauth2_strict;
        value.per_route_scopes = args.oauth2_per_route_scopes;
        value.bind_sender = args.oauth2_bind_sender;
        value.subject_map = std::env::var("ASAP_AUTH_SUBJECT_MAP").ok();
        value.custom_claim = std::env::var("ASAP_AUTH_CUSTOM_CLAIM").ok();
        value
    };
    settings
        .build_metered(agent_id, Some(metrics))
        .await
        .context("setting up OAuth2 protection")
}

/// The state backend `--storage` names, with its settings.
fn storage_config(args: &ServeArgs) -> anyhow::Result<StorageConfig> {
    let backend = args.storage.trim().to_ascii_lowercase();
    if backend != "postgres" && args.database_url.is_some() {
        return Err(super::invalid_input(
            "--database-url is for --storage postgres",
        ));
    }
    Ok(match backend.as_str() {
        "sqlite" => StorageConfig::Sqlite(super::state_db(&args.data_dir)?),
        "postgres" => {
            let url = args.database_url.clone().ok_or_else(|| {
                super::invalid_input("--storage postgres needs --database-url (ASAP_DATABASE_URL)")
            })?;
            let mut config = PostgresConfig::new(url);
            config.max_connections = args.database_pool_size;
            config.statement_timeout = Duration::from_secs(args.database_statement_timeout);
            StorageConfig::Postgres(config)
        }
        _ => StorageConfig::parse(&args.storage, "")?,
    })
}
