//! `asap`: run, query and test ASAP agents from the command line.

mod commands;
mod docs;
mod exit;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use exit::Exit;
use output::LogFormat;

/// mimalloc (feature `mimalloc`, on by default): the agent allocates many small,
/// short-lived objects per message (JSON values, envelopes); the system allocator spent
/// 15 % of the WebSocket benchmark's CPU in malloc and free. Build with
/// `--no-default-features` for the system allocator's smaller resident memory.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `asap --version`: the package version, and the wire release and reference version
/// it is compatible with (checked against the library's constants by a test).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (ASAP 1.1 wire format; compatible with asap-protocol 1.1.0, the Python reference)"
);

/// Command-line tool for ASAP (Async Simple Agent Protocol) 1.1 agents.
#[derive(Debug, Parser)]
#[command(name = "asap", version = VERSION, about, long_about = None)]
struct Cli {
    /// Log line format on standard error.
    #[arg(
        long,
        global = true,
        env = "ASAP_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or tracing directives;
    /// `RUST_LOG` wins when set.
    #[arg(long, global = true, env = "ASAP_LOG_LEVEL", default_value = "warn", value_parser = output::parse_level)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with the JSON Schemas of the wire model.
    Schemas {
        #[command(subcommand)]
        action: commands::schemas::SchemasAction,
    },
    /// Check documents against the wire model; prints `ok` or the errors per file.
    Validate(commands::validate::ValidateArgs),
    /// Run an agent: echo skill, task lifecycle, SQLite state; stops on Ctrl-C or SIGTERM.
    Serve(Box<commands::serve::ServeArgs>),
    /// Send an envelope to an agent and print the response envelope as JSON.
    Send(commands::remote::SendArgs),
    /// Fetch and print an agent's manifest, or list the agents on the local network (`--local`).
    Discover(commands::remote::DiscoverArgs),
    /// Print an agent's health; exit code 5 when it is unhealthy.
    Health(commands::remote::UrlArgs),
    /// Obtain an OAuth2 access token (client credentials) and print it, or its claims.
    Token(commands::remote::TokenArgs),
    /// Sign in at an OAuth2 provider (authorization code with PKCE): prints the URL to
    /// open, receives the redirect on a loopback port and prints the access token.
    Login(commands::login::LoginArgs),
    /// Print the envelopes an agent pushes over its WebSocket, one JSON line each.
    Listen(commands::remote::ListenArgs),
    /// Verify webhook signatures; enqueue, deliver, list and replay webhooks.
    Webhook {
        #[command(subcommand)]
        action: commands::webhook::WebhookAction,
    },
    /// Sign and verify manifests (Ed25519, as the 2.5.10 reference's `asap manifest`).
    Manifest {
        #[command(subcommand)]
        action: commands::manifest::ManifestAction,
    },
    /// Generate Ed25519 keys for signing manifests (PKCS#8 PEM, as `asap keys` of 2.5.10).
    Keys {
        #[command(subcommand)]
        action: commands::manifest::KeysAction,
    },
    /// Search a Lite Registry, or write an agent's registry entry.
    Registry {
        #[command(subcommand)]
        action: commands::registry::RegistryAction,
    },
    /// Print a shell completion script: `asap completions bash > /etc/bash_completion.d/asap`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (`asap man | man -l -`), or write one page per command to DIR.
    Man {
        /// Write `asap.1` and `asap-<command>.1` into this folder instead.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
    /// Print the reference documentation generated from these definitions
    /// (docs/configuration.md).
    #[command(hide = true)]
    Reference,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "otel")]
    let _otel = match &cli.command {
        Command::Serve(args) if asap_protocol::telemetry::enabled_by_env() => {
            let service = commands::serve::service_name(args);
            match output::init_logging_with_otlp(cli.log_format, &cli.log_level, &service) {
                Ok(guard) => Some(guard),
                Err(error) => {
                    eprintln!("asap: OpenTelemetry export: {error}");
                    return Exit::InvalidInput.code();
                }
            }
        }
        _ => {
            output::init_logging(cli.log_format, &cli.log_level);
            None
        }
    };
    #[cfg(not(feature = "otel"))]
    output::init_logging(cli.log_format, &cli.log_level);
    let result = match cli.command {
        Command::Schemas { action } => commands::schemas::run(action),
        Command::Validate(args) => commands::validate::run(&args),
        Command::Serve(args) => commands::serve::run(*args),
        Command::Send(args) => commands::remote::send(args),
        Command::Discover(args) => commands::remote::discover(args),
        Command::Health(args) => commands::remote::health(args),
        Command::Token(args) => commands::remote::token(args),
        Command::Login(args) => commands::login::run(args),
        Command::Listen(args) => commands::remote::listen(args),
        Command::Webhook { action } => commands::webhook::run(action),
        Command::Registry { action } => commands::registry::run(action),
        Command::Manifest { action } => commands::manifest::run(action),
        Command::Keys { action } => commands::manifest::keys(action),
        Command::Completions { shell } => completions(shell),
        Command::Man { out } => man(out.as_deref()),
        Command::Reference => reference(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let exit = exit::of_error(&error);
            if exit != Exit::BrokenPipe {
                eprintln!("asap: {}", message(&error));
            }
            exit.code()
        }
    }
}

/// The error and its causes on one line, each said once: many errors repeat their
/// source's text in their own (`transport error: <the reqwest error>`), which anyhow's
/// `{:#}` would print twice.
fn message(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "asap", &mut script);
    write_stdout(&script)
}

fn man(out: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let command = Cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return write_stdout(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("writing man pages to {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn reference() -> anyhow::Result<ExitCode> {
    write_stdout(docs::configuration(&Cli::command()).as_bytes())
}

fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_names_the_wire_release_and_the_reference() {
        use asap_protocol::model::{REFERENCE_VERSION, WIRE_RELEASE};
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains(&format!("ASAP {WIRE_RELEASE} wire format")));
        assert!(VERSION.contains(&format!("asap-protocol {REFERENCE_VERSION}")));
    }

    #[test]
    fn an_error_message_says_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let error = anyhow::Error::from(Wrapper(std::io::Error::other("connection refused")))
            .context("sending");
        assert_eq!(
            message(&error),
            "sending: transport error: connection refused"
        );
    }

    #[test]
    fn the_command_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
