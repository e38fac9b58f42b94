//! JSON-RPC batches across implementations, both directions, against the ASAP 2.x
//! reference (asap-protocol 2.5.10 from PyPI, in the virtualenv `scripts/ref25-venv.sh`
//! creates):
//!
//! - the reference client's `ASAPClient.batch` against `asap serve`;
//! - the library's `Client::batch` against the reference echo agent;
//! - one batch of valid and invalid members posted to both servers: every answer but
//!   the successes (fresh ids and timestamps) is the same JSON, member order included.

mod support;

use asap_protocol::client::{Client, ClientError};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{reference25_echo_agent, reference25_script};
use serde_json::{Value, json};
use support::asap_serve;

/// `POST {base}/asap` with `ASAP-Version: 2.2`: the status and the body.
fn post_2x(base: &str, body: &Value) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/asap"))
        .header("content-type", "application/json")
        .header("asap-version", "2.2")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

fn echo_member(recipient: &str, id: Value, n: u64) -> Value {
    json!({"jsonrpc": "2.0", "method": "asap.send", "id": id, "params": {"envelope": {
        "asap_version": "0.1", "sender": "urn:asap:agent:interop", "recipient": recipient,
        "payload_type": "task.request",
        "payload": {"conversation_id": "c1", "skill_id": "echo", "input": {"n": n}},
    }}})
}

#[test]
fn reference_client_batch_against_asap_serve() {
    let data = tempfile::tempdir().unwrap();
    let flags = ["--rate-limit", "off", "--max-batch-size", "3"];
    let (_server, url) = asap_serve(&flags, data.path());
    let out = reference25_script("ref25_batch_client.py")
        .args([&url, "urn:asap:agent:asap-rs"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The report is the last line (the reference logs before it).
    let report: Value = serde_json::from_str(stdout.trim_end().lines().last().unwrap()).unwrap();
    let answers = report.as_array().unwrap();
    assert_eq!(answers.len(), 3, "{report}");
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer["correlation_id"], answer["request_id"]);
        assert_eq!(answer["payload_type"], "task.response");
        assert_eq!(answer["payload"]["result"]["echoed"], json!({ "n": n }));
    }
    // --max-batch-size: one more is refused as a whole.
    let four: Vec<Value> = (0..4)
        .map(|n| echo_member("urn:asap:agent:asap-rs", json!(n), n))
        .collect();
    assert_eq!(
        post_2x(&url, &json!(four)),
        (
            200,
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"reason":"batch size 4 exceeds max 3"}},"id":null}"#.to_owned()
        )
    );
}

#[test]
fn client_batch_against_the_reference_echo_agent() {
    let (_agent, url) = reference25_echo_agent();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::builder().build().unwrap();
        let request = |n: u64| {
            Envelope::new(
                "urn:asap:agent:interop",
                "urn:asap:agent:echo-agent",
                TaskRequest::new("c1", "echo", json!({ "n": n })),
            )
        };
        let mut unknown = request(1);
        unknown.payload_type = "custom.thing".into();
        let envelopes = [request(0), unknown, request(2)];
        let answers = client.batch(&url, &envelopes).await.unwrap();
        for i in [0, 2] {
            let answer = answers[i].as_ref().unwrap();
            assert_eq!(
                answer.correlation_id.as_deref(),
                Some(envelopes[i].id.as_str())
            );
            assert_eq!(answer.payload["result"]["echoed"], json!({ "n": i }));
        }
        assert!(matches!(
            &answers[1],
            Err(ClientError::Remote { code: -32012, message, .. })
                if message == "No handler registered for payload type: custom.thing"
        ));
    });
}

#[test]
fn one_batch_gets_the_same_error_answers_from_both_servers() {
    let data = tempfile::tempdir().unwrap();
    let (_ours, ours) = asap_serve(&["--rate-limit", "off", "--echo-only"], data.path());
    let (_theirs, theirs) = reference25_echo_agent();
    let recipient = "urn:asap:agent:echo-agent";
    let notification = json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": {}}});
    let batch = json!([
        5,
        null,
        [echo_member(recipient, json!(1), 1)],
        notification,
        {"jsonrpc": "2.0", "method": "nope", "id": "c"},
        {"jsonrpc": "2.0", "method": "asap.send", "id": "e", "params": {"envelope": "x"}},
        echo_member(recipient, json!("ok"), 7),
    ]);
    let (status, theirs) = post_2x(&theirs, &batch);
    assert_eq!(status, 200);
    let (status, ours) = post_2x(&ours, &batch);
    assert_eq!(status, 200);
    let (theirs, ours): (Value, Value) = (
        serde_json::from_str(&theirs).unwrap(),
        serde_json::from_str(&ours).unwrap(),
    );
    let (theirs, ours) = (theirs.as_array().unwrap(), ours.as_array().unwrap());
    assert_eq!(theirs.len(), 7);
    assert_eq!(ours.len(), 7);
    for (theirs, ours) in theirs.iter().zip(ours).take(6) {
        assert_eq!(
            serde_json::to_string(ours).unwrap(),
            serde_json::to_string(theirs).unwrap()
        );
    }
    for answer in [&theirs[6], &ours[6]] {
        assert_eq!(answer["id"], "ok");
        let envelope = &answer["result"]["envelope"];
        assert_eq!(envelope["payload"]["result"]["echoed"], json!({"n": 7}));
    }
}
