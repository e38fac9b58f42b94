//! `asap`: run, query and test ASAP agents from the command line.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc (feature `mimalloc`, on by default): the agent allocates many small,
/// short-lived objects per message (JSON values, envelopes); the system allocator spent
/// 15 % of the WebSocket benchmark's CPU in malloc and free. Build with
/// `--no-default-features` for the system allocator's smaller resident memory.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Command-line tool for ASAP (Async Simple Agent Protocol) 1.1 agents.
#[derive(Debug, Parser)]
#[command(name = "asap", version, about, long_about = None)]
struct Cli {
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
    Serve(commands::serve::ServeArgs),
    /// Send an envelope to an agent and print the response envelope as JSON.
    Send(commands::remote::SendArgs),
    /// Fetch and print an agent's manifest, or list the agents on the local network (`--local`).
    Discover(commands::remote::DiscoverArgs),
    /// Print an agent's health; exit code 1 when it is unhealthy.
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
    /// Search a Lite Registry, or write an agent's registry entry.
    Registry {
        #[command(subcommand)]
        action: commands::registry::RegistryAction,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Schemas { action } => commands::schemas::run(action),
        Command::Validate(args) => commands::validate::run(&args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Send(args) => commands::remote::send(args),
        Command::Discover(args) => commands::remote::discover(args),
        Command::Health(args) => commands::remote::health(args),
        Command::Token(args) => commands::remote::token(args),
        Command::Login(args) => commands::login::run(args),
        Command::Listen(args) => commands::remote::listen(args),
        Command::Webhook { action } => commands::webhook::run(action),
        Command::Registry { action } => commands::registry::run(action),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("asap: {error:#}");
            ExitCode::from(2)
        }
    }
}
