//! `ASAP-Version` negotiation against a real server (docs/asap-2.md section 1): every
//! captured exchange of the 2.5.10 reference, our 1.1 default for requests without the
//! header, the refusal before size limits and authentication, and the 2.x error codes
//! (section 6.1) that only a 2.x request gets.

mod common;
use asap_test_support::idp;

use std::sync::Arc;

use asap_protocol::auth::{JwksCache, JwtPolicy, JwtValidator};
use asap_protocol::client::{Client, ClientError, RequestError};
use asap_protocol::model::{Dialect, Envelope, TaskRequest, TaskRequestConfig};
use asap_protocol::server::{HandlerRegistry, OAuth2, default_skills};
use common::{AGENT, Gate, Options, Reply, echo_request, envelope, get, post_raw, start};
use serde_json::{Value, json};

const REFUSED_9_9: &str = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"ASAP protocol version incompatible","data":{"requested":"9.9","supported":["2.1","2.2"]}},"id":null}"#;

fn echo_body() -> Vec<u8> {
    serde_json::to_vec(&echo_request(json!({"text": "hi"}))).unwrap()
}

async fn post_versioned(base: &str, body: Vec<u8>, version: Option<&str>) -> Reply {
    match version {
        Some(v) => post_raw(base, body, &[("asap-version", v)]).await,
        None => post_raw(base, body, &[]).await,
    }
}

fn echoed_version(reply: &Reply) -> Option<&str> {
    reply
        .headers
        .get("asap-version")
        .map(|v| v.to_str().unwrap())
}

/// The response headers besides `date`, sorted, as `name: value` lines.
fn stable_headers(reply: &Reply) -> Vec<String> {
    let mut lines: Vec<String> = reply
        .headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| format!("{name}: {}", value.to_str().unwrap()))
        .collect();
    lines.sort();
    lines
}

fn assert_echoed(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let envelope = &reply.json()["result"]["envelope"];
    assert_eq!(envelope["payload_type"], "task.response", "{}", reply.text);
}

#[tokio::test]
async fn the_captured_exchanges_of_the_reference() {
    let server = start(Options::default()).await;
    let base = &server.base;
    // No header: 1.1, and no `ASAP-Version` in the answer (the reference assumes 2.2).
    let plain = post_versioned(base, echo_body(), None).await;
    assert_echoed(&plain);
    assert_eq!(echoed_version(&plain), None);
    for (header, negotiated) in [
        ("2.1", Some("2.1")),
        ("2.2", Some("2.2")),
        ("2.2, 2.1", Some("2.2")),
        ("3.0, 2.1, 2.2", Some("2.1")),
        // Our choices: empty is 1.1 (the reference: 2.2), `1.1` names 1.1 (the
        // reference refuses it).
        ("", None),
        ("   ", None),
        ("1.1", None),
        ("9.9, 1.1", None),
    ] {
        let reply = post_versioned(base, echo_body(), Some(header)).await;
        assert_echoed(&reply);
        assert_eq!(echoed_version(&reply), negotiated, "{header:?}");
    }
    // No known token: -32000 whatever the body, without reading it.
    for body in [b"not json".to_vec(), b"[]".to_vec(), echo_body()] {
        let reply = post_versioned(base, body, Some(" 9.9 ")).await;
        assert_eq!((reply.status, reply.text.as_str()), (200, REFUSED_9_9));
        assert_eq!(echoed_version(&reply), Some("2.2"));
        assert_eq!(
            reply.headers["content-type"].to_str().unwrap(),
            "application/json"
        );
    }
    // What `asap compliance-check` sends (checks 7 and 8).
    let v2 = serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": {}}, "id": "v2"}),
    )
    .unwrap();
    let refused = post_versioned(base, v2, Some("99.0")).await;
    assert_eq!(refused.code(), -32000);
    assert_eq!(
        refused.json()["error"]["data"],
        json!({"requested": "99.0", "supported": ["2.1", "2.2"]})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_without_the_header_gets_the_1_1_bytes_and_headers() {
    // With no 2.x dialect accepted the negotiation is off: the 1.1 server as it was.
    let mut only_1_1 = Options::default();
    only_1_1.config.dialects = vec![Dialect::V1_1];
    let old = start(only_1_1).await;
    let new = start(Options::default()).await;
    let unknown_method = br#"{"jsonrpc":"2.0","method":"foo","params":{},"id":1}"#.to_vec();
    let no_handler = serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "asap.send", "id": "req-1", "params": {"envelope": envelope("state.query", json!({}))}})).unwrap();
    for body in [
        b"not json".to_vec(),
        unknown_method,
        no_handler,
        echo_body(),
    ] {
        let before = post_versioned(&old.base, body.clone(), None).await;
        let after = post_versioned(&new.base, body.clone(), None).await;
        assert_eq!(stable_headers(&after), stable_headers(&before));
        assert!(after.headers.get("asap-version").is_none());
        if before.json()["error"].is_object() {
            assert_eq!(after.text, before.text);
        }
        // The 1.1-only server ignores the header altogether.
        let ignored = post_versioned(&old.base, body, Some("9.9")).await;
        assert_eq!(stable_headers(&ignored), stable_headers(&before));
    }
    old.stop().await;
    new.stop().await;
}

