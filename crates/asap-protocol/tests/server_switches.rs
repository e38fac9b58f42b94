//! Switches the reference lacks (refusing envelopes without a nonce, refusing repeated
//! envelope ids), the in-flight count surviving a panicking handler, and the router
//! nested in a user's axum app served without `ConnectInfo`.

mod common;

use std::sync::Arc;

use asap_protocol::model::Envelope;
use asap_protocol::server::{Handler, HandlerContext, HandlerError, HandlerRegistry, Server};
use common::{Options, echo_request, get, post, start};
use serde_json::{Value, json};

fn with_nonce(nonce: Option<&str>, id: &str) -> Value {
    let mut request = echo_request(json!({}));
    let envelope = &mut request["params"]["envelope"];
    envelope["id"] = json!(id);
    if let Some(nonce) = nonce {
        envelope["extensions"] = json!({"nonce": nonce});
    }
    request
}

#[tokio::test]
async fn missing_nonces_pass_by_default_and_are_refused_by_the_switch() {
    let mut options = Options::default();
    options.config.require_nonce = true;
    let reference_like = start(options).await;
    let reply = post(&reference_like.base, &with_nonce(None, "e1")).await;
    assert!(reply.json().get("result").is_some(), "{}", reply.text);
    reference_like.stop().await;

    let mut options = Options::default();
    options.config.require_nonce = true;
    options.config.reject_missing_nonce = true;
    let strict = start(options).await;
    let reply = post(&strict.base, &with_nonce(None, "e2")).await;
    let data = &reply.json()["error"]["data"];
    assert_eq!(reply.code(), -32602);
    assert_eq!(data["code"], "asap:protocol/invalid_nonce");
    assert_eq!(
        data["message"],
        "Nonce is required: the envelope has no extensions.nonce"
    );
    assert_eq!(data["details"], json!({"nonce": null, "envelope_id": "e2"}));
    // With a nonce it passes, once.
    let reply = post(&strict.base, &with_nonce(Some("n-1"), "e3")).await;
    assert!(reply.json().get("result").is_some(), "{}", reply.text);
    let reply = post(&strict.base, &with_nonce(Some("n-1"), "e4")).await;
    assert_eq!(
        reply.json()["error"]["data"]["message"],
        "Duplicate nonce detected: n-1"
    );
    strict.stop().await;
}

#[tokio::test]
async fn repeated_envelope_ids_pass_by_default_and_are_refused_by_the_switch() {
    let reference_like = start(Options::default()).await;
    for _ in 0..2 {
        let reply = post(&reference_like.base, &with_nonce(None, "same-id")).await;
        assert!(reply.json().get("result").is_some(), "{}", reply.text);
    }
    reference_like.stop().await;

    let mut options = Options::default();
    options.config.reject_repeated_ids = true;
    let strict = start(options).await;
    let reply = post(&strict.base, &with_nonce(None, "same-id")).await;
    assert!(reply.json().get("result").is_some(), "{}", reply.text);
    let reply = post(&strict.base, &with_nonce(None, "same-id")).await;
    let data = &reply.json()["error"]["data"];
    assert_eq!(reply.code(), -32602);
    assert_eq!(data["message"], "Duplicate envelope id detected: same-id");
    assert_eq!(data["details"], json!({"envelope_id": "same-id"}));
    let reply = post(&strict.base, &with_nonce(None, "other-id")).await;
    assert!(reply.json().get("result").is_some(), "{}", reply.text);
    strict.stop().await;
}

/// A handler with a bug.
struct Panics;

#[async_trait::async_trait]
impl Handler for Panics {
    async fn handle(&self, _: Envelope, _: &HandlerContext) -> Result<Envelope, HandlerError> {
        panic!("handler bug")
    }
}

#[tokio::test]
async fn a_panicking_handler_does_not_leave_a_task_counted_as_active() {
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(Panics));
    let server = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;
    let body = serde_json::to_vec(&echo_request(json!({}))).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{}/asap", server.base))
        .body(body)
        .send()
        .await;
    // The connection dies with the handler; no answer.
    assert!(answer.is_err(), "{answer:?}");
    let health = get(&server.base, "/.well-known/asap/health", &[]).await;
    assert_eq!(health.json()["load"]["active_tasks"], 0, "{}", health.text);
    server.stop().await;
}

#[tokio::test]
async fn the_router_nested_in_an_app_served_without_connect_info_answers() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = Server::builder()
        .manifest(common::manifest(&base))
        .build()
        .unwrap();
    let app = axum::Router::new().nest("/agent", server.router());
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let reply = client
        .post(format!("{base}/agent/asap"))
        .json(&echo_request(json!({"hi": 1})))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let answer: Value = reply.json().await.unwrap();
    assert_eq!(
        answer["result"]["envelope"]["payload"]["result"]["echoed"]["hi"],
        1
    );
    let ws = tokio_tungstenite::connect_async(base.replace("http", "ws") + "/agent/asap/ws").await;
    assert!(ws.is_ok(), "{ws:?}");
    serving.abort();
}
