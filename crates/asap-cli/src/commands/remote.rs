//! `asap send`, `asap discover`, `asap health`: talk to a running agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use asap_protocol::auth::{ClientAuth, ClientCredentials};
use asap_protocol::client::{Client, ClientError, RetryPolicy, TransportMode};
use asap_protocol::json;
use asap_protocol::model::{Envelope, Model, TaskRequest};
use clap::Args;
use serde_json::{Value, json};

/// Options shared by the commands that call an agent.
#[derive(Debug, Args)]
pub struct Connection {
    /// Send `Authorization: Bearer TOKEN`.
    #[arg(long, env = "ASAP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds to wait for an answer (default 60; with `discover --local`, seconds to
    /// listen, default 2).
    #[arg(long)]
    timeout: Option<f64>,
    /// Attempts in total for transient failures.
    #[arg(long, default_value_t = 3)]
    attempts: u32,
    /// Allow plain http:// to hosts other than loopback.
    #[arg(long)]
    insecure_http: bool,
    /// `http`, `ws` (WebSocket) or `auto` (by the URL's scheme; also when empty).
    #[arg(long, default_value = "auto")]
    transport: String,
    /// Also trust the root certificates in this PEM file when calling the agent, over
    /// https:// and wss:// (agents behind a private CA). The OAuth2 token endpoint
    /// uses the system's trust store, which SSL_CERT_FILE can replace.
    #[arg(long, env = "ASAP_CA_CERT", value_name = "PEM")]
    ca_cert: Option<String>,
    #[command(flatten)]
    oauth2: OAuth2Args,
}

/// OAuth2 client credentials: a token is obtained (and refreshed) for every request.
#[derive(Debug, Args)]
pub struct OAuth2Args {
    /// The provider's token endpoint.
    #[arg(long, env = "ASAP_OAUTH2_TOKEN_URL", requires_all = ["client_id", "client_secret"])]
    token_url: Option<String>,
    /// The client id.
    #[arg(long, env = "ASAP_OAUTH2_CLIENT_ID")]
    client_id: Option<String>,
    /// The client secret.
    #[arg(long, env = "ASAP_OAUTH2_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    /// Scopes to ask for (repeatable, or space-separated).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// Send the credentials in the form body (`client_secret_post`) instead of HTTP Basic.
    #[arg(long)]
    client_secret_post: bool,
}

impl OAuth2Args {
    /// The token source the options describe, if any.
    pub fn source(&self) -> anyhow::Result<Option<ClientCredentials>> {
        // An empty value counts as not given (templates substitute empty placeholders).
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (Some(url), Some(id), Some(secret)) = (
            given(&self.token_url),
            given(&self.client_id),
            given(&self.client_secret),
        ) else {
            return Ok(None);
        };
        let scopes: Vec<String> = self
            .scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_owned)
            .collect();
        let auth = if self.client_secret_post {
            ClientAuth::Post
        } else {
            ClientAuth::Basic
        };
        Ok(Some(
            ClientCredentials::new(url, id, secret)?
                .scopes(scopes)
                .client_auth(auth),
        ))
    }
}

impl Connection {
    fn client(&self) -> anyhow::Result<Client> {
        Ok(self.builder()?.build()?)
    }

    /// The client's settings from these options.
    fn builder(&self) -> anyhow::Result<asap_protocol::client::ClientBuilder> {
        let mut builder = Client::builder()
            .timeout(std::time::Duration::from_secs_f64(
                self.timeout.unwrap_or(60.0).max(0.001),
            ))
            .retry({
                let mut value = RetryPolicy::default();
                value.max_attempts = self.attempts.max(1);
                value
            })
            .require_https(!self.insecure_http)
            .transport(match self.transport.trim() {
                "" | "auto" => TransportMode::Auto,
                "http" | "https" => TransportMode::Http,
                "ws" | "wss" | "websocket" => TransportMode::WebSocket,
                other => {
                    return Err(super::invalid_input(format!(
                        "--transport must be http, ws or auto, not {other:?}"
                    )));
                }
            });
        // An empty value counts as not given, as for the other options.
        if let Some(path) = self.ca_cert.as_deref().filter(|p| !p.is_empty()) {
            let pem = std::fs::read(path)
                .map_err(|e| super::invalid_input(format!("--ca-cert {path}: {e}")))?;
            builder = builder.root_certificates_pem(pem);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_token(token);
        }
        if let Some(source) = self.oauth2.source()? {
            builder = builder.token_source(std::sync::Arc::new(source));
        }
        Ok(builder)
    }
}