#[tokio::test]
async fn only_posts_to_the_json_rpc_route_are_negotiated() {
    let server = start(Options::default()).await;
    let version = [("asap-version", "9.9")];
    let manifest = get(&server.base, "/.well-known/asap/manifest.json", &version).await;
    assert_eq!(manifest.status, 200);
    assert_eq!(echoed_version(&manifest), None);
    let get_asap = get(&server.base, "/asap", &version).await;
    assert_eq!(get_asap.status, 405);
    assert_eq!(echoed_version(&get_asap), None);
    let elsewhere = reqwest::Client::new()
        .post(format!("{}/asap/nowhere", server.base))
        .header("asap-version", "9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn the_refusal_comes_before_the_size_limit() {
    let mut options = Options::default();
    options.config.max_request_size = 2000;
    let server = start(options).await;
    let big = serde_json::to_vec(&echo_request(json!({"text": "a".repeat(2500)}))).unwrap();
    let too_large = post_versioned(&server.base, big.clone(), None).await;
    assert_eq!(too_large.status, 413);
    let refused = post_versioned(&server.base, big.clone(), Some("9.9")).await;
    assert_eq!((refused.status, refused.text.as_str()), (200, REFUSED_9_9));
    // A negotiated 2.x request still gets the limit, with the header echoed.
    let limited = post_versioned(&server.base, big, Some("2.2")).await;
    assert_eq!(limited.status, 413);
    assert_eq!(echoed_version(&limited), Some("2.2"));
    server.stop().await;
}

#[tokio::test]
async fn the_refusal_comes_before_authentication() {
    let idp = idp::MockIdp::start();
    let validator = JwtValidator::new(
        Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()),
        AGENT,
        JwtPolicy::default(),
    );
    let options = Options {
        oauth2: Some(OAuth2::new(validator)),
        ..Options::default()
    };
    let server = start(options).await;
    let unauthenticated = post_versioned(&server.base, echo_body(), Some("2.2")).await;
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(echoed_version(&unauthenticated), Some("2.2"));
    let refused = post_versioned(&server.base, echo_body(), Some("9.9")).await;
    assert_eq!((refused.status, refused.text.as_str()), (200, REFUSED_9_9));
    server.stop().await;

    // Manifest bearer tokens too.
    let server = start(Options::default().bearer_tokens(&[("t", "urn:asap:agent:client")])).await;
    let refused = post_versioned(&server.base, echo_body(), Some("9.9")).await;
    assert_eq!(refused.text, REFUSED_9_9);
    server.stop().await;
}

