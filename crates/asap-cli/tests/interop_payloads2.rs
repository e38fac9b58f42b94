//! The 2.x payload rules across implementations (docs/asap-2.md sections 2 and 3):
//! the same `POST /asap` requests, with `ASAP-Version: 2.2`, to `asap serve` and to the
//! 2.5.10 reference echo agent (asap-protocol 2.5.10 from PyPI, in the virtualenv
//! `scripts/ref-venv.sh 2.5.10` creates). Every refusal must be the same bytes; every
//! request both accept must come back with the same typed payload members. Without the
//! header `asap serve` keeps the 1.1 rules (free-form payloads).

mod support;

use asap_test_support::process::reference25_echo_agent;
use serde_json::{Value, json};
use support::asap_serve;

/// `POST {base}/asap`, with `ASAP-Version` when given: the status, the body as JSON and
/// as text.
fn post(base: &str, body: &Value, version: Option<&str>) -> (u16, Value, String) {
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{base}/asap"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    if let Some(version) = version {
        request = request.header("asap-version", version);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    (status, serde_json::from_str(&text).unwrap(), text)
}

/// A request carrying one envelope with a fixed id (its timestamp filled in by the
/// receiver).
fn request(n: usize, payload_type: &str, payload: Value, extra: &[(&str, Value)]) -> Value {
    let mut envelope = json!({
        "id": format!("01JPAYLOAD2X{n:014}"), "asap_version": "0.1",
        "sender": "urn:asap:agent:interop", "recipient": "urn:asap:agent:echo-agent",
        "payload_type": payload_type, "payload": payload,
    });
    for (key, value) in extra {
        envelope[*key] = value.clone();
    }
    json!({"jsonrpc": "2.0", "method": "asap.send", "id": format!("req-{n}"), "params": {"envelope": envelope}})
}

fn task_request(config: Value) -> Value {
    json!({"conversation_id": "c1", "skill_id": "echo", "input": {"q": "h\u{e9}llo"}, "config": config})
}

/// One case: `(payload_type, payload, extra envelope members)`.
type Case = (&'static str, Value, Vec<(&'static str, Value)>);

/// The cases.
fn cases() -> Vec<Case> {
    vec![
        // Accepted by both.
        ("task.request", task_request(Value::Null), vec![]),
        (
            "task.request",
            task_request(json!({"timeout_seconds": "5", "streaming": "yes"})),
            vec![],
        ),
        (
            "task.request",
            task_request(json!({"temperature": 2, "model": "m", "priority": "high"})),
            vec![],
        ),
        // The typed payload refused, located in the payload.
        (
            "task.request",
            json!({"conversation_id": "c", "skill_id": "echo", "input": {}, "bogus": 1}),
            vec![],
        ),
        ("task.request", task_request(json!({"foo": 1})), vec![]),
        ("task.request", task_request(json!("fast")), vec![]),
        (
            "task.request",
            task_request(json!({"timeout_seconds": 0, "temperature": 2.5, "streaming": "maybe"})),
            vec![],
        ),
        ("TASK_REQUEST", json!({"conversation_id": "c"}), vec![]),
        (
            "TaskRequest",
            json!({"conversation_id": 5, "skill_id": "echo", "input": []}),
            vec![],
        ),
        (
            "state.query",
            json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
            vec![],
        ),
        (
            "task.cancel",
            json!({}),
            vec![("sender", json!("not-a-urn"))],
        ),
        (
            "mcp.tool_result",
            json!({"request_id": "r", "success": true}),
            vec![("correlation_id", json!("x"))],
        ),
        (
            "MessageAck",
            json!({"original_envelope_id": "e", "status": "lost"}),
            vec![],
        ),
        (
            "TaskStream",
            json!({"chunk": 1, "progress": 2}),
            vec![("correlation_id", json!("x"))],
        ),
        (
            "task.update",
            json!({"task_id": "t", "update_type": "progress", "status": "working", "progress": {"percent": 101}}),
            vec![],
        ),
        // The correlation rule, for every spelling.
        (
            "task.response",
            json!({"task_id": "t", "status": "completed", "metrics": {"duration_ms": 5, "cost": 1}}),
            vec![],
        ),
        ("TaskStream", json!({"chunk": "x"}), vec![]),
        (
            "task.response",
            json!({"task_id": "t", "status": "completed", "metrics": {"tokens_in": -1}}),
            vec![("correlation_id", json!("x"))],
        ),
        // Envelope errors after a valid typed payload.
        (
            "task.request",
            task_request(Value::Null),
            vec![("sender", json!("urn:asap:agent:Client"))],
        ),
    ]
}