/// Arguments of `asap send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The agent's base URL (its JSON-RPC endpoint is `URL/asap`), or its WebSocket URL
    /// (`ws://HOST:PORT` or `…/asap/ws`) to send over WebSocket.
    url: String,
    /// Run this skill (a `task.request`).
    #[arg(long, conflicts_with_all = ["payload_type", "envelope"])]
    skill: Option<String>,
    /// The skill's input, a JSON object.
    #[arg(long, default_value = "{}")]
    input: String,
    /// Send this payload type with `--payload` instead of a task request.
    #[arg(long, requires = "payload", conflicts_with = "envelope")]
    payload_type: Option<String>,
    /// The payload, a JSON object.
    #[arg(long)]
    payload: Option<String>,
    /// Send this envelope file as it is (`-` reads standard input).
    #[arg(long)]
    envelope: Option<PathBuf>,
    /// The sender's URN.
    #[arg(long, default_value = "urn:asap:agent:asap-cli")]
    sender: String,
    /// The recipient's URN (default: the id in the agent's manifest).
    #[arg(long)]
    recipient: Option<String>,
    /// The conversation id of a task request.
    #[arg(long, default_value = "conv_cli")]
    conversation: String,
    /// Stream the answer (`POST URL/asap/stream`, ASAP 2.x; with `--transport ws` or a
    /// `ws://` URL, over the agent's WebSocket in the 2.x dialect): print each envelope
    /// the agent streams, one JSON line each, as it arrives.
    #[arg(long)]
    stream: bool,
    #[command(flatten)]
    connection: Connection,
}

fn object(text: &str, what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    match json::parse(text.as_bytes()).with_context(|| format!("{what} is not JSON"))? {
        Value::Object(map) => Ok(map),
        _ => Err(super::invalid_input(format!(
            "{what} must be a JSON object"
        ))),
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Ends a command on a client error. An error the peer answered with (JSON-RPC or HTTP)
/// is the command's output: printed once, as JSON on stdout, exit 5 (the harness reads
/// `error.code` there). Any other failure is returned, and `main` prints it once on
/// stderr with its exit code.
fn report(error: ClientError) -> anyhow::Result<ExitCode> {
    let (code, message, data) = match &error {
        ClientError::Remote {
            code,
            message,
            data,
            ..
        } => (
            json!(code),
            message.clone(),
            data.clone().unwrap_or(Value::Null),
        ),
        ClientError::Http { status, body } => (
            Value::Null,
            error.to_string(),
            json!({"http_status": status.as_u16(), "body": body}),
        ),
        _ => return Err(error.into()),
    };
    crate::out!(
        "{}",
        json::to_compact(&json!({"error": {"code": code, "message": message, "data": data}}))
    );
    Ok(crate::exit::of_client_error(&error).code())
}

/// Runs `asap send`.
pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let client = args.connection.client()?;
        let envelope = if let Some(path) = &args.envelope {
            let bytes = if path.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                b
            } else {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            };
            Envelope::from_json(&bytes).context("the envelope is invalid")?
        } else {
            let recipient = match &args.recipient {
                Some(r) => r.clone(),
                None => match client.discover(&args.url).await {
                    Ok(m) => m.id,
                    Err(e) => return report(e),
                },
            };
            let mut e = match (&args.payload_type, &args.skill) {
                (Some(pt), _) => {
                    let payload = object(args.payload.as_deref().unwrap_or("{}"), "--payload")?;
                    Envelope::raw(&args.sender, &recipient, pt, payload)
                }
                (None, skill) => {
                    let input = Value::Object(object(&args.input, "--input")?);
                    Envelope::new(
                        &args.sender,
                        &recipient,
                        TaskRequest::new(
                            &args.conversation,
                            skill.as_deref().unwrap_or("echo"),
                            input,
                        ),
                    )
                }
            };
            e.requires_ack = false;
            e
        };
        if args.stream {
            return print_stream(&client, &args.url, &envelope).await;
        }
        match client.send(&args.url, &envelope).await {
            Ok(reply) => {
                crate::out!("{}", reply.to_json());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => report(e),
        }
    })
}

