//! `asap`: run, query and test ASAP agents from the command line.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schemas { action } => commands::schemas::run(action),
        Command::Validate(args) => commands::validate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("asap: {error:#}");
            ExitCode::from(2)
        }
    }
}
