//! OpenTelemetry export end to end: a client span, agent A (whose handler forwards the
//! task to agent B with `Client::send`) and agent B, all exporting over OTLP/HTTP to a
//! receiver this test starts; the exported spans form one trace with the expected
//! parent chain and attributes, with the client reaching A over HTTP and over
//! WebSocket.
//!
//! The tracer provider is the process's global one (each test is its own process under
//! nextest, which the suite runs with), installed before the servers and clients are
//! built: they take its tracer then. The application's own root span is an
//! OpenTelemetry span made current around the call, as an application using the
//! OpenTelemetry API (or `tracing-opentelemetry`) has it. The receiver has its own
//! thread, so the blocking flush can wait for it.

#![cfg(feature = "otel")]

mod common;

use std::sync::Arc;

use asap_protocol::client::Client;
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::model::{TaskStatus, TaskStream};
use asap_protocol::server::{
    Handler, HandlerContext, HandlerError, HandlerRegistry, StreamEmitter, StreamingHandler,
    default_skills, reply_with,
};
use asap_test_support::otlp::{self, Exported};
use common::{AGENT, Options, Running, start};
use futures_util::StreamExt as _;
use opentelemetry::trace::{FutureExt as _, TraceContextExt as _, Tracer as _};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;

/// Agent A's handler: forwards the task to agent B and answers with B's result.
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
        let task: TaskRequest = request.payload_as()?;
        let onward = Envelope::new(
            ctx.manifest.id.clone(),
            AGENT,
            TaskRequest::new("c-onward", "echo", task.input.into()),
        );
        let answer = self
            .client
            .send(&self.to, &onward)
            .await
            .map_err(HandlerError::internal)?;
        let payload = answer
            .parse_payload()
            .map_err(|e| HandlerError::internal(e.to_string()))?;
        Ok(reply_with(&request, ctx, payload))
    }
}

/// Agent A's streaming handler: forwards the task to agent B, then streams B's answer
/// as one final chunk.
struct ForwardStream {
    client: Client,
    to: String,
}

#[async_trait::async_trait]
impl StreamingHandler for ForwardStream {
    async fn stream(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
        out: &StreamEmitter,
    ) -> Result<(), HandlerError> {
        let task: TaskRequest = request.payload_as()?;
        let onward = Envelope::new(
            ctx.manifest.id.clone(),
            AGENT,
            TaskRequest::new("c-onward", "echo", task.input.into()),
        );
        let answer = self
            .client
            .send(&self.to, &onward)
            .await
            .map_err(HandlerError::internal)?;
        let chunk = TaskStream::new(answer.payload_type).last(TaskStatus::Completed);
        out.chunk(chunk).await.map_err(HandlerError::internal)
    }
}

fn client() -> Client {
    Client::builder()
        .require_https(false)
        .retry(asap_protocol::client::RetryPolicy::none())
        .build()
        .unwrap()
}

/// Agent B (the task lifecycle with the echo skill: its store operations are exported
/// too) and agent A, whose handler forwards to B over HTTP.
async fn agents() -> (Running, Running) {
    agents_with(|registry, to| {
        let forward = Forward {
            client: client(),
            to,
        };
        registry.register("task.request", Arc::new(forward));
    })
    .await
}

/// Agent B as in [`agents`], and agent A with the handlers `register` adds, given B's
/// base URL.
async fn agents_with(register: impl FnOnce(&mut HandlerRegistry, String)) -> (Running, Running) {
    let b = start(Options {
        registry: Some(HandlerRegistry::agent(default_skills())),
        ..Options::default()
    })
    .await;
    let mut registry = HandlerRegistry::new();
    register(&mut registry, b.base.clone());
    let a = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;
    (a, b)
}

/// The spans of one call through the chain, each the child of the one before: the
/// test's root, its client span (none for a stream), A's request and handler spans,
/// A's client span to B, B's request and handler spans.
struct Chain<'a> {
    first_send: Option<&'a Exported>,
    a_request: &'a Exported,
    a_handler: &'a Exported,
    second_send: &'a Exported,
    b_request: &'a Exported,
    b_handler: &'a Exported,
}

/// Prints the exported spans as a tree (`cargo nextest run --no-capture` shows it):
/// each span under its parent, with its kind and attributes.
fn print_tree(exported: &[Exported]) {
    fn walk(exported: &[Exported], parent: &[u8], depth: usize) {
        for e in exported.iter().filter(|e| e.span.parent_span_id == parent) {
            let mut attributes: Vec<String> = e
                .span
                .attributes
                .iter()
                .filter_map(|a| Some(format!("{}={}", a.key, e.attribute(&a.key)?)))
                .collect();
            attributes.sort();
            let kind = SpanKind::try_from(e.span.kind).map_or("?", |k| k.as_str_name());
            eprintln!(
                "{:indent$}{} [{}] span {} {}",
                "",
                e.span.name,
                kind,
                hex(&e.span.span_id),
                attributes.join(" "),
                indent = depth * 2
            );
            walk(exported, &e.span.span_id, depth + 1);
        }
    }
    if let Some(first) = exported.first() {
        eprintln!("trace {}", hex(&first.span.trace_id));
    }
    walk(exported, &[], 0);
}

