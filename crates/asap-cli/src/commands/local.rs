//! `asap discover --local`: agents on the local network (DNS-SD), resolved to their
//! manifests.

use std::process::ExitCode;
use std::time::Duration;

use asap_protocol::client::Client;
use asap_protocol::discovery::Browser;
use serde_json::json;

/// Browses for `seconds`, then prints one line per agent (or JSON objects with `json`),
/// each resolved to its manifest with `client`.
pub fn run(seconds: f64, json_lines: bool, client: Client) -> anyhow::Result<ExitCode> {
    super::remote::runtime()?.block_on(async move {
        let agents = Browser::start()?
            .collect(Duration::from_secs_f64(seconds.max(0.1)))
            .await;
        if agents.is_empty() {
            eprintln!(
                "asap: no agents found on the local network (listened {seconds} s for _asap._tcp.local.)"
            );
        }
        for agent in agents {
            // Resolve to the manifest: its id, and proof the advertisement is real.
            let manifest = client.discover(&agent.base_url()).await;
            let (id, error) = match &manifest {
                Ok(m) => (Some(m.id.clone()), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if json_lines {
                let mut line = serde_json::to_value(&agent)?;
                line["id"] = json!(id);
                if let Some(error) = error {
                    line["error"] = json!(error);
                }
                crate::out!("{line}");
            } else {
                crate::out!(
                    "{}\t{}\t{}\t{}\t{}",
                    agent.name,
                    id.as_deref().unwrap_or("(manifest unavailable)"),
                    agent.version,
                    agent.capabilities.join(","),
                    agent.manifest_url
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
