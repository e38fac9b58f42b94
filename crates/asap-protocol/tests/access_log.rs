//! The access log: one `info` line per request on target `asap_protocol::access` with
//! method, path, status, JSON-RPC code, payload type, envelope id, duration, client
//! and trace id, captured from a JSON subscriber for a success, a JSON-RPC error and a
//! 429, and from a text subscriber; and one line per WebSocket message.
//!
//! The server runs on the test's current-thread runtime, so the thread's default
//! subscriber sees its events.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use asap_protocol::server::{ACCESS_LOG_TARGET, RateLimitRule};
use common::{Options, echo_request, envelope, post, post_raw, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::new(format!("{ACCESS_LOG_TARGET}=info"))
}

/// The lines written so far, parsed (a JSON subscriber's).
fn json_lines(captured: &Captured) -> Vec<Value> {
    captured
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Captures this thread's log lines as JSON, at the test filter, while the guard lives.
fn capture_json() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

fn limited() -> Options {
    let mut options = Options::default();
    options.config.rate_limits = RateLimitRule::parse_list("2/minute").unwrap();
    options
}

#[tokio::test]
async fn a_json_line_per_request_for_a_success_an_error_and_a_429() {
    let (captured, _default) = capture_json();
    let server = start(limited()).await;

    let ok = echo_request(json!({"text": "hi"}));
    let body = serde_json::to_vec(&ok).unwrap();
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    let reply = post_raw(
        &server.base,
        body,
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    assert_eq!(reply.status, 200);
    let bogus = json!({
        "jsonrpc": "2.0", "method": "asap.send", "id": "req-2",
        "params": {"envelope": envelope("bogus.xyz", json!({}))}
    });
    let reply = post(&server.base, &bogus).await;
    assert_eq!(reply.code(), -32601);
    let reply = post(&server.base, &ok).await;
    assert_eq!(reply.status, 429);

    let lines = json_lines(&captured);
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    for line in &lines {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], ACCESS_LOG_TARGET);
        let fields = &line["fields"];
        assert_eq!(fields["method"], "POST");
        assert_eq!(fields["path"], "/asap");
        assert_eq!(fields["client"], "127.0.0.1");
        assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    let success = &lines[0]["fields"];
    assert_eq!(success["status"], 200);
    assert_eq!(success["payload_type"], "task.request");
    assert_eq!(success["trace_id"], TRACE);
    assert_eq!(success["envelope_id"].as_str().unwrap().len(), 26);
    assert!(success.get("rpc_code").is_none());

    let error = &lines[1]["fields"];
    assert_eq!(error["status"], 200);
    assert_eq!(error["rpc_code"], -32601);
    assert_eq!(error["payload_type"], "other");
    assert_eq!(error["trace_id"].as_str().unwrap().len(), 32);
    assert_ne!(error["trace_id"], TRACE);

    let refused = &lines[2]["fields"];
    assert_eq!(refused["status"], 429);
    assert!(refused.get("rpc_code").is_none());
    assert!(refused.get("payload_type").is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_text_line_names_every_field_and_the_target_can_be_silenced() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(filter())
        .with_writer(move || writer.clone())
        .finish();
    let server = start(limited()).await;
    {
        let _default = tracing::subscriber::set_default(subscriber);
        let reply = post(&server.base, &echo_request(json!({}))).await;
        assert_eq!(reply.status, 200);
    }
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    for field in [
        "INFO",
        ACCESS_LOG_TARGET,
        "method=POST",
        "path=/asap",
        "status=200",
        "payload_type=\"task.request\"",
        "envelope_id=",
        "duration_ms=",
        "client=127.0.0.1",
        "trace_id=",
    ] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }

    // Off for the target: nothing.
    let silent = Captured::default();
    let writer = silent.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "info,{ACCESS_LOG_TARGET}=off"
        )))
        .with_writer(move || writer.clone())
        .finish();
    {
        let _default = tracing::subscriber::set_default(subscriber);
        let reply = post(&server.base, &echo_request(json!({}))).await;
        assert_eq!(reply.status, 200);
    }
    assert!(
        !silent.lines().iter().any(|l| l.contains(ACCESS_LOG_TARGET)),
        "{:?}",
        silent.lines()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_line_per_websocket_message_in_the_handshake_trace() {
    let (captured, _default) = capture_json();
    let server = start(Options::default()).await;

    let mut handshake = format!("ws://{}/asap/ws", server.addr)
        .into_client_request()
        .unwrap();
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    handshake
        .headers_mut()
        .insert("traceparent", traceparent.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(handshake).await.unwrap();
    let mut ok = echo_request(json!({"text": "hi"}));
    ok["params"]["envelope"]["id"] = json!("env-ws-ok");
    let mut bogus = json!({
        "jsonrpc": "2.0", "method": "asap.send", "id": "req-2",
        "params": {"envelope": envelope("bogus.xyz", json!({}))}
    });
    bogus["params"]["envelope"]["id"] = json!("env-ws-bogus");
    for request in [&ok, &bogus] {
        let text = Message::Text(request.to_string().into());
        socket.send(text).await.unwrap();
        // The line is written before the answer is on the wire.
        let answer = loop {
            match socket.next().await.unwrap().unwrap() {
                Message::Text(text) if text.as_str() == r#"{"type": "ping"}"# => {}
                Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
                other => panic!("expected a text frame, got {other:?}"),
            }
        };
        assert_eq!(answer["id"], request["id"]);
    }

    let lines = json_lines(&captured);
    assert_eq!(
        lines.len(),
        3,
        "the upgrade, then one per message: {lines:#?}"
    );
    let upgrade = &lines[0]["fields"];
    assert_eq!(upgrade["method"], "GET");
    assert_eq!(upgrade["status"], 101);
    for line in &lines[1..] {
        assert_eq!(line["target"], ACCESS_LOG_TARGET);
        let fields = &line["fields"];
        assert_eq!(fields["method"], "WS");
        assert_eq!(fields["path"], "/asap/ws");
        assert_eq!(fields["status"], 200);
        assert_eq!(fields["client"], "127.0.0.1");
        assert_eq!(fields["trace_id"], TRACE);
        assert!(fields["duration_ms"].as_f64().unwrap() >= 0.0);
    }
    let success = &lines[1]["fields"];
    assert_eq!(success["payload_type"], "task.request");
    assert_eq!(success["envelope_id"], "env-ws-ok");
    assert!(success.get("rpc_code").is_none());
    let failure = &lines[2]["fields"];
    assert_eq!(failure["rpc_code"], -32601);
    assert_eq!(failure["payload_type"], "other");
    assert_eq!(failure["envelope_id"], "env-ws-bogus");
    socket.close(None).await.unwrap();
    server.stop().await;
}