#[tokio::test]
async fn the_accepted_dialects_are_configurable() {
    // Without 1.1, a request without the header speaks the newest 2.x (the reference).
    let mut v2_only = Options::default();
    v2_only.config.dialects = vec![Dialect::V2_1, Dialect::V2_2];
    let server = start(v2_only).await;
    let plain = post_versioned(&server.base, echo_body(), None).await;
    assert_echoed(&plain);
    assert_eq!(echoed_version(&plain), Some("2.2"));
    let refused = post_versioned(&server.base, echo_body(), Some("1.1")).await;
    assert_eq!(refused.code(), -32000);
    server.stop().await;

    let mut only_2_1 = Options::default();
    only_2_1.config.dialects = vec![Dialect::V1_1, Dialect::V2_1];
    let server = start(only_2_1).await;
    let reply = post_versioned(&server.base, echo_body(), Some("2.2, 2.1")).await;
    assert_eq!(echoed_version(&reply), Some("2.1"));
    let refused = post_versioned(&server.base, echo_body(), Some("2.2")).await;
    assert_eq!(
        refused.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"ASAP protocol version incompatible","data":{"requested":"2.2","supported":["2.1"]}},"id":null}"#
    );
    assert_eq!(echoed_version(&refused), Some("2.1"));
    server.stop().await;
}

fn send(envelope: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope}, "id": "req-1"})).unwrap()
}

