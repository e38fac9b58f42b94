//! OpenTelemetry export end to end: a client span, agent A (whose handler forwards the
//! task to agent B with `Client::send`) and agent B, all exporting over OTLP/HTTP to a
//! receiver this test starts; the exported spans form one trace with the expected
//! parent chain and attributes.
//!
//! The tracer provider is the process's global one, installed before the servers and
//! clients are built (they take its tracer then). The application's own root span is
//! an OpenTelemetry span made current around the first send, as an application using
//! the OpenTelemetry API (or `tracing-opentelemetry`) has it. The receiver has its own
//! thread, so the blocking flush can wait for it.

#![cfg(feature = "otel")]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use asap_protocol::client::Client;
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::server::{
    Handler, HandlerContext, HandlerError, HandlerRegistry, default_skills, reply_with,
};
use asap_test_support::otlp::{self, Exported};
use common::{AGENT, Options, start};
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

fn client() -> Client {
    Client::builder()
        .require_https(false)
        .retry(asap_protocol::client::RetryPolicy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_two_agent_chain_exports_one_trace_with_the_expected_parents() {
    let (base, spans) = otlp::receiver();
    let endpoint = format!("{base}/v1/traces");
    let guard =
        asap_protocol::telemetry::init_otlp_to("urn:asap:agent:chain", Some(&endpoint)).unwrap();

    // B runs the task lifecycle (its store operations are exported too).
    let b = start(Options {
        registry: Some(HandlerRegistry::agent(default_skills())),
        ..Options::default()
    })
    .await;
    let mut registry = HandlerRegistry::new();
    registry.register(
        "task.request",
        Arc::new(Forward {
            client: client(),
            to: b.base.clone(),
        }),
    );
    let a = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;

    let request = Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"text": "hi"})),
    );
    let tracer = opentelemetry::global::tracer("test");
    let root = opentelemetry::Context::current_with_span(tracer.start("test.client"));
    let response = client()
        .send(&a.base, &request)
        .with_context(root.clone())
        .await
        .unwrap();
    root.span().end();
    let answered_trace = response.extensions.as_ref().unwrap()["trace_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Blocks this thread (the servers wait); the receiver has its own.
    guard.flush();
    let exported: Vec<Exported> = spans.try_iter().collect();
    let by_name = |name: &str| -> Vec<&Exported> {
        exported.iter().filter(|e| e.span.name == name).collect()
    };
    let by_id: HashMap<&[u8], &Exported> = exported
        .iter()
        .map(|e| (e.span.span_id.as_slice(), e))
        .collect();
    let parent = |e: &Exported| -> &str {
        by_id
            .get(e.span.parent_span_id.as_slice())
            .map_or("<none>", |p| p.span.name.as_str())
    };
    // One trace for everything.
    let traces: std::collections::HashSet<_> =
        exported.iter().map(|e| e.span.trace_id.clone()).collect();
    assert_eq!(traces.len(), 1, "one trace");
    let trace = hex(&exported[0].span.trace_id);
    assert_eq!(
        answered_trace, trace,
        "the response names the exported trace"
    );
    assert!(exported.iter().all(|e| e.service == "urn:asap:agent:chain"));

    let [root] = by_name("test.client")[..] else {
        panic!("one client root span")
    };
    assert!(root.span.parent_span_id.is_empty());
    let sends = by_name("asap.client.send");
    let requests = by_name("asap.request");
    let handlers = by_name("asap.handler.execute");
    assert_eq!((sends.len(), requests.len(), handlers.len()), (2, 2, 2));
    // client → A asap.request → A handler → A client.send → B asap.request → B handler.
    let first_send = sends.iter().find(|s| parent(s) == "test.client").unwrap();
    let a_request = requests
        .iter()
        .find(|r| r.span.parent_span_id == first_send.span.span_id)
        .expect("A's request span is the client span's child");
    let a_handler = handlers
        .iter()
        .find(|h| h.span.parent_span_id == a_request.span.span_id)
        .expect("A's handler span");
    let second_send = sends
        .iter()
        .find(|s| s.span.parent_span_id == a_handler.span.span_id)
        .expect("A's outgoing call is the handler's child");
    let b_request = requests
        .iter()
        .find(|r| r.span.parent_span_id == second_send.span.span_id)
        .expect("B's request span is A's client span's child");
    let b_handler = handlers
        .iter()
        .find(|h| h.span.parent_span_id == b_request.span.span_id)
        .expect("B's handler span");
    // The store operations B's task handler runs are children of its handler span.
    let stores = by_name("asap.store");
    assert!(!stores.is_empty(), "B's handler stores the task");
    for store in &stores {
        assert_eq!(store.span.parent_span_id, b_handler.span.span_id);
        assert_eq!(store.span.kind, SpanKind::Client as i32);
        assert_eq!(store.attribute("db.system.name").as_deref(), Some("memory"));
        assert!(store.attribute("db.operation.name").is_some());
    }
    assert_eq!(
        hex(&a_request.span.span_id),
        response.extensions.as_ref().unwrap()["span_id"]
            .as_str()
            .unwrap()
    );

    // Kinds and attributes.
    assert_eq!(first_send.span.kind, SpanKind::Client as i32);
    assert_eq!(a_request.span.kind, SpanKind::Server as i32);
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
        a_handler.attribute("asap.agent.urn").as_deref(),
        Some(AGENT)
    );
    assert_eq!(
        a_handler.attribute("asap.envelope.id"),
        Some(request.id.clone())
    );
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
