//! Standard output and logs: lines written so that a closed pipe ends the command
//! quietly instead of panicking, and the tracing subscriber the `--log-*` options ask for.

use std::io::{IsTerminal as _, Write as _};

/// Writes one line to standard output; an error (a closed pipe) is returned, not a panic.
pub fn line(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(text)?;
    out.write_all(b"\n")
}

/// Flushes standard output (for commands that print as things arrive).
pub fn flush() -> std::io::Result<()> {
    std::io::stdout().flush()
}

/// `println!` that returns from the enclosing function with the write error, so
/// `asap ... | head` ends quietly (exit code 141) instead of panicking.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))?
    };
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colours only when standard error is a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// A `--log-level` value: a level (`off`, `error`, `warn`, `info`, `debug`, `trace`) or
/// tracing directives (`warn,asap_protocol=debug`).
pub fn parse_level(value: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let value = value.trim();
    let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(value));
    if is_level
        || (value.contains('=')
            && tracing_subscriber::EnvFilter::builder()
                .parse(value)
                .is_ok())
    {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(format!(
            "expected one of {} or directives such as warn,asap_protocol=debug",
            LEVELS.join(", ")
        ))
    }
}

/// The log filter: `RUST_LOG` wins over `level`.
fn filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
}

/// Logs to standard error: `RUST_LOG` wins over `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Logs to standard error as [`init_logging`] does, and exports the agent's spans over
/// OTLP (service name `service_name` unless `OTEL_SERVICE_NAME` is set) through the
/// global tracer provider, which the server and clients built afterwards record into.
/// The guard flushes what is queued when dropped.
#[cfg(feature = "otel")]
pub fn init_logging_with_otlp(
    format: LogFormat,
    level: &str,
    service_name: &str,
) -> Result<asap_protocol::telemetry::OtelGuard, asap_protocol::telemetry::TelemetryError> {
    let guard = asap_protocol::telemetry::init_otlp(service_name)?;
    init_logging(format, level);
    Ok(guard)
}

#[cfg(test)]
mod tests {
    #[test]
    fn levels_and_directives() {
        assert_eq!(super::parse_level("INFO").unwrap(), "info");
        assert!(super::parse_level("warn,asap_protocol=debug").is_ok());
        assert!(super::parse_level("loud").is_err());
        assert!(super::parse_level("x=notalevel").is_err());
    }
}
