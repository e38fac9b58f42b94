//! W3C trace context on the wire: what the client sends (HTTP `traceparent` and
//! `tracestate`, WebSocket envelope `trace_id`/`extensions.span_id`) and what the server
//! continues (its handler's outgoing calls and its response's `extensions.trace_id`).

mod common;

use std::sync::{Arc, Mutex};

use asap_protocol::client::{Client, RetryPolicy};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::server::{EchoHandler, Handler, HandlerContext, HandlerError, HandlerRegistry};
use asap_protocol::trace_context::{self, TraceContext, TraceParent};
use common::{AGENT, Options, start};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn new_client(trace: bool) -> Client {
    Client::builder()
        .require_https(false)
        .retry(RetryPolicy::none())
        .trace_context(trace)
        .build()
        .unwrap()
}

fn task() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({})),
    )
}

/// The `traceparent`s and `tracestate`s of the requests `server` received.
async fn sent(server: &MockServer) -> Vec<(Option<TraceParent>, Option<String>)> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let parent = r
                .headers
                .get("traceparent")
                .map(|v| TraceParent::parse(v.to_str().unwrap()).expect("a valid traceparent"));
            let state = r
                .headers
                .get("tracestate")
                .map(|v| v.to_str().unwrap().to_owned());
            (parent, state)
        })
        .collect()
}

#[tokio::test]
async fn every_http_attempt_carries_a_traceparent_continuing_the_current_context() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = new_client(true);
    // No current context: a new sampled trace per send.
    let _ = client.send(&server.uri(), &task()).await;
    let _ = client.send(&server.uri(), &task()).await;
    // Within a context: its trace, a new span id, its tracestate.
    let context = TraceContext {
        parent: TraceParent::new_root(),
        state: Some("rojo=00f067aa0ba902b7".into()),
    };
    trace_context::scope(context.clone(), async {
        let _ = client.send(&server.uri(), &task()).await;
    })
    .await;
    let seen = sent(&server).await;
    assert_eq!(seen.len(), 3);
    let (first, second) = (seen[0].0.unwrap(), seen[1].0.unwrap());
    assert!(first.sampled() && second.sampled());
    assert_ne!(first.trace_id, second.trace_id);
    assert_eq!(seen[0].1, None);
    let (third, state) = (seen[2].0.unwrap(), seen[2].1.clone());
    assert_eq!(third.trace_id, context.parent.trace_id);
    assert_ne!(third.span_id, context.parent.span_id);
    assert_eq!(state, context.state);

    // Switched off: nothing.
    let quiet = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&quiet)
        .await;
    let _ = new_client(false).send(&quiet.uri(), &task()).await;
    assert_eq!(sent(&quiet).await, vec![(None, None)]);
}

/// Records the envelopes it answers (with the echo handler).
#[derive(Default)]
struct Recording(Arc<Mutex<Vec<Envelope>>>);

#[async_trait::async_trait]
impl Handler for Recording {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        self.0.lock().unwrap().push(request.clone());
        EchoHandler.handle(request, ctx).await
    }
}

#[tokio::test]
async fn a_websocket_envelope_carries_the_trace_by_the_envelope_convention() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(Recording(seen.clone())));
    let mut options = Options {
        registry: Some(registry),
        ..Options::default()
    };
    options.config.websocket.message_rate = None;
    options.config.shutdown_grace = std::time::Duration::from_millis(100);
    let server = start(options).await;
    let ws = server.base.replace("http://", "ws://") + "/asap/ws";
    let context = TraceContext::new_root();
    let client = new_client(true);
    let response = trace_context::scope(context.clone(), client.send(&ws, &task()))
        .await
        .unwrap();
    // An envelope that names its trace already keeps it.
    let named = task().with_trace_id("my-trace-1");
    client.send(&ws, &named).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let sent = &seen[0];
    assert_eq!(
        sent.trace_id.as_deref(),
        Some(context.parent.trace_id_hex().as_str())
    );
    let span_id = sent.extensions.as_ref().unwrap()["span_id"]
        .as_str()
        .unwrap();
    assert_eq!(span_id.len(), 16);
    assert_ne!(span_id, context.parent.span_id_hex());
    // The server continues the envelope's context: nothing injected (the reference's
    // rule for a remote parent), the trace id echoed.
    assert_eq!(
        response.trace_id.as_deref(),
        Some(context.parent.trace_id_hex().as_str())
    );
    assert_eq!(seen[1].trace_id.as_deref(), Some("my-trace-1"));
    assert!(
        seen[1]
            .extensions
            .as_ref()
            .is_none_or(|e| !e.contains_key("span_id"))
    );
    drop(client);
    server.stop().await;
}

/// Agent A's handler calls B: the call continues A's request context, so B answers
/// in the trace of the `traceparent` A received.
struct Forward {
    client: Client,
    to: String,
}

#[async_trait::async_trait]
impl Handler for Forward {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let answer = self
            .client
            .send(&self.to, &task())
            .await
            .map_err(HandlerError::internal)?;
        let mut response = EchoHandler.handle(request, ctx).await?;
        response.trace_id = answer.trace_id;
        Ok(response)
    }
}

#[tokio::test]
async fn a_handlers_outgoing_call_continues_the_incoming_traceparent() {
    let b = start(Options::default()).await;
    let mut registry = HandlerRegistry::new();
    registry.register(
        "task.request",
        Arc::new(Forward {
            client: new_client(true),
            to: b.base.clone(),
        }),
    );
    let a = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let body = serde_json::to_vec(&common::echo_request(json!({}))).unwrap();
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let reply = common::post_raw(
        &a.base,
        body,
        &[
            ("content-type", "application/json"),
            ("traceparent", &traceparent),
        ],
    )
    .await;
    let envelope = &reply.json()["result"]["envelope"];
    // B's answer (copied by A's handler) is in the incoming trace.
    assert_eq!(envelope["trace_id"], trace);
    assert_eq!(envelope["extensions"]["trace_id"], trace);
    a.stop().await;
    b.stop().await;
}
