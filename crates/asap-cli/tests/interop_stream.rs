//! `POST /asap/stream` across implementations, both directions, against the ASAP 2.x
//! reference (asap-protocol 2.5.10 from PyPI, in the virtualenv `scripts/ref25-venv.sh`
//! creates):
//!
//! - the reference client's `ASAPClient.stream` against `asap serve`;
//! - the library's `Client::stream` against the reference's streaming example agent;
//! - one request posted to both: the same headers that matter and the same events, once
//!   the volatile members (ids, times, trace ids, sender) are set aside.

mod support;

use std::process::Stdio;

use asap_protocol::client::Client;
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{Guard, reference25_script, spawn_announced};
use futures_util::StreamExt;
use serde_json::{Value, json};
use support::asap_serve;

const MESSAGE: &str = "h\u{e9}llo big world";

/// The 2.5.10 streaming example agent (rate limit raised).
fn reference25_streaming_agent() -> (Guard, String) {
    let mut command = reference25_script("ref25_streaming_agent.py");
    command
        .env("ASAP_RATE_LIMIT", "1000/second")
        .stderr(Stdio::null());
    spawn_announced(command, "the 2.5.10 streaming agent")
}

/// The chunks of a stream: `(chunk, progress, final, status)` of each `TaskStream`.
fn chunks(envelopes: &[Value]) -> Vec<Value> {
    envelopes
        .iter()
        .map(|e| {
            assert_eq!(e["payload_type"], "TaskStream", "{e}");
            e["payload"].clone()
        })
        .collect()
}

fn expected_chunks() -> Vec<Value> {
    vec![
        json!({"chunk": "h\u{e9}llo ", "progress": 1.0 / 3.0, "final": false, "status": "working"}),
        json!({"chunk": "big ", "progress": 2.0 / 3.0, "final": false, "status": "working"}),
        json!({"chunk": "world\n", "progress": 1.0, "final": true, "status": "completed"}),
    ]
}

#[test]
fn reference_client_streams_from_asap_serve() {
    let data = tempfile::tempdir().unwrap();
    let (_server, url) = asap_serve(&["--rate-limit", "off"], data.path());
    let out = reference25_script("ref25_stream_client.py")
        .args([&url, "urn:asap:agent:asap-rs", MESSAGE])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The client's own log lines are JSON too: envelopes are the lines with an `id` first.
    let envelopes: Vec<Value> = stdout
        .lines()
        .filter(|line| line.starts_with(r#"{"id":"#))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(chunks(&envelopes), expected_chunks(), "{stdout}");
    assert!(stdout.lines().any(|line| line == "streamed 3"), "{stdout}");
}

#[test]
fn client_streams_from_the_reference_agent() {
    let (_agent, url) = reference25_streaming_agent();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let request = Envelope::new(
        "urn:asap:agent:interop",
        "urn:asap:agent:streaming-agent",
        TaskRequest::new("c1", "echo", json!({"message": MESSAGE})),
    );
    let envelopes: Vec<Value> = runtime.block_on(async {
        let client = Client::builder().build().unwrap();
        let stream = client.stream(&url, &request).await.unwrap();
        stream
            .map(|item| serde_json::to_value(item.unwrap()).unwrap())
            .collect()
            .await
    });
    assert_eq!(chunks(&envelopes), expected_chunks());
    for envelope in &envelopes {
        assert_eq!(envelope["correlation_id"], request.id.as_str());
    }
}

/// `POST /asap/stream` with `ASAP-Version: 2.2`: the status, the headers and the body.
fn post_stream(base: &str, recipient: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let body = json!({"jsonrpc": "2.0", "method": "asap.send", "id": "req-1", "params": {"envelope": {
        "id": "01JSTREAMREQ0000000000001", "asap_version": "0.1",
        "sender": "urn:asap:agent:interop", "recipient": recipient,
        "payload_type": "task.request",
        "payload": {"conversation_id": "c1", "skill_id": "echo", "input": {"message": MESSAGE}},
    }}});
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/asap/stream"))
        .header("content-type", "application/json")
        .header("asap-version", "2.2")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .unwrap();
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    (status, headers, response.text().unwrap())
}

/// The events of a body, each `data:` JSON with its volatile members set aside.
fn events(body: &str) -> Vec<Value> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.split_terminator("\n\n")
        .map(|event| {
            let data = event
                .strip_prefix("data: ")
                .expect("one data line per event");
            assert!(
                data.starts_with(r#"{"id": ""#) && data.is_ascii(),
                "S2: {data}"
            );
            let mut envelope: Value = serde_json::from_str(data).unwrap();
            for volatile in ["id", "timestamp", "trace_id", "extensions", "sender"] {
                envelope[volatile] = Value::Null;
            }
            envelope
        })
        .collect()
}

#[test]
fn one_request_streamed_alike_by_both_servers() {
    let data = tempfile::tempdir().unwrap();
    let (_server, ours) = asap_serve(&["--rate-limit", "off"], data.path());
    let (_agent, theirs) = reference25_streaming_agent();
    let (status, headers, body) = post_stream(&ours, "urn:asap:agent:asap-rs");
    let (ref_status, ref_headers, ref_body) =
        post_stream(&theirs, "urn:asap:agent:streaming-agent");
    assert_eq!((status, ref_status), (200, 200));
    for name in ["content-type", "cache-control", "asap-version"] {
        assert_eq!(headers.get(name), ref_headers.get(name), "{name}");
    }
    let (ours, theirs) = (events(&body), events(&ref_body));
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 3);
}

/// The CLI against the 2.5.10 streaming agent over HTTP: `asap discover` and `asap health`
/// read it, `asap send --stream` prints each streamed envelope as one JSON line as it
/// arrives.
#[test]
fn the_cli_discovers_checks_and_streams_from_the_reference_agent() {
    let (_agent, url) = reference25_streaming_agent();
    let asap = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_asap"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "asap {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let manifest: Value = serde_json::from_str(&asap(&["discover", &url])).unwrap();
    // (The example declares `streaming: false`; it streams on `/asap/stream` all the same.)
    assert_eq!(
        manifest["capabilities"]["skills"][0]["id"], "stream_echo",
        "{manifest}"
    );
    assert!(manifest.get("supported_versions").is_some(), "{manifest}");
    let health: Value = serde_json::from_str(&asap(&["health", &url])).unwrap();
    assert_eq!(health["status"], "healthy", "{health}");
    let input = json!({"message": MESSAGE}).to_string();
    let out = asap(&[
        "send", &url, "--stream", "--skill", "echo", "--input", &input,
    ]);
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(chunks(&lines), expected_chunks());
}
