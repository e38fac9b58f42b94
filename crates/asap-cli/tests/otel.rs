//! `asap serve` with OpenTelemetry configured from the environment alone
//! (`OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT`): a request carrying a
//! `traceparent` is exported as an `asap.request` span of that trace, parented by the
//! caller's span, under the agent's URN as `service.name`.

#![cfg(feature = "otel")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use asap_test_support::otlp::{self, Exported};
use asap_test_support::process::Guard;
use serde_json::json;

const AGENT: &str = "urn:asap:agent:otel-cli";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn serve_exports_a_span_continuing_the_incoming_traceparent() {
    let (endpoint, spans) = otlp::receiver();
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_asap"));
    for (name, _) in std::env::vars() {
        if name.starts_with("ASAP_") || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["serve", "--port", "0", "--storage", "memory", "--id", AGENT])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        // Export each batch after 50 ms rather than 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _guard = Guard(child);
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();

    let body = json!({
        "jsonrpc": "2.0", "method": "asap.send", "id": "req-1",
        "params": {"envelope": {
            "asap_version": "0.1",
            "sender": "urn:asap:agent:client",
            "recipient": AGENT,
            "payload_type": "task.request",
            "payload": {"conversation_id": "c1", "skill_id": "echo", "input": {}},
        }}
    });
    let response: serde_json::Value = reqwest::blocking::Client::new()
        .post(format!("{url}/asap"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(response["result"]["envelope"]["trace_id"], TRACE);

    let (service, request) = loop {
        let Exported { service, span } = spans
            .recv_timeout(Duration::from_secs(30))
            .expect("asap serve exports its request span");
        if span.name == "asap.request" {
            break (service, span);
        }
    };
    assert_eq!(hex(&request.trace_id), TRACE);
    assert_eq!(hex(&request.parent_span_id), PARENT);
    assert_eq!(service, AGENT);
    assert_eq!(
        response["result"]["envelope"]["extensions"]["span_id"],
        hex(&request.span_id)
    );
}