/// `asap send --stream`: each streamed envelope on its own line as soon as it arrives;
/// an error (before or during the stream) ends the command as for a send.
async fn print_stream(client: &Client, url: &str, envelope: &Envelope) -> anyhow::Result<ExitCode> {
    use futures_util::StreamExt as _;
    let mut envelopes = match client.stream(url, envelope).await {
        Ok(envelopes) => envelopes,
        Err(e) => return report(e),
    };
    while let Some(item) = envelopes.next().await {
        match item {
            Ok(streamed) => {
                crate::out!("{}", streamed.to_json());
                crate::output::flush()?;
            }
            Err(e) => return report(e),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `asap discover` and `asap health`.
#[derive(Debug, Args)]
pub struct UrlArgs {
    /// The agent's base URL.
    url: String,
    #[command(flatten)]
    connection: Connection,
}

/// Arguments of `asap discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// The agent's base URL (not with `--local`).
    #[arg(required_unless_present = "local")]
    url: Option<String>,
    /// List the agents advertised on the local network (DNS-SD) instead.
    #[arg(long, conflicts_with = "url")]
    local: bool,
    /// With `--local`: one JSON object per agent.
    #[arg(long, requires = "local")]
    json: bool,
    /// Verify the signature of a signed manifest (docs/asap-2.md section 5) against
    /// `--public-key` or `--ca-public-key`; without either, a signed manifest is
    /// refused. An unsigned manifest is read as usual unless `--public-key` is given.
    #[arg(long, conflicts_with = "local")]
    verify_signature: bool,
    /// The agent's Ed25519 public key: a file (SPKI PEM, PKCS#8 PEM private key or
    /// base64) or the base64 key itself. Its manifest must be signed with it (implies
    /// `--verify-signature`).
    #[arg(long, value_name = "KEY", conflicts_with = "local")]
    public_key: Option<String>,
    /// Trusted ASAP CA keys (comma-separated, as `--public-key`): a manifest with trust
    /// level `verified` signed by one is accepted (implies `--verify-signature`).
    #[arg(
        long,
        env = "ASAP_CA_PUBLIC_KEY",
        value_name = "KEYS",
        value_delimiter = ',',
        conflicts_with = "local"
    )]
    ca_public_key: Vec<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Runs `asap discover`: prints the manifest, or the agents on the local network.
pub fn discover(args: DiscoverArgs) -> anyhow::Result<ExitCode> {
    let Some(url) = args.url else {
        // Agents on the local network advertise plain http:// URLs (as `asap serve
        // --mdns` does); their manifests are fetched as advertised.
        let client = args
            .connection
            .builder()?
            .require_https(false)
            .timeout(std::time::Duration::from_secs(5))
            .build()?;
        return super::local::run(args.connection.timeout.unwrap_or(2.0), args.json, client);
    };
    let mut builder = args
        .connection
        .builder()?
        .verify_manifest_signatures(args.verify_signature);
    if let Some(key) = &args.public_key {
        builder = builder.trusted_manifest_key(&url, super::manifest::read_public_key(key)?);
    }
    for key in args.ca_public_key.iter().filter(|k| !k.is_empty()) {
        builder = builder.trusted_ca_key(super::manifest::read_public_key(key)?);
    }
    let client = builder.build()?;
    runtime()?.block_on(async move {
        match client.discover(&url).await {
            Ok(m) => {
                // The shape of the manifest's dialect (a 2.x manifest keeps its nulls).
                crate::out!("{}", m.to_wire_json());
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => report(e),
        }
    })
}

/// Runs `asap health`: prints the health document; exit 5 when unhealthy.
pub fn health(args: UrlArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        match args.connection.client()?.health_check(&args.url).await {
            Ok(h) => {
                crate::out!("{}", h.to_json());
                Ok(if h.is_healthy() {
                    ExitCode::SUCCESS
                } else {
                    crate::exit::Exit::PeerError.code()
                })
            }
            Err(e) => report(e),
        }
    })
}

