//! The WebSocket binding across implementations, against the Python reference
//! (asap-protocol 1.1.0): the reference's WebSocket client (request/response,
//! concurrent requests, acks checked with its own models) against `asap serve`, and
//! `asap send ws://` and the library client against the reference echo agent.

mod support;

use std::process::Command;
use std::time::Duration;

use asap_protocol::client::{Client, WebSocketOptions};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{reference_echo_agent, reference_script};
use serde_json::{Value, json};
use support::asap_serve;

#[test]
fn reference_websocket_client_against_asap_serve() {
    let data = tempfile::tempdir().unwrap();
    let (_agent, url) = asap_serve(&["--storage", "memory"], data.path());
    let out = reference_script("ws_interop.py")
        .args(["--url", &url, "--agent-id", "urn:asap:agent:asap-rs"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    let checks: Vec<Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(checks.len(), 3, "{report}");
    for check in &checks {
        assert_eq!(check["ok"], true, "{check}");
    }
    assert!(out.status.success());
}

#[test]
fn our_websocket_client_against_the_reference_server() {
    let (_agent, url) = reference_echo_agent();
    let ws = url.replace("http://", "ws://");
    let sent = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args([
            "send",
            &ws,
            "--skill",
            "echo",
            "--input",
            r#"{"from": "asap"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    let reply: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(
        reply["payload"]["result"],
        json!({"echoed": {"from": "asap"}})
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // A short ack timeout: the reference acks task.request before answering, so
        // nothing is retransmitted; concurrent requests share one connection.
        let client = Client::builder()
            .websocket({
                let mut value = WebSocketOptions::default();
                value.ack_timeout = Duration::from_secs(2);
                value
            })
            .build()
            .unwrap();
        let mut calls = Vec::new();
        for n in 0..8 {
            let (client, ws) = (client.clone(), ws.clone());
            calls.push(tokio::spawn(async move {
                let request = Envelope::new(
                    "urn:asap:agent:asap-rs-client",
                    "urn:asap:agent:echo-agent",
                    TaskRequest::new("c1", "echo", json!({"n": n})),
                );
                let reply = client.send(&ws, &request).await.unwrap();
                assert_eq!(reply.correlation_id.as_deref(), Some(request.id.as_str()));
                reply.payload["result"]["echoed"]["n"].as_i64().unwrap()
            }));
        }
        let mut seen = Vec::new();
        for call in calls {
            seen.push(call.await.unwrap());
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..8).collect::<Vec<_>>());
        assert_eq!(client.websocket_connections(), 1);
    });
}
