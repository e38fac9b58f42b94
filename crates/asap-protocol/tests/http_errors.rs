//! Every row of the wire spec's error table (section 9.4), against a real server.

mod common;

use common::{AGENT, Options, echo_request, envelope, post, post_raw, start};
use serde_json::{Value, json};

fn request(params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "asap.send", "params": params, "id": "req-1"})
}

#[tokio::test]
async fn success_echoes_and_correlates() {
    let server = start(Options::default()).await;
    let reply = post(
        &server.base,
        &echo_request(json!({"msg": "h\u{e9}llo \u{2713}"})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(
        reply
            .text
            .contains(r#""result":{"echoed":{"msg":"héllo ✓"}}"#),
        "{}",
        reply.text
    );
    let body = reply.json();
    assert_eq!(body["id"], "req-1");
    let env = &body["result"]["envelope"];
    assert_eq!(env["payload_type"], "task.response");
    assert_eq!(env["sender"], AGENT);
    assert_eq!(env["recipient"], "urn:asap:agent:client");
    assert_eq!(env["payload"]["status"], "completed");
    assert_eq!(
        env["correlation_id"].as_str().unwrap().len(),
        26,
        "the server-generated request id"
    );
    assert!(
        env["payload"]["task_id"]
            .as_str()
            .unwrap()
            .starts_with("task_")
    );
    let keys: Vec<&String> = env.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 11);
    server.stop().await;
}

#[tokio::test]
async fn parse_errors_are_32700_with_null_id() {
    let server = start(Options::default()).await;
    for body in [
        b"{not json".to_vec(),
        Vec::new(),
        b"\xef\xbb\xbf{}".to_vec(),
        b"{\"a\": NaN}".to_vec(),
    ] {
        let reply = post_raw(&server.base, body.clone(), &[]).await;
        let json = reply.json();
        assert_eq!(
            (reply.status, reply.code()),
            (200, -32700),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(json["error"]["message"], "Parse error");
        assert!(
            json["error"]["data"]["error"]
                .as_str()
                .unwrap()
                .starts_with("Invalid JSON: ")
        );
        assert_eq!(json["id"], Value::Null);
    }
    let reply = post_raw(&server.base, b"{\"a\": \"\xff\"}".to_vec(), &[]).await;
    assert_eq!(reply.code(), -32700);
    assert!(
        reply.json()["error"]["data"]["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid UTF-8 encoding: ")
    );
    server.stop().await;
}

#[tokio::test]
async fn non_objects_and_bad_structure_are_32600() {
    let server = start(Options::default()).await;
    for (body, kind) in [
        ("[]", "list"),
        ("\"x\"", "str"),
        ("1", "int"),
        ("1.5", "float"),
        ("true", "bool"),
        ("null", "NoneType"),
    ] {
        let reply = post_raw(&server.base, body.as_bytes().to_vec(), &[]).await;
        let json = reply.json();
        assert_eq!(reply.code(), -32600);
        assert_eq!(json["error"]["message"], "Invalid request");
        assert_eq!(
            json["error"]["data"],
            json!({"error": "JSON-RPC request must be an object", "received_type": kind})
        );
        assert_eq!(json["id"], Value::Null);
    }
    let cases = [
        (
            json!({"jsonrpc": "2.0", "method": "asap.send", "params": {}}),
            "missing",
            json!(["id"]),
            Value::Null,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "asap.send", "params": {}, "id": null}),
            "string_type",
            json!(["id", "str"]),
            Value::Null,
        ),
        (
            json!({"jsonrpc": "1.0", "method": "asap.send", "params": {}, "id": "req-1"}),
            "literal_error",
            json!(["jsonrpc"]),
            json!("req-1"),
        ),
        (
            json!({"jsonrpc": "2.0", "method": "asap.send", "id": 7}),
            "missing",
            json!(["params"]),
            json!(7),
        ),
        (
            json!({"jsonrpc": "2.0", "method": "asap.send", "params": {}, "id": true, "x": 1}),
            "extra_forbidden",
            json!(["x"]),
            json!(1),
        ),
    ];
    for (body, kind, loc, id) in cases {
        let reply = post(&server.base, &body).await;
        let json = reply.json();
        assert_eq!(reply.code(), -32600, "{body}");
        assert_eq!(json["error"]["data"]["error"], "Invalid JSON-RPC structure");
        let first = &json["error"]["data"]["validation_errors"][0];
        assert_eq!(
            (first["type"].clone(), first["loc"].clone()),
            (json!(kind), loc),
            "{body}"
        );
        assert_eq!(json["id"], id, "{body}");
    }
    // An id that is neither string nor integer: the reference answers "id": ""; we answer null.
    let reply = post(
        &server.base,
        &json!({"jsonrpc": "2.0", "method": "asap.send", "params": {}, "id": 1.5}),
    )
    .await;
    assert_eq!(
        (reply.code(), reply.json()["id"].clone()),
        (-32600, Value::Null)
    );
    server.stop().await;
}

#[tokio::test]
async fn params_method_and_envelope_errors() {
    let server = start(Options::default()).await;
    let reply = post(
        &server.base,
        &json!({"jsonrpc": "2.0", "method": "asap.send", "params": [1], "id": "req-1"}),
    )
    .await;
    assert_eq!(reply.code(), -32602);
    assert_eq!(
        reply.json()["error"]["data"]["error"],
        "JSON-RPC 'params' must be an object"
    );
    let reply = post(
        &server.base,
        &json!({"jsonrpc": "2.0", "method": "asap/deliver", "params": {}, "id": "req-1"}),
    )
    .await;
    assert_eq!(
        (reply.code(), reply.json()["error"]["data"].clone()),
        (-32601, json!({"method": "asap/deliver"}))
    );
    assert_eq!(reply.json()["error"]["message"], "Method not found");
    for (params, message) in [
        (json!({}), "Missing 'envelope' in params"),
        (json!({"envelope": null}), "Missing 'envelope' in params"),
        (json!({"envelope": "x"}), "'envelope' must be a JSON object"),
    ] {
        let reply = post(&server.base, &request(params)).await;
        assert_eq!(
            (reply.code(), reply.json()["error"]["data"].clone()),
            (-32602, json!({"error": message}))
        );
    }
    let mut bad = envelope("task.request", json!({}));
    bad.as_object_mut().unwrap().remove("sender");
    bad["priority"] = json!("high");
    let reply = post(&server.base, &request(json!({"envelope": bad}))).await;
    let data = reply.json()["error"]["data"].clone();
    assert_eq!(
        (reply.code(), data["error"].clone()),
        (-32602, json!("Invalid envelope structure"))
    );
    assert_eq!(data["validation_errors"][0]["type"], "missing");
    assert_eq!(data["validation_errors"][1]["type"], "extra_forbidden");
    assert_eq!(
        data["validation_errors"][1]["url"],
        "https://errors.pydantic.dev/2.14/v/extra_forbidden"
    );
    // A bad URN: the reference fails with -32603; we report it as the validation error it is.
    let mut urn = envelope("task.request", json!({}));
    urn["sender"] = json!("urn:asap:agent:Client");
    let reply = post(&server.base, &request(json!({"envelope": urn}))).await;
    assert_eq!(reply.code(), -32602);
    assert_eq!(
        reply.json()["error"]["data"]["validation_errors"][0]["type"],
        "value_error"
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_payload_type_is_32601_with_the_reference_data() {
    let server = start(Options::default()).await;
    for pt in ["nope.nothing", "TaskRequest", "state.query"] {
        let reply = post(
            &server.base,
            &request(json!({"envelope": envelope(pt, json!({}))})),
        )
        .await;
        assert_eq!(reply.code(), -32601);
        assert_eq!(
            reply.json()["error"]["data"],
            json!({"payload_type": pt, "error": format!("No handler registered for payload type: {pt}")})
        );
        assert_eq!(reply.json()["id"], "req-1");
    }
    let reply = post(
        &server.base,
        &request(json!({"envelope": envelope("task.request", json!({"skill_id": "echo"}))})),
    )
    .await;
    assert_eq!(
        reply.code(),
        -32602,
        "invalid payload in the handler: {}",
        reply.text
    );
    server.stop().await;
}

#[tokio::test]
async fn integer_and_boolean_ids_are_echoed_as_integers() {
    let server = start(Options::default()).await;
    for (id, echoed) in [
        (json!(42), json!(42)),
        (json!(true), json!(1)),
        (json!(2.0), json!(2)),
    ] {
        let mut body = echo_request(json!({}));
        body["id"] = id;
        let reply = post(&server.base, &body).await;
        assert_eq!(reply.json()["id"], echoed);
    }
    server.stop().await;
}
