//! One module per subcommand; each parses nothing itself and calls the library.

pub mod local;
pub mod login;
pub mod manifest;
pub mod registry;
pub mod remote;
pub mod schemas;
pub mod serve;
pub mod validate;
pub mod webhook;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
pub use asap_protocol::conformance;

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
        .map_err(|e| invalid_input(format!("{flag}: {e}")))?;
    Ok({
        let mut value = asap_protocol::webhook::UrlPolicy::default();
        value.allow_http = allow_http;
        value.allow = allow;
        value
    })
}

/// The parser of boolean options that also come from a variable: `1/0`, `true/false`,
/// `yes/no`, `on/off` (any case); anything else is a usage error.
pub fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

/// Input the user gave that cannot be used: exits with [`crate::exit::Exit::InvalidInput`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// An [`InvalidInput`] error saying `message`.
pub fn invalid_input(message: impl Into<String>) -> anyhow::Error {
    InvalidInput(message.into()).into()
}

/// A secret given as a value (flag or variable) or in a file, for secrets that must
/// not appear in `ps` or the environment; one trailing newline of the file is dropped.
/// The file wins over the value (options without a default make the two conflict).
pub fn secret(value: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the secret in {}", path.display()))?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(Some(text.strip_suffix('\r').unwrap_or(text).to_owned()))
        }
        None => Ok(value),
    }
}

/// The lines of a file of values (one per line; blank lines and `#` comments skipped).
pub fn lines_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
