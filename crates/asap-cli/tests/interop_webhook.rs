//! Webhook signatures across implementations: for a set of payloads, the body we send
//! is byte for byte the reference's, the reference's `verify_signature` accepts our
//! header, and `asap webhook verify` accepts the reference's.

use std::io::Write as _;
use std::process::{Command, Stdio};

use asap_test_support::process::reference_script;
use serde_json::{Value, json};

#[test]
fn signatures_are_accepted_both_ways() {
    let cases = [
        (
            json!({"event": "task.completed", "task_id": "task_1", "status": "completed", "data": {"z": 1, "a": "héllo ✓", "n": [3, 1, 2]}, "ts": "2026-01-01T00:00:00Z"}),
            "test-webhook-secret",
        ),
        (
            json!({"b": {"d": 1, "c": [{"y": null, "x": true}]}, "a": 1.5, "big": 12345678901234567890u64}),
            "s3cr3t:with/special",
        ),
        (
            json!({"emoji": "😀", "quote": "\"\\", "control": "\u{1}\n", "float": 1e-7, "neg": -0.0}),
            "",
        ),
        (json!({}), "k"),
    ];
    let mut input = String::new();
    let mut ours = Vec::new();
    for (payload, secret) in &cases {
        let body = asap_protocol::json::to_canonical(payload);
        let signature = asap_protocol::webhook::sign(secret.as_bytes(), body.as_bytes());
        input.push_str(
            &json!({"payload": payload, "secret": secret, "body": body, "signature": signature})
                .to_string(),
        );
        input.push('\n');
        ours.push((body, signature));
    }
    let mut child = reference_script("webhook_interop.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), cases.len());
    for ((answer, (body, signature)), (_, secret)) in answers.iter().zip(&ours).zip(&cases) {
        assert_eq!(answer["body"], *body, "the same canonical bytes");
        assert_eq!(answer["signature"], *signature, "the same signature");
        assert_eq!(answer["accepts_ours"], true, "the reference verifies ours");
        let theirs = answer["signature"].as_str().unwrap();
        let mut verify = Command::new(env!("CARGO_BIN_EXE_asap"))
            .args([
                "webhook",
                "verify",
                "--secret",
                secret,
                "--signature",
                theirs,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        verify
            .stdin
            .take()
            .unwrap()
            .write_all(answer["body"].as_str().unwrap().as_bytes())
            .unwrap();
        assert!(
            verify.wait().unwrap().success(),
            "we verify the reference's"
        );
    }
}
