//! The WebSocket binding in the 2.x dialect across implementations, against the ASAP
//! 2.x reference (asap-protocol 2.5.10 from PyPI, in the virtualenv
//! `scripts/ref25-venv.sh` creates):
//!
//! - the reference's `WebSocketTransport` (`send_and_receive`, `send_and_receive_stream`)
//!   against `asap serve`: its handshake carries no `ASAP-Version` (it cannot), so it
//!   gets 2.x from a server that accepts only 2.x, and 1.1 from the default server;
//! - the library's client and `asap send --stream --transport ws` against the
//!   reference's echo and streaming agents;
//! - one request sent to both servers: the same frames, once the volatile members are
//!   set aside.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use asap_protocol::client::{Client, TransportMode};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{
    Guard, reference25_echo_agent, reference25_script, spawn_announced,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use support::asap_serve;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const MESSAGE: &str = "h\u{e9}llo big world";
const OURS: &str = "urn:asap:agent:asap-rs";

/// The 2.5.10 streaming example agent (rate limit raised).
fn reference25_streaming_agent() -> (Guard, String) {
    let mut command = reference25_script("ref25_streaming_agent.py");
    command
        .env("ASAP_RATE_LIMIT", "1000/second")
        .stderr(Stdio::null());
    spawn_announced(command, "the 2.5.10 streaming agent")
}

fn expected_chunks() -> Vec<Value> {
    vec![
        json!({"chunk": "h\u{e9}llo ", "progress": 1.0 / 3.0, "final": false, "status": "working"}),
        json!({"chunk": "big ", "progress": 2.0 / 3.0, "final": false, "status": "working"}),
        json!({"chunk": "world\n", "progress": 1.0, "final": true, "status": "completed"}),
    ]
}

/// `ref25_ws_client.py` against `url`: the envelopes it printed (its own log lines are
/// JSON too: envelopes are the lines with an `id` first) and its count line.
fn reference_ws_client(url: &str, mode: &str) -> (Vec<Value>, String) {
    let mut command = reference25_script("ref25_ws_client.py");
    command.args([url, OURS, MESSAGE, mode]);
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let envelopes = stdout
        .lines()
        .filter(|line| line.starts_with(r#"{"id":"#))
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let count = stdout
        .lines()
        .find(|line| line.starts_with("received "))
        .unwrap_or_default()
        .to_owned();
    (envelopes, count)
}

fn payloads(envelopes: &[Value]) -> Vec<Value> {
    envelopes.iter().map(|e| e["payload"].clone()).collect()
}

#[test]
fn reference_ws_client_against_asap_serve() {
    let data = tempfile::tempdir().unwrap();
    // The stock 2.5.10 client sends no ASAP-Version on the handshake: a server that
    // accepts only 2.x speaks 2.2 to it, as the reference does.
    let (_server, url) = asap_serve(
        &["--rate-limit", "off", "--asap-versions", "2.1,2.2"],
        data.path(),
    );
    let (streamed, count) = reference_ws_client(&url, "stream");
    assert_eq!(payloads(&streamed), expected_chunks());
    assert_eq!(count, "received 3");
    // Its unary call resolves on the first frame of the stream, as against the
    // reference's streaming agent.
    let (unary, _) = reference_ws_client(&url, "unary");
    assert_eq!(payloads(&unary), expected_chunks()[..1]);

    // The default server: no header is 1.1, the unary echo.
    let data = tempfile::tempdir().unwrap();
    let (_server, url) = asap_serve(&["--rate-limit", "off"], data.path());
    let (unary, count) = reference_ws_client(&url, "unary");
    assert_eq!(unary[0]["payload_type"], "task.response");
    assert_eq!(
        unary[0]["payload"]["result"],
        json!({"echoed": {"message": MESSAGE}})
    );
    assert_eq!(count, "received 1");
}

fn request(recipient: &str) -> Envelope {
    Envelope::new(
        "urn:asap:agent:interop",
        recipient,
        TaskRequest::new("c1", "echo", json!({"message": MESSAGE})),
    )
}

#[test]
fn our_client_against_the_reference_agents() {
    let (_echo, echo_url) = reference25_echo_agent();
    let (_streaming, streaming_url) = reference25_streaming_agent();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = Client::builder()
            .transport(TransportMode::WebSocket)
            .build()
            .unwrap();
        // Unary, after discovery: the 2.x offer from the manifest on the handshake.
        client.discover(&echo_url).await.unwrap();
        let reply = client
            .send(&echo_url, &request("urn:asap:agent:echo-agent"))
            .await
            .unwrap();
        assert_eq!(
            reply.payload["result"],
            json!({"echoed": {"message": MESSAGE}})
        );
        // A stream: the frames until `final: true`.
        let sent = request("urn:asap:agent:streaming-agent");
        let streamed: Vec<Envelope> = client
            .stream(&streaming_url, &sent)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        let payloads: Vec<Value> = streamed
            .iter()
            .map(|e| Value::Object(e.payload.clone()))
            .collect();
        assert_eq!(payloads, expected_chunks());
        assert!(
            streamed
                .iter()
                .all(|e| e.correlation_id.as_deref() == Some(sent.id.as_str()))
        );
    });
    // The CLI: one JSON line per streamed envelope.
    let out = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["send", &streaming_url, "--transport", "ws", "--stream"])
        .args(["--skill", "echo", "--input"])
        .arg(json!({"message": MESSAGE}).to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(payloads(&lines), expected_chunks());
}

/// The text frames answering one `task.request` sent over a 2.2 handshake, through the
/// frame with `final: true`, each with its volatile members set aside.
async fn frames(base: &str, recipient: &str) -> Vec<Value> {
    let mut handshake = format!("{}/asap/ws", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    handshake
        .headers_mut()
        .insert("asap-version", "2.2".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(handshake).await.unwrap();
    let envelope = json!({
        "id": "01JWSPROBE0000000000000001", "asap_version": "0.1",
        "sender": "urn:asap:agent:interop", "recipient": recipient,
        "payload_type": "task.request",
        "payload": {"conversation_id": "c1", "skill_id": "echo", "input": {"message": MESSAGE}},
    });
    let frame = json!({"jsonrpc": "2.0", "method": "asap.send", "id": "ws-req-1", "params": {"envelope": envelope}});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next())
            .await
            .expect("a frame within 20 s")
            .unwrap()
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        // S2 (the reference's `json.dumps`) and ASCII.
        assert!(
            text.starts_with(r#"{"jsonrpc": "2.0", "result": {"envelope": {"id": ""#)
                && text.is_ascii(),
            "{text}"
        );
        let mut frame: Value = serde_json::from_str(&text).unwrap();
        let envelope = &mut frame["result"]["envelope"];
        let last = envelope["payload"]["final"] == true;
        for volatile in ["id", "timestamp", "trace_id", "extensions", "sender"] {
            envelope[volatile] = Value::Null;
        }
        seen.push(frame);
        if last {
            return seen;
        }
    }
}

#[test]
fn one_request_streamed_alike_by_both_servers() {
    let data = tempfile::tempdir().unwrap();
    let (_server, ours) = asap_serve(&["--rate-limit", "off"], data.path());
    let (_agent, theirs) = reference25_streaming_agent();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (ours, theirs) = runtime.block_on(async {
        (
            frames(&ours, OURS).await,
            frames(&theirs, "urn:asap:agent:streaming-agent").await,
        )
    });
    assert_eq!(ours.len(), 3);
    assert_eq!(ours, theirs);
}
