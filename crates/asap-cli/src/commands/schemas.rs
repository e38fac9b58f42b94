//! `asap schemas export --out DIR`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use asap_protocol::model::schema::all_schemas;
use clap::Subcommand;

/// What to do with the schemas.
#[derive(Debug, Subcommand)]
pub enum SchemasAction {
    /// Write one JSON Schema (draft 2020-12) per model, laid out as the reference's
    /// `schemas/` folder (`envelope.schema.json`, `payloads/…`, `parts/…`, `entities/…`).
    Export {
        /// Folder to write into (created if missing).
        #[arg(long, short)]
        out: PathBuf,
    },
}

/// Runs the action.
pub fn run(action: SchemasAction) -> anyhow::Result<ExitCode> {
    let SchemasAction::Export { out } = action;
    let schemas = all_schemas();
    for (relative, schema) in &schemas {
        let path = out.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut text = serde_json::to_string_pretty(schema).context("serializing a schema")?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    crate::out!("wrote {} schemas to {}", schemas.len(), out.display());
    Ok(ExitCode::SUCCESS)
}