/// Finds the chain in `exported`, requiring one trace, one root named `test.client`
/// and each span the child of the one before; `client_span`: whether the client made
/// a span of its own for the first call (a unary send does, a stream does not).
fn chain(exported: &[Exported], client_span: bool) -> Chain<'_> {
    print_tree(exported);
    let by_name = |name: &str| -> Vec<&Exported> {
        exported.iter().filter(|e| e.span.name == name).collect()
    };
    // One trace for everything.
    let traces: std::collections::HashSet<_> =
        exported.iter().map(|e| e.span.trace_id.clone()).collect();
    assert_eq!(traces.len(), 1, "one trace");
    assert!(exported.iter().all(|e| e.service == "urn:asap:agent:chain"));

    let [root] = by_name("test.client")[..] else {
        panic!("one client root span")
    };
    assert!(root.span.parent_span_id.is_empty());
    let sends = by_name("asap.client.send");
    let requests = by_name("asap.request");
    let handlers = by_name("asap.handler.execute");
    let expected_sends = if client_span { 2 } else { 1 };
    assert_eq!(
        (sends.len(), requests.len(), handlers.len()),
        (expected_sends, 2, 2)
    );
    // client → A asap.request → A handler → A client.send → B asap.request → B handler.
    let first_send = client_span.then(|| child(root, &sends, "the client span"));
    let a_request = child(first_send.unwrap_or(root), &requests, "A's request span");
    let a_handler = child(a_request, &handlers, "A's handler span");
    let second_send = child(a_handler, &sends, "A's outgoing call");
    let b_request = child(second_send, &requests, "B's request span");
    let b_handler = child(b_request, &handlers, "B's handler span");
    Chain {
        first_send,
        a_request,
        a_handler,
        second_send,
        b_request,
        b_handler,
    }
}

/// The kinds and attributes of the client's span, A's request and handler spans and
/// B's request span, for `request` sent to A over `transport`.
fn assert_first_hop(chain: &Chain<'_>, request: &Envelope, transport: &str) {
    if let Some(send) = chain.first_send {
        assert_eq!(send.span.kind, SpanKind::Client as i32);
    }
    let a_request = chain.a_request;
    assert_eq!(a_request.span.kind, SpanKind::Server as i32);
    assert_eq!(
        a_request.attribute("asap.transport").as_deref(),
        Some(transport)
    );
    assert_eq!(
        a_request.attribute("asap.envelope.id"),
        Some(request.id.clone())
    );
    assert_eq!(
        a_request.attribute("asap.payload_type").as_deref(),
        Some("task.request")
    );
    assert_eq!(
        a_request.attribute("asap.sender").as_deref(),
        Some("urn:asap:agent:client")
    );
    assert_eq!(
        a_request.attribute("asap.outcome").as_deref(),
        Some("success")
    );
    assert_eq!(
        chain.a_handler.attribute("asap.agent.urn").as_deref(),
        Some(AGENT)
    );
    assert_eq!(
        chain.a_handler.attribute("asap.envelope.id"),
        Some(request.id.clone())
    );
    assert_eq!(
        chain.b_request.attribute("asap.transport").as_deref(),
        Some("http")
    );
}

/// The span among `among` whose parent is `of`.
fn child<'a>(of: &Exported, among: &[&'a Exported], what: &str) -> &'a Exported {
    let found = among
        .iter()
        .find(|s| s.span.parent_span_id == of.span.span_id);
    found.unwrap_or_else(|| panic!("{what} is not a child of {}", of.span.name))
}

fn task() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"text": "hi"})),
    )
}

#[tokio::test]
async fn a_two_agent_chain_exports_one_trace_with_the_expected_parents() {
    let (base, spans) = otlp::receiver();
    let endpoint = format!("{base}/v1/traces");
    let guard =
        asap_protocol::telemetry::init_otlp_to("urn:asap:agent:chain", Some(&endpoint)).unwrap();
    let (a, b) = agents().await;

    let request = task();
    let root = root_span("test.client");
    let response = client()
        .send(&a.base, &request)
        .with_context(root.clone())
        .await
        .unwrap();
    root.span().end();
    // A readiness probe pings B's store outside any request: no span, no trace of its
    // own (only the store spans of the chain below are exported).
    let ready = reqwest::get(format!("{}/ready", b.base)).await.unwrap();
    assert_eq!(ready.status(), 200);
    let answered_trace = response.extensions.as_ref().unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Blocks this thread (the servers wait); the receiver has its own.
    guard.flush();
    let exported: Vec<Exported> = spans.try_iter().collect();
    let chain_of_http = chain(&exported, true);
    let Chain {
        a_request,
        second_send,
        b_handler,
        ..
    } = &chain_of_http;
    // The store operations B's task handler runs are children of its handler span.
    let stores: Vec<&Exported> = exported
        .iter()
        .filter(|e| e.span.name == "asap.store")
        .collect();
    assert!(!stores.is_empty(), "B's handler stores the task");
    for store in &stores {
        assert_eq!(store.span.parent_span_id, b_handler.span.span_id);
        assert_eq!(store.span.kind, SpanKind::Client as i32);
        assert_eq!(store.attribute("db.system.name").as_deref(), Some("memory"));
        assert!(store.attribute("db.operation.name").is_some());
    }
    let trace = hex(&exported[0].span.trace_id);
    assert_eq!(
        answered_trace, trace,
        "the response names the exported trace"
    );
    assert_eq!(
        hex(&a_request.span.span_id),
        response.extensions.as_ref().unwrap()["span_id"]
            .as_str()
            .unwrap()
    );

    // Kinds and attributes.
    assert_first_hop(&chain_of_http, &request, "http");
    assert_eq!(
        b_handler.attribute("asap.payload_type").as_deref(),
        Some("task.request")
    );
    assert_eq!(
        second_send
            .attribute("http.response.status_code")
            .as_deref(),
        Some("200")
    );

    a.stop().await;
    b.stop().await;
    guard.shutdown();
}

