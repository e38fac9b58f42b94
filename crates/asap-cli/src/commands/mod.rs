//! One module per subcommand; each parses nothing itself and calls the library.

#[path = "../../../asap-protocol/examples/conformance_agent/skills.rs"]
pub mod conformance;
pub mod local;
pub mod login;
pub mod registry;
pub mod remote;
pub mod schemas;
pub mod serve;
pub mod validate;
pub mod webhook;

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The agent's SQLite file: `ASAP_STORAGE_PATH`, else `asap_state.db` in `data_dir`
/// (created). `asap serve` and `asap webhook` must agree on it: the file holds the
/// webhook queue too.
pub fn state_db(data_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("ASAP_STORAGE_PATH") {
        return Ok(PathBuf::from(path));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    Ok(data_dir.join("asap_state.db"))
}

/// Where webhooks may go, from `--…-allow-http` and `--…-allow-private` (named by
/// `flag` in errors).
pub fn webhook_policy(
    allow_http: bool,
    allow_private: &[String],
    flag: &str,
) -> anyhow::Result<asap_protocol::webhook::UrlPolicy> {
    let allow = asap_protocol::webhook::UrlPolicy::parse_allow_list(allow_private)
        .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    Ok(asap_protocol::webhook::UrlPolicy { allow_http, allow })
}
