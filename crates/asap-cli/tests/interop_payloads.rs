//! Our client against the reference server for every payload type, over HTTP and over
//! WebSocket (interop/ref_all_payloads_agent.py: the reference's own models and server,
//! a handler per payload type).

mod support;

use asap_protocol::client::{Client, TransportMode};
use asap_protocol::model::{
    Envelope, MessageRole, MessageSend, StateQuery, StateRestore, TaskCancel, TaskRequest,
};
use asap_test_support::process::{reference_script, reference_server};
use serde_json::json;

const AGENT: &str = "urn:asap:agent:echo-agent";
const ME: &str = "urn:asap:agent:asap-rs-client";

fn envelopes() -> Vec<(Envelope, &'static str)> {
    vec![
        (
            Envelope::new(ME, AGENT, TaskRequest::new("c1", "echo", json!({"n": 1}))),
            "task.response",
        ),
        (
            Envelope::new(
                ME,
                AGENT,
                TaskCancel {
                    task_id: "task_1".into(),
                    reason: Some("test".into()),
                },
            ),
            "task.response",
        ),
        (
            Envelope::new(
                ME,
                AGENT,
                StateQuery {
                    task_id: "task_1".into(),
                    version: None,
                },
            ),
            "state.snapshot",
        ),
        (
            Envelope::new(
                ME,
                AGENT,
                StateRestore {
                    task_id: "task_1".into(),
                    snapshot_id: "snap_ref_1".into(),
                },
            ),
            "state_restore.ack",
        ),
        (
            Envelope::new(
                ME,
                AGENT,
                MessageSend {
                    task_id: "task_1".into(),
                    message_id: "msg_1".into(),
                    sender: ME.into(),
                    role: MessageRole::User,
                    parts: vec!["part_1".into()],
                },
            ),
            "MessageAck",
        ),
    ]
}

#[test]
fn every_payload_type_over_both_transports() {
    let (_agent, url) = reference_server("ref_all_payloads_agent.py", &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for mode in [TransportMode::Http, TransportMode::WebSocket] {
            let client = Client::builder().transport(mode).build().unwrap();
            for (request, expected) in envelopes() {
                let reply = client
                    .send(&url, &request)
                    .await
                    .unwrap_or_else(|e| panic!("{mode:?} {}: {e}", request.payload_type));
                assert_eq!(
                    reply.payload_type, expected,
                    "{mode:?} {}",
                    request.payload_type
                );
                assert_eq!(reply.correlation_id.as_deref(), Some(request.id.as_str()));
                assert_eq!(reply.sender, AGENT);
                assert_eq!(reply.recipient, ME);
            }
        }
    });
}

/// The reference WebSocket client against `asap serve --conformance`: the `push` skill's
/// task.update frames reach its `on_message`, the reply reaches `send()`.
#[test]
fn reference_client_receives_pushes_from_the_conformance_agent() {
    let data = tempfile::tempdir().unwrap();
    let (_agent, url) = support::asap_serve(&["--conformance", "--storage", "memory"], data.path());
    let out = reference_script("ref_push_check.py")
        .args([&url, "urn:asap:agent:asap-rs", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report,
        json!({"pushed": 3, "received": 3, "types": ["task.update"]})
    );
}
