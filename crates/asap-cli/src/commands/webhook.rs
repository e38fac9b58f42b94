//! `asap webhook`: verify a signature, and work with an agent's durable webhook queue
//! (the `asap_state.db` in its data folder, or its PostgreSQL database): enqueue,
//! deliver, list dead letters, replay.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use asap_protocol::store::{PostgresConfig, PostgresStore, SqliteStore};
use asap_protocol::webhook::{Webhook, WebhookConfig, WebhookQueue, verify};
use clap::{Args, Subcommand};

/// `asap webhook ...`.
#[derive(Debug, Subcommand)]
pub enum WebhookAction {
    /// Check an `X-ASAP-Signature` against a body (FILE, or standard input); exit 3 if it
    /// does not match.
    Verify {
        /// The shared secret.
        #[arg(
            long,
            env = "ASAP_WEBHOOK_SECRET",
            hide_env_values = true,
            required_unless_present = "secret_file"
        )]
        secret: Option<String>,
        /// Read the shared secret from this file (kept out of `ps`).
        #[arg(long, env = "ASAP_WEBHOOK_SECRET_FILE", value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// The header value, `sha256=<hex>`.
        #[arg(long)]
        signature: String,
        /// The body as received (default: standard input).
        file: Option<PathBuf>,
    },
    /// Queue deliveries of a JSON payload to URL (written to the database; `deliver` or
    /// `asap serve` sends them).
    Enqueue {
        /// The callback URL.
        url: String,
        /// The payload, a JSON value.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Sign with this secret.
        #[arg(long, env = "ASAP_WEBHOOK_SECRET", hide_env_values = true)]
        secret: Option<String>,
        /// Read the signing secret from this file (kept out of `ps`).
        #[arg(long, env = "ASAP_WEBHOOK_SECRET_FILE", value_name = "FILE")]
        secret_file: Option<PathBuf>,
        /// Queue this many copies (`{"seq": N}` is added to object payloads).
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// Send what is queued: until the queue is empty with `--until-empty`, else until
    /// Ctrl-C or SIGTERM.
    Deliver {
        /// Stop once nothing is pending (dead letters do not count).
        #[arg(long)]
        until_empty: bool,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// List the deliveries that will not be attempted again, one JSON object per line.
    DeadLetters {
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// Put a dead letter back in the queue.
    Replay {
        /// The delivery id.
        id: String,
        #[command(flatten)]
        queue: QueueArgs,
    },
}

/// Where the queue is and what it may send to.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// The agent's data folder (its `asap_state.db` holds the queue; `ASAP_STORAGE_PATH`
    /// names the file instead, as for `asap serve`).
    #[arg(long, env = "ASAP_DATA_DIR", default_value = "asap-data")]
    data_dir: PathBuf,
    /// The queue in this PostgreSQL database instead (the agents' `--storage postgres
    /// --database-url`; several workers can deliver from it at once).
    #[arg(
        long,
        env = "ASAP_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// Allow `http://` callbacks (development only).
    #[arg(long)]
    allow_http: bool,
    /// Allow this non-public range (CIDR, repeatable), e.g. `127.0.0.1/32` for tests.
    #[arg(long = "allow-private", value_name = "CIDR")]
    allow_private: Vec<String>,
    /// Attempts in flight at once.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Deliveries per second per URL.
    #[arg(long, default_value_t = 10)]
    per_url_rate: u32,
    /// Seconds a delivering worker's claim on a delivery lasts (renewed while it is
    /// attempted); a delivery in flight in a worker that died is sent again by another
    /// worker, or the next `deliver`, once this has passed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    lease: u64,
}

impl QueueArgs {
    async fn open(&self) -> anyhow::Result<WebhookQueue> {
        let config = {
            let mut value = WebhookConfig::default();
            value.policy =
                super::webhook_policy(self.allow_http, &self.allow_private, "--allow-private")?;
            value.max_in_flight = self.max_in_flight;
            value.per_url_rate = self.per_url_rate;
            value.lease = Duration::from_secs(self.lease);
            value
        };
        if let Some(url) = &self.database_url {
            let store = PostgresStore::connect(&PostgresConfig::new(url))
                .await
                .context("opening the state store")?;
            return Ok(WebhookQueue::postgres(&store, config).await?);
        }
        let store = SqliteStore::open(super::state_db(&self.data_dir)?)
            .await
            .context("opening the state store")?;
        Ok(WebhookQueue::sqlite(&store, config).await?)
    }
}

/// Runs `asap webhook ...`.
pub fn run(action: WebhookAction) -> anyhow::Result<ExitCode> {
    if let WebhookAction::Verify {
        secret,
        secret_file,
        signature,
        file,
    } = &action
    {
        let secret = super::secret(secret.clone(), secret_file.as_deref())?.unwrap_or_default();
        let body = match file {
            Some(path) => {
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
            }
            None => {
                let mut body = Vec::new();
                std::io::stdin().read_to_end(&mut body)?;
                body
            }
        };
        return Ok(if verify(secret.as_bytes(), &body, signature.trim()) {
            crate::out!("ok");
            ExitCode::SUCCESS
        } else {
            crate::out!("signature does not match");
            crate::exit::Exit::InvalidInput.code()
        });
    }
    super::remote::runtime()?.block_on(async move {
        match action {
            WebhookAction::Verify { .. } => unreachable!("handled above"),
            WebhookAction::Enqueue {
                url,
                payload,
                secret,
                secret_file,
                count,
                queue,
            } => {
                let secret = super::secret(secret, secret_file.as_deref())?;
                let queue = queue.open().await?;
                let payload = asap_protocol::json::parse(payload.as_bytes())
                    .context("--payload is not JSON")?;
                for seq in 0..count {
                    let mut payload = payload.clone();
                    if count > 1
                        && let Some(object) = payload.as_object_mut()
                    {
                        object.insert("seq".into(), seq.into());
                    }
                    let webhook = Webhook {
                        url: url.clone(),
                        payload,
                        secret: secret.clone().map(String::into_bytes),
                        headers: Vec::new(),
                    };
                    let id = queue.enqueue(webhook).await?;
                    crate::out!("{id}");
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhookAction::Deliver { until_empty, queue } => {
                let queue = queue.open().await?;
                let running = queue.clone();
                let stop = async move {
                    if until_empty {
                        // A storage error ends the wait too: `run` then reports it.
                        while let Ok(false) = running.drained(Duration::from_secs(3600)).await {}
                    } else {
                        asap_protocol::server::shutdown_signal().await;
                    }
                };
                queue.run(stop).await?;
                let dead = queue.dead_letters().await?.len();
                eprintln!(
                    "asap: webhook queue: {} pending, {dead} dead letters",
                    queue.pending().await?
                );
                Ok(ExitCode::SUCCESS)
            }
            WebhookAction::DeadLetters { queue } => {
                for letter in queue.open().await?.dead_letters().await? {
                    let line = serde_json::json!({
                        "id": letter.id,
                        "url": letter.url,
                        "attempts": letter.attempts,
                        "last_error": letter.last_error,
                        "body": letter.body,
                    });
                    crate::out!("{line}");
                }
                Ok(ExitCode::SUCCESS)
            }
            WebhookAction::Replay { id, queue } => {
                queue.open().await?.replay(&id).await?;
                crate::out!("requeued {id}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