#[test]
fn two_x_payload_rules_match_the_reference() {
    let data = tempfile::tempdir().unwrap();
    let (_ours, ours) = asap_serve(&["--rate-limit", "off"], data.path());
    let (_reference, reference) = reference25_echo_agent();
    let mut compared = 0;
    for (n, (payload_type, payload, extra)) in cases().into_iter().enumerate() {
        let body = request(n, payload_type, payload, &extra);
        let (our_status, our_answer, our_text) = post(&ours, &body, Some("2.2"));
        let (ref_status, ref_answer, ref_text) = post(&reference, &body, Some("2.2"));
        assert_eq!(our_status, ref_status, "case {n}: {body}");
        if ref_answer["error"].is_object() {
            assert_eq!(our_text, ref_text, "case {n}: {body}");
        } else {
            let ours = &our_answer["result"]["envelope"]["payload"];
            let theirs = &ref_answer["result"]["envelope"]["payload"];
            let members = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
            assert_eq!(
                members(ours),
                members(theirs),
                "case {n}: {our_answer} / {ref_answer}"
            );
            assert_eq!(ours["status"], theirs["status"], "case {n}");
        }
        compared += 1;
    }
    assert_eq!(compared, cases().len());
}

#[test]
fn without_the_header_payloads_stay_free_form() {
    let data = tempfile::tempdir().unwrap();
    let (_ours, ours) = asap_serve(&["--rate-limit", "off"], data.path());
    // A 2.x refusal (config with an unknown member) is accepted in 1.1, where `config`
    // is free-form.
    let body = request(0, "task.request", task_request(json!({"foo": 1})), &[]);
    let (status, answer, _) = post(&ours, &body, None);
    assert_eq!(status, 200);
    assert_eq!(
        answer["result"]["envelope"]["payload_type"], "task.response",
        "{answer}"
    );
    let (_, refused, _) = post(&ours, &body, Some("2.2"));
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    assert_eq!(
        refused["error"]["data"]["validation_errors"][0]["loc"],
        json!(["config", "foo"])
    );
}

#[test]
fn our_2x_client_sends_typed_config_to_the_reference() {
    use asap_protocol::client::{Client, ClientError, RequestError};
    use asap_protocol::model::{Dialect, Envelope, TaskRequest, TaskRequestConfig};

    let (_reference, reference) = reference25_echo_agent();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = Client::builder()
            .asap_versions(&[Dialect::V2_2])
            .build()
            .unwrap();
        let config = TaskRequestConfig {
            timeout_seconds: Some(5),
            temperature: Some(0.5),
            ..TaskRequestConfig::default()
        };
        let request = TaskRequest::new("c1", "echo", json!({"q": 1})).with_config(config);
        let envelope = Envelope::new(
            "urn:asap:agent:interop",
            "urn:asap:agent:echo-agent",
            request,
        );
        let answer = client.send(&reference, &envelope).await.unwrap();
        assert_eq!(answer.payload_type, "task.response");
        assert_eq!(answer.correlation_id.as_deref(), Some(envelope.id.as_str()));
        // What the reference would refuse is refused before it is sent.
        let mut free = TaskRequest::new("c1", "echo", json!({}));
        free.config = json!({"foo": 1}).as_object().cloned();
        let free = Envelope::new("urn:asap:agent:interop", "urn:asap:agent:echo-agent", free);
        assert!(matches!(
            client.send(&reference, &free).await,
            Err(ClientError::InvalidRequest(RequestError::Payload2x(_)))
        ));
    });
}