#[tokio::test]
async fn no_handler_in_2x_is_32012_with_the_asap_data() {
    let server = start(Options::default()).await;
    // A valid StateQuery: in 2.x an invalid one is refused before dispatch (-32602).
    let body = send(envelope("state.query", json!({"task_id": "t"})));
    let v2 = post_versioned(&server.base, body.clone(), Some("2.2")).await;
    assert_eq!(
        v2.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32012,"message":"No handler registered for payload type: state.query","data":{"code":"asap:transport/handler_not_found","rpc_code":-32012,"message":"No handler registered for payload type: state.query","details":{"payload_type":"state.query"},"recoverable":false,"asap_taxonomy_code":"asap:transport/handler_not_found","error":"No handler registered for payload type: state.query"}},"id":"req-1"}"#
    );
    let v1 = post_versioned(&server.base, body, None).await;
    assert_eq!(
        v1.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"payload_type":"state.query","error":"No handler registered for payload type: state.query"}},"id":"req-1"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn a_stale_timestamp_in_2x_is_32002_and_recoverable() {
    let server = start(Options::default()).await;
    let mut old = envelope(
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
    );
    old["id"] = json!("01JPROBEENVELOPE000000001");
    old["timestamp"] = json!("2020-01-01T00:00:00Z");
    let v2 = post_versioned(&server.base, send(old.clone()), Some("2.1")).await;
    assert_eq!(echoed_version(&v2), Some("2.1"));
    let error = &v2.json()["error"];
    assert_eq!(error["code"], -32002);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("Envelope timestamp is too old: ")
            && message.ends_with(" seconds (max: 300 seconds)"),
        "{message}"
    );
    let data = error["data"].as_object().unwrap();
    let members: Vec<&str> = data.keys().map(String::as_str).collect();
    assert_eq!(
        members,
        [
            "code",
            "rpc_code",
            "message",
            "details",
            "retry_after_ms",
            "fallback_action",
            "recoverable",
            "asap_taxonomy_code",
            "error"
        ]
    );
    assert_eq!(data["message"], message);
    let details: Vec<&str> = data["details"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        details,
        ["timestamp", "age_seconds", "envelope_id", "max_age_seconds"]
    );
    assert_eq!(data["details"]["timestamp"], "2020-01-01T00:00:00+00:00");
    let fixed: Value = data
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "message" | "details"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        fixed,
        json!({"code": "asap:protocol/invalid_timestamp", "rpc_code": -32002, "retry_after_ms": 5000, "fallback_action": "resend_with_fresh_timestamp", "recoverable": true, "asap_taxonomy_code": "asap:protocol/invalid_timestamp", "error": "Invalid envelope timestamp"})
    );
    // 1.1 unchanged: -32602 "Invalid params".
    let v1 = post_versioned(&server.base, send(old), None).await;
    assert_eq!(
        (v1.code(), &v1.json()["error"]["message"]),
        (-32602, &json!("Invalid params"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_replayed_nonce_in_2x_is_32003() {
    let mut options = Options::default();
    options.config.require_nonce = true;
    let server = start(options).await;
    let mut with_nonce = envelope(
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
    );
    with_nonce["id"] = json!("01JPROBEENVELOPE000000002");
    with_nonce["extensions"] = json!({"nonce": "nonce-2x"});
    let first = post_versioned(&server.base, send(with_nonce.clone()), Some("2.2")).await;
    assert_echoed(&first);
    let replayed = post_versioned(&server.base, send(with_nonce.clone()), Some("2.2")).await;
    assert_eq!(
        replayed.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32003,"message":"Duplicate nonce detected: nonce-2x","data":{"code":"asap:protocol/invalid_nonce","rpc_code":-32003,"message":"Duplicate nonce detected: nonce-2x","details":{"nonce":"nonce-2x","envelope_id":"01JPROBEENVELOPE000000002"},"recoverable":false,"asap_taxonomy_code":"asap:protocol/invalid_nonce","error":"Invalid envelope nonce"}},"id":"req-1"}"#
    );
    let v1 = post_versioned(&server.base, send(with_nonce), None).await;
    assert_eq!(
        v1.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"error":"Invalid envelope nonce","code":"asap:protocol/invalid_nonce","message":"Duplicate nonce detected: nonce-2x","details":{"nonce":"nonce-2x","envelope_id":"01JPROBEENVELOPE000000002"}}},"id":"req-1"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn a_handlers_protocol_error_in_2x_carries_its_own_code() {
    let options = Options {
        registry: Some(HandlerRegistry::agent(default_skills())),
        ..Options::default()
    };
    let server = start(options).await;
    let body = send(envelope("task.cancel", json!({"task_id": "t-missing"})));
    let v2 = post_versioned(&server.base, body.clone(), Some("2.2")).await;
    assert_eq!(
        v2.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32010,"message":"Task not found: t-missing","data":{"code":"asap:task/not_found","rpc_code":-32010,"message":"Task not found: t-missing","details":{"task_id":"t-missing"},"recoverable":false,"asap_taxonomy_code":"asap:task/not_found","error":"Task not found: t-missing"}},"id":"req-1"}"#
    );
    let v1 = post_versioned(&server.base, body, None).await;
    assert_eq!(v1.code(), -32602);
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_in_2x_adds_the_recovery_hints_to_its_503() {
    let gate = Gate::new();
    let mut options = Options {
        registry: Some(gate.registry()),
        ..Options::default()
    };
    options.config.max_concurrent_handlers = Some(1);
    let server = start(options).await;
    let base = server.base.clone();
    let first = tokio::spawn(async move { post_versioned(&base, echo_body(), None).await });
    gate.entered().await;
    let v2 = post_versioned(&server.base, echo_body(), Some("2.2")).await;
    assert_eq!(v2.status, 503);
    assert_eq!(
        v2.text,
        r#"{"error":"Service Temporarily Unavailable","code":"asap:transport/thread_pool_exhausted","rpc_code":-32031,"message":"Thread pool exhausted: 1/1 threads in use. Service temporarily unavailable.","details":{"max_threads":1,"active_threads":1},"recoverable":true,"retry_after_ms":1000,"fallback_action":"retry_later"}"#
    );
    assert_eq!(echoed_version(&v2), Some("2.2"));
    let v1 = post_versioned(&server.base, echo_body(), None).await;
    assert_eq!(
        v1.text,
        r#"{"error":"Service Temporarily Unavailable","code":"asap:transport/thread_pool_exhausted","message":"Thread pool exhausted: 1/1 threads in use. Service temporarily unavailable.","details":{"max_threads":1,"active_threads":1}}"#
    );
    gate.release(1);
    assert_eq!(first.await.unwrap().status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_client_offers_versions_only_when_asked() {
    let mut only_2_1 = Options::default();
    only_2_1.config.dialects = vec![Dialect::V1_1, Dialect::V2_1];
    let server = start(only_2_1).await;
    let request = Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c", "echo", json!({"x": 1})),
    );
    let plain = Client::builder().circuit_breaker(None).build().unwrap();
    assert!(plain.send(&server.base, &request).await.is_ok());
    for (offer, accepted) in [
        (&[Dialect::V2_2, Dialect::V2_1][..], true),
        (&[Dialect::V2_2][..], false),
        (&[][..], true),
    ] {
        let client = Client::builder()
            .circuit_breaker(None)
            .asap_versions(offer)
            .build()
            .unwrap();
        match client.send(&server.base, &request).await {
            Ok(response) => assert!(accepted, "{offer:?}: {}", response.payload_type),
            Err(ClientError::Remote { code, .. }) => {
                assert!(!accepted, "{offer:?}");
                assert_eq!(code, -32000);
            }
            Err(other) => panic!("{offer:?}: {other}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_2x_client_types_its_payloads_and_refuses_what_2x_refuses() {
    let server = start(Options::default()).await;
    let two_x = Client::builder()
        .circuit_breaker(None)
        .asap_versions(&[Dialect::V2_2])
        .build()
        .unwrap();
    let plain = Client::builder().circuit_breaker(None).build().unwrap();
    let mut free = TaskRequest::new("c", "echo", json!({"x": 1}));
    free.config = json!({"foo": 1}).as_object().cloned();
    let free = Envelope::new("urn:asap:agent:client", AGENT, free);
    // 1.1: `config` is free-form, so the request goes out and is answered.
    assert!(plain.send(&server.base, &free).await.is_ok());
    // 2.x: refused before sending, with the reference's error.
    match two_x.send(&server.base, &free).await {
        Err(ClientError::InvalidRequest(RequestError::Payload2x(error))) => {
            assert_eq!(error.to_json()[0]["type"], "extra_forbidden");
            assert_eq!(error.to_json()[0]["loc"], json!(["config", "foo"]));
        }
        other => panic!("{other:?}"),
    }
    // A typed config is accepted, and the answer is read with the 2.x rules.
    let typed = TaskRequest::new("c", "echo", json!({"x": 1})).with_config(TaskRequestConfig {
        timeout_seconds: Some(5),
        ..TaskRequestConfig::default()
    });
    let typed = Envelope::new("urn:asap:agent:client", AGENT, typed);
    let answer = two_x.send(&server.base, &typed).await.unwrap();
    assert_eq!(answer.payload_type, "task.response");
    server.stop().await;
}

/// A handler whose response payload 2.x refuses (`metrics.tokens_in` below 0) and 1.1
/// accepts (`metrics` is free-form there).
struct NegativeTokens;

#[async_trait::async_trait]
impl asap_protocol::server::Handler for NegativeTokens {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &asap_protocol::server::HandlerContext,
    ) -> Result<Envelope, asap_protocol::server::HandlerError> {
        let mut response = asap_protocol::model::TaskResponse::new(
            "t",
            asap_protocol::model::TaskStatus::Completed,
        );
        response.metrics = json!({"tokens_in": -1}).as_object().cloned();
        Ok(asap_protocol::server::reply_with(&request, ctx, response))
    }
}

#[tokio::test]
async fn a_handler_payload_2x_refuses_is_an_internal_error_in_2x_only() {
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(NegativeTokens));
    let server = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;
    // 1.1: sent as the handler wrote it.
    let v1 = post_versioned(&server.base, echo_body(), None).await;
    assert_eq!(
        v1.json()["result"]["envelope"]["payload"]["metrics"],
        json!({"tokens_in": -1}),
        "{}",
        v1.text
    );
    // 2.x: never sent; the quiet server answers -32603 without the detail.
    let v2 = post_versioned(&server.base, echo_body(), Some("2.2")).await;
    assert_eq!(v2.code(), -32603, "{}", v2.text);
    assert!(v2.json()["result"].is_null(), "{}", v2.text);
    server.stop().await;
}
