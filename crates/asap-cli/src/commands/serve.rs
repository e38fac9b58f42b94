//! `asap serve`: a working agent with no set-up (echo skill, SQLite state).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use asap_protocol::discovery::Advertiser;
use asap_protocol::model::{AuthScheme, Manifest, Model, Skill};
use asap_protocol::server::{
    HandlerRegistry, OAuth2, OAuth2Settings, RateLimitRule, Server, ServerConfig, StaticTokens,
    default_skills, shutdown_signal,
};
use asap_protocol::store::{SqliteStore, StorageConfig};
use asap_protocol::webhook::{TaskWebhooks, WebhookConfig, WebhookQueue};
use clap::Args;

/// Arguments of `asap serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, env = "ASAP_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, env = "ASAP_PORT", default_value_t = 8000)]
    port: u16,
    /// Serve this manifest (JSON file) instead of generating one.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// The agent's URN in a generated manifest.
    #[arg(long, default_value = "urn:asap:agent:asap-rs")]
    id: String,
    /// The agent's name in a generated manifest.
    #[arg(long, default_value = "ASAP Rust Agent")]
    name: String,
    /// Folder for the agent's state (SQLite); created if missing.
    #[arg(long, env = "ASAP_DATA_DIR", default_value = "asap-data")]
    data_dir: PathBuf,
    /// `memory` or `sqlite` (default `sqlite`; `ASAP_STORAGE_PATH` overrides the file).
    #[arg(long, env = "ASAP_STORAGE_BACKEND", default_value = "sqlite")]
    storage: String,
    /// Rate limit of POST /asap per client IP (overrides `ASAP_RATE_LIMIT`), e.g. "100/second;1000/minute"; "off" disables it.
    #[arg(long)]
    rate_limit: Option<String>,
    /// Largest request body in bytes (overrides `ASAP_MAX_REQUEST_SIZE`).
    #[arg(long)]
    max_request_size: Option<usize>,
    /// Reject envelopes whose `extensions.nonce` was already seen.
    #[arg(long)]
    require_nonce: bool,
    /// Require `Authorization: Bearer TOKEN` and bind it to an agent: `TOKEN=URN`, repeatable.
    #[arg(long = "bearer-token", value_name = "TOKEN=URN")]
    bearer_tokens: Vec<String>,
    /// Require OAuth2 bearer JWTs on every path under /asap; keys from this provider's
    /// OIDC discovery document (its issuer must match).
    #[arg(long, env = "ASAP_AUTH_ISSUER")]
    oauth2_issuer: Option<String>,
    /// Require OAuth2 bearer JWTs, with keys from this JWKS URL (overrides discovery).
    #[arg(long, env = "ASAP_AUTH_JWKS_URI")]
    oauth2_jwks_uri: Option<String>,
    /// The scope every OAuth2 token must carry ("" for none).
    #[arg(long, env = "ASAP_AUTH_SCOPE", default_value = "asap:execute")]
    oauth2_scope: String,
    /// Scopes per route instead of one for all: `asap:read` for reads such as
    /// /asap/metrics, `asap:execute` for POST /asap; `asap:admin` grants both.
    #[arg(long, env = "ASAP_AUTH_PER_ROUTE_SCOPES")]
    oauth2_per_route_scopes: bool,
    /// Require each envelope's `sender` to be the token's subject or an agent the
    /// subject map gives that subject.
    #[arg(long, env = "ASAP_AUTH_BIND_SENDER")]
    oauth2_bind_sender: bool,
    /// Accept opaque tokens through this RFC 7662 introspection endpoint (with
    /// --oauth2-issuer, the discovered one is used when this is not given).
    #[arg(long, env = "ASAP_AUTH_INTROSPECTION_URL")]
    oauth2_introspection_url: Option<String>,
    /// The client id this agent authenticates with at the introspection endpoint.
    #[arg(long, env = "ASAP_AUTH_CLIENT_ID")]
    oauth2_client_id: Option<String>,
    /// The client secret for the introspection endpoint.
    #[arg(long, env = "ASAP_AUTH_CLIENT_SECRET", hide_env_values = true)]
    oauth2_client_secret: Option<String>,
    /// Require this `aud` in OAuth2 tokens.
    #[arg(long, env = "ASAP_AUTH_AUDIENCE")]
    oauth2_audience: Option<String>,
    /// Production checks the reference does not make: require `exp`, check `nbf`
    /// (30 s leeway), with --oauth2-issuer `iss`, and with `ASAP_AUTH_SUBJECT_MAP` reject
    /// subjects the map does not list for this agent.
    #[arg(long, env = "ASAP_AUTH_STRICT")]
    oauth2_strict: bool,
    /// Compress responses when the client accepts gzip or br (the reference never does).
    #[arg(long)]
    compress_responses: bool,
    /// Serve only the reference's echo handler for `task.request` (no task records or
    /// snapshots), as the reference echo agent does.
    #[arg(long)]
    echo_only: bool,
    /// Seconds to let requests in flight finish on shutdown.
    #[arg(long, default_value_t = 30)]
    shutdown_grace: u64,
    /// WebSocket messages per second per connection (the burst is as large); 0 turns the
    /// limit off.
    #[arg(long, default_value_t = 10)]
    ws_rate_limit: u32,
    /// Most open WebSocket connections.
    #[arg(long, default_value_t = 1024)]
    ws_max_connections: usize,
    /// Seconds between WebSocket heartbeat pings; connections silent for three
    /// intervals are closed.
    #[arg(long, default_value_t = 30)]
    ws_ping_interval: u64,
    /// Acknowledge only `received`, as the reference (no `processed`/`rejected` acks).
    #[arg(long)]
    ws_received_acks_only: bool,
    /// Run the shared interop harness's test agent: skills echo, slow, push, fail,
    /// checkpoint and webhook; nonce checking on, rate limit 100000/s, WebSocket acks
    /// `received` only (reference parity), loopback webhook targets allowed.
    #[arg(long)]
    conformance: bool,
    /// The secret the conformance agent signs webhooks with.
    #[arg(long, env = "ASAP_WEBHOOK_SECRET", default_value = super::conformance::DEFAULT_WEBHOOK_SECRET, hide_env_values = true)]
    webhook_secret: String,
    /// Advertise the agent on the local network (DNS-SD `_asap._tcp.local.`) while it runs.
    #[arg(long)]
    mdns: bool,
    /// The IPv4 address to advertise with --mdns (default: the address listened on; needed
    /// when listening on 0.0.0.0).
    #[arg(long, requires = "mdns")]
    mdns_address: Option<std::net::Ipv4Addr>,
    /// Send task events to this callback, signed with SECRET (`URL=SECRET`, repeatable);
    /// needs SQLite storage, which holds the delivery queue.
    #[arg(long = "webhook", value_name = "URL=SECRET")]
    webhooks: Vec<String>,
    /// Allow `http://` webhook callbacks (development only).
    #[arg(long)]
    webhook_allow_http: bool,
    /// Allow this non-public range for webhook callbacks (CIDR, repeatable).
    #[arg(long = "webhook-allow-private", value_name = "CIDR")]
    webhook_allow_private: Vec<String>,
}