/// Arguments of `asap token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    oauth2: OAuth2Args,
    /// Print the token's claims (decoded for display, not verified) instead of the token.
    #[arg(long)]
    claims: bool,
}

/// Runs `asap token`: obtains a token with the client-credentials grant and prints it.
pub fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    let source = args
        .oauth2
        .source()?
        .context("--token-url, --client-id and --client-secret are required")?;
    let token = runtime()?.block_on(source.token())?;
    if !args.claims {
        crate::out!("{}", token.secret);
        return Ok(ExitCode::SUCCESS);
    }
    let payload = token
        .secret
        .split('.')
        .nth(1)
        .context("the access token is not a JWT (opaque token): no claims to show")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .context("the token's payload is not base64url")?;
    let claims = json::parse(&bytes).context("the token's payload is not JSON")?;
    crate::out!("{}", json::to_compact(&claims));
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `asap listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The agent's WebSocket URL (`ws://HOST:PORT`; an `http://` URL is converted).
    url: String,
    /// Stop after this many pushed envelopes.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Start a task with this skill on the same connection, and stop after its reply.
    #[arg(long)]
    skill: Option<String>,
    /// The task's input, a JSON object.
    #[arg(long, default_value = "{}")]
    input: String,
    /// The sender's URN.
    #[arg(long, default_value = "urn:asap:agent:asap-cli")]
    sender: String,
    #[command(flatten)]
    connection: Connection,
}

/// Runs `asap listen`: prints each envelope the agent pushes, one JSON line each.
pub fn listen(args: ListenArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let client = args.connection.client()?;
        let url = asap_protocol::client::websocket_url(&args.url);
        let mut pushes = match client.subscribe(&url).await {
            Ok(p) => p,
            Err(e) => return report(e),
        };
        let mut task = match &args.skill {
            None => None,
            Some(skill) => {
                let recipient = match client.discover(&url).await {
                    Ok(m) => m.id,
                    Err(e) => return report(e),
                };
                let input = Value::Object(object(&args.input, "--input")?);
                let envelope = Envelope::new(
                    &args.sender,
                    recipient,
                    TaskRequest::new("conv_cli", skill, input),
                );
                let (client, url) = (client.clone(), url.clone());
                Some(tokio::spawn(async move { client.send(&url, &envelope).await }))
            }
        };
        let deadline = args
            .duration
            .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs_f64(s.max(0.0)));
        let mut seen = 0;
        loop {
            if args.count.is_some_and(|n| seen >= n) {
                return Ok(ExitCode::SUCCESS);
            }
            let until = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                pushed = pushes.recv() => match pushed {
                    Ok(envelope) => {
                        crate::out!("{}", envelope.to_json());
                        crate::output::flush()?;
                        seen += 1;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("asap: {n} pushed envelopes were dropped (printing too slowly)");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(ExitCode::SUCCESS),
                },
                joined = async { task.as_mut().expect("polled only with a task").await }, if task.is_some() => {
                    return match joined? {
                        Ok(reply) => {
                            // Pushes sent before the reply are already queued: print them first.
                            while let Ok(envelope) = pushes.try_recv() {
                                crate::out!("{}", envelope.to_json());
                            }
                            crate::out!("{}", reply.to_json());
                            Ok(ExitCode::SUCCESS)
                        }
                        Err(e) => report(e),
                    };
                }
                () = until => return Ok(ExitCode::SUCCESS),
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}
