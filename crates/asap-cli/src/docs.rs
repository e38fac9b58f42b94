//! `docs/configuration.md`, generated from the clap definitions (`asap reference`), so
//! the documented flags, variables and defaults cannot drift from the command; a test
//! compares the file with this output.

use std::fmt::Write as _;

use clap::Command;

use crate::exit::Exit;

/// Variables read outside the command-line definitions.
const OTHER_VARIABLES: &[(&str, &str, &str)] = &[
    (
        "RUST_LOG",
        "—",
        "Log filter (tracing directives); wins over `--log-level`. `asap_protocol::access=off` silences the access log (one `info` line per request of `asap serve`).",
    ),
    (
        "OTEL_TRACES_EXPORTER",
        "`none`",
        "`otlp`: `asap serve` exports its spans (`asap.request`, `asap.handler.execute`, `asap.client.send`, `asap.store`) over OTLP/HTTP (protobuf), configured by `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`, `_COMPRESSION`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`; `service.name` is the agent's URN unless `OTEL_SERVICE_NAME` is set; `OTEL_SDK_DISABLED=true` turns it off. gRPC is not supported.",
    ),
    (
        "ASAP_STORAGE_PATH",
        "`DATA_DIR/asap_state.db`",
        "The SQLite state file of `asap serve` and `asap webhook`.",
    ),
    (
        "ASAP_MAX_THREADS",
        "unbounded",
        "Requests handled at once by `asap serve`; beyond it 503.",
    ),
    (
        "ASAP_DEBUG",
        "off",
        "Error details in -32603 answers (`1/true/yes/on`); never in production.",
    ),
    (
        "ASAP_AUTH_SUBJECT_MAP",
        "—",
        "JSON object mapping agent URNs to the OAuth2 subjects allowed to act as them (`--oauth2-bind-sender`, `--oauth2-strict`).",
    ),
    (
        "SSL_CERT_FILE",
        "the system store",
        "Replaces the trusted root certificates of every outgoing HTTPS and WSS call.",
    ),
];

/// The whole document.
pub fn configuration(root: &Command) -> String {
    let mut doc = String::from(
        "# Configuration reference\n\n\
         Generated from the command's own definitions by `asap reference`; a test fails \
         when this file differs, so it cannot drift. Every option of `asap serve` can also \
         come from the variable it names (a container needs no command line). Boolean \
         variables take `1/0`, `true/false`, `yes/no` or `on/off`; list variables are \
         comma-separated. Options ending in `-file` read a secret or a list from a file, \
         so it appears neither in `ps` nor in the environment.\n\n",
    );
    let globals: Vec<&clap::Arg> = root
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .collect();
    doc.push_str("## Options of every command\n\n");
    table(&mut doc, globals.into_iter());
    for command in root.get_subcommands().filter(|c| !c.is_hide_set()) {
        section(&mut doc, command, "asap");
    }
    doc.push_str(
        "## Other environment variables\n\n| variable | default | meaning |\n|---|---|---|\n",
    );
    for (name, default, meaning) in OTHER_VARIABLES {
        let _ = writeln!(doc, "| `{name}` | {default} | {meaning} |");
    }
    doc.push_str("\n## Exit codes\n\n| code | meaning |\n|---|---|\n");
    for exit in Exit::ALL {
        let _ = writeln!(doc, "| {} | {} |", exit as u8, exit.meaning());
    }
    doc
}

fn section(doc: &mut String, command: &Command, parent: &str) {
    let path = format!("{parent} {}", command.get_name());
    let about = command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let _ = writeln!(doc, "## `{path}`\n\n{}\n", one_line(&about));
    let positionals: Vec<String> = command
        .get_positionals()
        .map(|p| {
            let name = p
                .get_value_names()
                .and_then(|n| n.first())
                .map(|n| n.to_string())
                .unwrap_or_else(|| p.get_id().to_string().to_uppercase());
            format!(
                "`{name}`: {}",
                one_line(&p.get_help().map(|h| h.to_string()).unwrap_or_default())
            )
        })
        .collect();
    if !positionals.is_empty() {
        let _ = writeln!(doc, "Arguments: {}\n", positionals.join("; "));
    }
    let options: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|a| !a.is_positional() && !a.is_hide_set() && !a.is_global_set())
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .collect();
    if !options.is_empty() {
        table(doc, options.into_iter());
    }
    for sub in command.get_subcommands().filter(|c| !c.is_hide_set()) {
        section(doc, sub, &path);
    }
}

fn table<'a>(doc: &mut String, args: impl Iterator<Item = &'a clap::Arg>) {
    doc.push_str("| option | variable | default | meaning |\n|---|---|---|---|\n");
    for arg in args {
        let flag = arg
            .get_long()
            .map(|l| format!("`--{l}`"))
            .unwrap_or_default();
        let value = arg
            .get_value_names()
            .and_then(|n| n.first())
            .filter(|_| arg.get_num_args().is_none_or(|n| n.takes_values()))
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let flag = if value.is_empty() || !arg.get_action().takes_values() {
            flag
        } else {
            format!("{}{}`", flag.trim_end_matches('`'), value)
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "—".into());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if arg.is_hide_default_value_set() {
            "(hidden)".to_owned()
        } else if defaults.is_empty() || !arg.get_action().takes_values() {
            "—".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let _ = writeln!(doc, "| {flag} | {env} | {default} | {} |", one_line(&help));
    }
    doc.push('\n');
}

/// Help text on one table row (no newlines, no unescaped pipes).
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