fn manifest(args: &ServeArgs, base_url: &str) -> anyhow::Result<Manifest> {
    if let Some(path) = &args.manifest {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Manifest::from_json(&text)
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
    let mut config = ServerConfig::from_env()?;
    if let Some(limit) = &args.rate_limit {
        config.rate_limits = if limit.eq_ignore_ascii_case("off") {
            Vec::new()
        } else {
            RateLimitRule::parse_list(limit)?
        };
    }
    if let Some(max) = args.max_request_size {
        config.max_request_size = max;
    }
    config.require_nonce = args.require_nonce;
    config.compress_responses = args.compress_responses;
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

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let base_url = format!("http://{address}");
    let mut manifest = manifest(&args, &base_url)?;

    let storage = if args.storage.trim().eq_ignore_ascii_case("sqlite") {
        StorageConfig::Sqlite(super::state_db(&args.data_dir)?)
    } else {
        StorageConfig::parse(&args.storage, "")?
    };
    let (store, webhook_queue) = match &storage {
        // SQLite also holds the webhook queue, which this agent delivers from.
        StorageConfig::Sqlite(path) => {
            let sqlite = SqliteStore::open(path)
                .await
                .context("opening the state store")?;
            let queue = WebhookQueue::new(&sqlite, webhook_config(&args)?);
            (
                Arc::new(sqlite) as Arc<dyn asap_protocol::store::Store>,
                Some(queue),
            )
        }
        StorageConfig::Memory => (
            storage.open().await.context("opening the state store")?,
            None,
        ),
    };

    let registry = if args.conformance {
        super::conformance::registry(args.webhook_secret.clone())
    } else if args.echo_only {
        HandlerRegistry::echo()
    } else {
        HandlerRegistry::agent(default_skills())
    };
    let mut builder = Server::builder()
        .config(config)
        .store(store)
        .registry(registry);
    if !args.bearer_tokens.is_empty() {
        let pairs: Vec<(&str, &str)> = args
            .bearer_tokens
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--bearer-token takes TOKEN=URN, got {pair:?}"))
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
    if let Some(oauth) = oauth2(&args, &manifest.id).await? {
        builder = builder.oauth2(oauth);
    }
    if let Some(queue) = &webhook_queue {
        if !args.webhooks.is_empty() {
            let hooks = Arc::new(TaskWebhooks::new(queue.clone()));
            for spec in &args.webhooks {
                let (url, secret) = spec
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--webhook takes URL=SECRET, got {spec:?}"))?;
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
    } else if !args.webhooks.is_empty() {
        anyhow::bail!("--webhook needs SQLite storage (the delivery queue lives there)");
    }
    let server = builder.manifest(manifest.clone()).build()?;
    println!(
        "asap: {} ({}) listening on {base_url}",
        manifest.name, manifest.id
    );
    println!("asap: manifest at {base_url}/.well-known/asap/manifest.json; state: {storage:?}");
    tracing::info!(%address, agent = %manifest.id, "serving");
    let advertiser = if args.mdns {
        let ip = match (args.mdns_address, address.ip()) {
            (Some(ip), _) => ip,
            (None, std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
            (None, listening) => anyhow::bail!(
                "--mdns: listening on {listening}; say which IPv4 address to advertise with --mdns-address"
            ),
        };
        let manifest_url = format!(
            "http://{ip}:{}/.well-known/asap/manifest.json",
            address.port()
        );
        let advertiser = Advertiser::start(&manifest, &manifest_url, ip, address.port())?;
        println!(
            "asap: advertised on the local network as {}",
            advertiser.fullname()
        );
        Some(advertiser)
    } else {
        None
    };
    server.serve(listener, shutdown_signal()).await?;
    if let Some(advertiser) = advertiser {
        advertiser.withdraw();
    }
    println!("asap: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The webhook delivery settings the flags ask for.
fn webhook_config(args: &ServeArgs) -> anyhow::Result<WebhookConfig> {
    Ok(WebhookConfig {
        policy: super::webhook_policy(
            args.webhook_allow_http,
            &args.webhook_allow_private,
            "--webhook-allow-private",
        )?,
        ..WebhookConfig::default()
    })
}

/// The OAuth2 protection the flags (and their `ASAP_AUTH_*` variables) ask for, if any.
async fn oauth2(args: &ServeArgs, agent_id: &str) -> anyhow::Result<Option<OAuth2>> {
    let settings = OAuth2Settings {
        issuer: args.oauth2_issuer.clone(),
        jwks_uri: args.oauth2_jwks_uri.clone(),
        introspection_url: args.oauth2_introspection_url.clone(),
        client_id: args.oauth2_client_id.clone(),
        client_secret: args.oauth2_client_secret.clone(),
        required_scope: Some(args.oauth2_scope.clone()),
        audience: args.oauth2_audience.clone(),
        strict: args.oauth2_strict,
        per_route_scopes: args.oauth2_per_route_scopes,
        bind_sender: args.oauth2_bind_sender,
        subject_map: std::env::var("ASAP_AUTH_SUBJECT_MAP").ok(),
    };
    settings
        .build(agent_id)
        .await
        .context("setting up OAuth2 protection")
}