#[tokio::test]
async fn a_chain_entered_over_websocket_exports_one_trace_with_the_expected_parents() {
    let (base, spans) = otlp::receiver();
    let endpoint = format!("{base}/v1/traces");
    let guard =
        asap_protocol::telemetry::init_otlp_to("urn:asap:agent:chain", Some(&endpoint)).unwrap();
    let (a, b) = agents().await;

    // The client reaches A over WebSocket, A forwards to B over HTTP. The first call
    // opens the connection (its handshake carries that call's `traceparent`); the
    // second, in a trace of its own, goes over the same connection.
    let client = client();
    let url = format!("ws://{}/asap/ws", a.addr);
    let warm_up = root_span("test.warm_up");
    client
        .send(&url, &task())
        .with_context(warm_up.clone())
        .await
        .unwrap();
    warm_up.span().end();
    guard.flush();
    let first: Vec<Exported> = spans.try_iter().collect();
    let named = |name: &str| first.iter().filter(|e| e.span.name == name).count();
    assert_eq!(
        [
            named("test.warm_up"),
            named("asap.client.send"),
            named("asap.request"),
            named("asap.handler.execute")
        ],
        [1, 2, 2, 2],
        "the warm-up's chain is exported"
    );

    let request = task();
    let root = root_span("test.client");
    let response = client
        .send(&url, &request)
        .with_context(root.clone())
        .await
        .unwrap();
    root.span().end();
    assert_eq!(response.payload_type, "task.response");
    assert_eq!(client.websocket_connections(), 1);
    // Closes the WebSocket connection, so A stops at once.
    drop(client);

    guard.flush();
    let exported: Vec<Exported> = spans.try_iter().collect();
    let chain_of_ws = chain(&exported, true);
    assert_first_hop(&chain_of_ws, &request, "websocket");
    let first_send = chain_of_ws.first_send.unwrap();
    assert_eq!(first_send.attribute("url.full"), Some(url));

    a.stop().await;
    b.stop().await;
    guard.shutdown();
}

#[tokio::test]
async fn a_stream_continues_the_trace_through_its_handlers_calls() {
    let (base, spans) = otlp::receiver();
    let endpoint = format!("{base}/v1/traces");
    let guard =
        asap_protocol::telemetry::init_otlp_to("urn:asap:agent:chain", Some(&endpoint)).unwrap();
    let (a, b) = agents_with(|registry, to| {
        let forward = ForwardStream {
            client: client(),
            to,
        };
        registry.register_streaming("task.request", Arc::new(forward));
    })
    .await;

    // `POST /asap/stream`: no client span of its own, so the application's span is the
    // `traceparent`'s parent.
    let request = task();
    let root = root_span("test.client");
    let streamed: Vec<Envelope> = async {
        let stream = client().stream(&a.base, &request).await.unwrap();
        stream.map(Result::unwrap).collect().await
    }
    .with_context(root.clone())
    .await;
    root.span().end();
    assert_eq!(streamed.len(), 1);
    assert_eq!(streamed[0].payload["chunk"], "task.response");

    guard.flush();
    let exported: Vec<Exported> = spans.try_iter().collect();
    let chain_of_stream = chain(&exported, false);
    assert_first_hop(&chain_of_stream, &request, "sse");
    let a_request = chain_of_stream.a_request;
    assert_eq!(
        hex(&a_request.span.span_id),
        streamed[0].extensions.as_ref().unwrap()["span_id"]
            .as_str()
            .unwrap(),
        "the streamed envelope names the stream's request span"
    );

    a.stop().await;
    b.stop().await;
    guard.shutdown();
}

/// A root span of the application (the global provider's), as the current context.
fn root_span(name: &'static str) -> opentelemetry::Context {
    let tracer = opentelemetry::global::tracer("test");
    opentelemetry::Context::current_with_span(tracer.start(name))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
