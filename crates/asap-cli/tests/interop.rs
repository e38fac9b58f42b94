//! Cross-implementation tests, both directions, against the Python reference
//! (asap-protocol 1.1.0 from PyPI, in the virtualenv `scripts/ref-venv.sh` creates):
//!
//! - the reference client (`ASAPClient`: send, discover, health_check) against `asap serve`;
//! - `asap send`/`discover`/`health` and the library `Client` against the reference echo agent.

mod support;

use std::process::{Command, Output};

use asap_protocol::client::{Client, ClientError};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{reference_echo_agent, reference_script};
use serde_json::{Value, json};
use support::asap_serve;

fn asap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn reference_client_against_asap_serve() {
    let data = tempfile::tempdir().unwrap();
    let (_server, url) = asap_serve(&["--rate-limit", "off"], data.path());
    let out = reference_script("ref_client_checks.py")
        .args(["--url", &url, "--agent-id", "urn:asap:agent:asap-rs"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        report.trim_end().ends_with("10 passed, 0 failed"),
        "{report}"
    );
}

#[test]
fn asap_commands_against_the_reference_echo_agent() {
    let (_agent, url) = reference_echo_agent();
    let out = asap(&["discover", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let manifest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["id"], "urn:asap:agent:echo-agent");

    let out = asap(&["health", &url]);
    assert!(out.status.success());
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (health["status"].clone(), health["agent_id"].clone()),
        (json!("healthy"), json!("urn:asap:agent:echo-agent"))
    );

    let out = asap(&[
        "send",
        &url,
        "--skill",
        "echo",
        "--input",
        r#"{"msg": "h\u00e9llo ✓", "big": 12345678901234567890}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["payload_type"], "task.response");
    assert_eq!(reply["payload"]["result"]["echoed"]["msg"], "h\u{e9}llo ✓");
    assert!(String::from_utf8_lossy(&out.stdout).contains("12345678901234567890"));

    let out = asap(&[
        "send",
        &url,
        "--payload-type",
        "state.query",
        "--payload",
        r#"{"task_id": "t"}"#,
    ]);
    assert_eq!(out.status.code(), Some(5), "an error answer");
    let error: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["code"], -32601);
    assert_eq!(error["error"]["data"]["payload_type"], "state.query");

    let out = asap(&["health", "http://127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(4), "nothing listens on port 9");
}

#[test]
fn library_client_against_the_reference_echo_agent() {
    let (_agent, url) = reference_echo_agent();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::builder().build().unwrap();
        let manifest = client.discover(&url).await.unwrap();
        assert_eq!(manifest.id, "urn:asap:agent:echo-agent");
        assert!(manifest.skill("echo").is_some());
        // Cached: a second discover answers from the cache.
        assert_eq!(client.discover(&url).await.unwrap(), manifest);
        assert!(client.health_check(&url).await.unwrap().is_healthy());

        let big = "x".repeat(20_000);
        let request = Envelope::new(
            "urn:asap:agent:rust-client",
            manifest.id.clone(),
            TaskRequest::new("c1", "echo", json!({"text": big})),
        )
        .with_trace_id("trace-rust");
        let reply = client.send(&url, &request).await.unwrap();
        assert_eq!(reply.correlation_id.as_deref(), Some(request.id.as_str()));
        assert_eq!(
            reply.payload["result"]["echoed"]["text"]
                .as_str()
                .map(str::len),
            Some(20_000)
        );
        assert_eq!(reply.trace_id.as_deref(), Some("trace-rust"));

        let mut unknown = request.clone();
        unknown.payload_type = "no.such.type".into();
        match client.send(&url, &unknown).await {
            Err(ClientError::Remote { code, data, .. }) => {
                assert_eq!(code, -32601);
                assert_eq!(data.unwrap()["payload_type"], "no.such.type");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
    });
}
