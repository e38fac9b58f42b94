//! `asap registry`: search a Lite Registry, and write the entry for an agent.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use asap_protocol::discovery::{
    DEFAULT_REGISTRY_URL, RegistryClient, RegistryEntry, agent_base_url,
};
use asap_protocol::model::{Manifest, Model};
use clap::Subcommand;

/// `asap registry ...`.
#[derive(Debug, Subcommand)]
pub enum RegistryAction {
    /// Print the registry's agents offering a skill (or with an id), one JSON object per
    /// line; exit 1 when none matches.
    Search {
        /// The skill id (exact, case-sensitive).
        #[arg(long, required_unless_present = "id")]
        skill: Option<String>,
        /// The agent URN.
        #[arg(long)]
        id: Option<String>,
        /// The registry: a URL or a file.
        #[arg(long, env = "ASAP_REGISTRY_URL", default_value = DEFAULT_REGISTRY_URL)]
        registry: String,
    },
    /// Print the registry entry for an agent from its manifest file.
    Entry {
        /// The manifest (JSON file; `-` reads standard input).
        #[arg(long)]
        manifest: PathBuf,
        /// The agent's public base URL (default: from the manifest's `endpoints.asap`).
        #[arg(long)]
        base_url: Option<String>,
    },
}

/// Runs `asap registry ...`.
pub fn run(action: RegistryAction) -> anyhow::Result<ExitCode> {
    match action {
        RegistryAction::Search {
            skill,
            id,
            registry,
        } => super::remote::runtime()?.block_on(async move {
            let registry = RegistryClient::new()?.fetch(&registry).await?;
            let found: Vec<&RegistryEntry> = match (&skill, &id) {
                (_, Some(id)) => registry.find_by_id(id).into_iter().collect(),
                (Some(skill), None) => registry.find_by_skill(skill),
                (None, None) => unreachable!("clap requires one"),
            };
            for entry in &found {
                crate::out!("{}", serde_json::to_string(entry)?);
            }
            Ok(if found.is_empty() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }),
        RegistryAction::Entry { manifest, base_url } => {
            let bytes = if manifest.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
                b
            } else {
                std::fs::read(&manifest)
                    .with_context(|| format!("reading {}", manifest.display()))?
            };
            let manifest = Manifest::from_json(&bytes).context("the manifest is invalid")?;
            let base = base_url.unwrap_or_else(|| agent_base_url(&manifest.endpoints.asap));
            let entry =
                RegistryEntry::from_manifest(&manifest, RegistryEntry::endpoints_for(&base));
            crate::out!("{}", serde_json::to_string(&entry)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
