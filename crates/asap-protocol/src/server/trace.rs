//! Trace-context side effects on responses (wire spec section 9.12), and the server's
//! spans.
//!
//! Spans, exported with feature `otel` (see `crate::spans`) and mirrored by `tracing`
//! spans of the same names for logs (zero cost without a subscriber):
//! `asap.request` per request (HTTP, or WebSocket message), parented by the request's
//! `traceparent` (a WebSocket message: by its envelope's `trace_id`/`extensions.span_id`,
//! the client's span for this message, else by the handshake's `traceparent`, which
//! names only the span that opened the connection), and its child
//! `asap.handler.execute` (the reference's name and attributes), parented instead by
//! the envelope's `trace_id`/`extensions.span_id` when they form a valid remote context
//! in another trace than the request span's, as the reference does.
//!
//! The reference server always has a tracing span; when it is recording, it writes the
//! span's ids into every successful response envelope. This server does the same:
//! unless the request continues a remote span (an envelope whose `trace_id` is 32 hex
//! characters with a 16-hex `extensions.span_id`) or carries a W3C `traceparent` that
//! is not sampled, the response gets `extensions.trace_id`/`span_id` and, when it has
//! none, `trace_id`.

use std::cell::RefCell;

use http::HeaderMap;
use rand::Rng;
use serde_json::Value;

use crate::model::Envelope;
use crate::spans;
use crate::trace_context::{TraceContext, TraceParent};

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

/// The ids of this server's span for one request; `None` when the span is not recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpan {
    /// 32 lower-case hex characters.
    pub trace_id: String,
    /// 16 lower-case hex characters.
    pub span_id: String,
}

impl ServerSpan {
    /// Decides, from the request envelope and headers, whether and how to inject (the
    /// current trace context's ids, when the request runs in one).
    pub fn for_request(request: &Envelope, headers: &HeaderMap) -> Option<Self> {
        Self::in_context(request, headers, crate::trace_context::current().as_ref())
    }

    /// [`for_request`](Self::for_request) for a request running in `own` (its span's
    /// context), when it runs in one.
    pub(crate) fn in_context(
        request: &Envelope,
        headers: &HeaderMap,
        own: Option<&TraceContext>,
    ) -> Option<Self> {
        let remote_parent = request.trace_id.as_deref().is_some_and(|t| is_hex(t, 32))
            && request
                .extensions
                .as_ref()
                .and_then(|e| e.get("span_id"))
                .and_then(Value::as_str)
                .is_some_and(|s| is_hex(s, 16));
        if remote_parent {
            return None;
        }
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let parts: Vec<&str> = v.trim().split('-').collect();
                match parts.as_slice() {
                    [version, trace, span, flags]
                        if is_hex(version, 2)
                            && is_hex(trace, 32)
                            && is_hex(span, 16)
                            && is_hex(flags, 2) =>
                    {
                        Some((
                            trace.to_ascii_lowercase(),
                            u8::from_str_radix(flags, 16).unwrap_or(0) & 1 == 1,
                        ))
                    }
                    _ => None,
                }
            });
        if let Some((_, false)) = parent {
            return None;
        }
        // The request span's ids when the pipeline runs the request in one.
        if let Some(own) = own {
            return Some(Self {
                trace_id: own.parent.trace_id_hex(),
                span_id: own.parent.span_id_hex(),
            });
        }
        let trace_id = match parent {
            Some((trace, _)) => trace,
            None => random_hex(16),
        };
        Some(Self {
            trace_id,
            span_id: random_hex(8),
        })
    }

    /// Writes the span's ids into a response envelope.
    pub fn inject(&self, response: &mut Envelope) {
        let extensions = response.extensions.get_or_insert_with(Default::default);
        extensions.insert("trace_id".into(), self.trace_id.clone().into());
        extensions.insert("span_id".into(), self.span_id.clone().into());
        if response.trace_id.is_none() {
            response.trace_id = Some(self.trace_id.clone());
        }
    }
}

/// The remote context an envelope carries by the reference's convention: `trace_id`
/// of 32 hex characters and `extensions.span_id` of 16 (taken as sampled).
pub(crate) fn envelope_parent(envelope: &Envelope) -> Option<TraceContext> {
    let trace = envelope.trace_id.as_deref()?;
    let span = envelope.extensions.as_ref()?.get("span_id")?.as_str()?;
    remote_context(trace, span)
}

/// [`envelope_parent`] of a JSON-RPC request not parsed yet: its `params.envelope`'s
/// `trace_id` and `extensions.span_id`, when they form a valid remote context.
pub(crate) fn request_envelope_parent(request: &Value) -> Option<TraceContext> {
    let envelope = request.get("params")?.get("envelope")?;
    let trace = envelope.get("trace_id")?.as_str()?;
    let span = envelope.get("extensions")?.get("span_id")?.as_str()?;
    remote_context(trace, span)
}

/// The context of a `trace` id of 32 hex characters and a `span` id of 16.
fn remote_context(trace: &str, span: &str) -> Option<TraceContext> {
    if !is_hex(trace, 32) || !is_hex(span, 16) {
        return None;
    }
    let parent = TraceParent::parse(&format!("00-{trace}-{span}-01"))?;
    Some(TraceContext {
        parent,
        state: None,
    })
}

/// The `tracing` span `asap.request` of one request (for logs; what is exported is
/// [`start_request`]'s). Its envelope and outcome fields are recorded as they become
/// known.
pub(crate) fn request_span(transport: &'static str) -> tracing::Span {
    tracing::info_span!(
        "asap.request",
        otel.kind = "server",
        asap.transport = transport,
        asap.envelope.id = tracing::field::Empty,
        asap.payload_type = tracing::field::Empty,
        asap.sender = tracing::field::Empty,
        asap.recipient = tracing::field::Empty,
        asap.correlation_id = tracing::field::Empty,
        asap.outcome = tracing::field::Empty,
        rpc.jsonrpc.error_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

tokio::task_local! {
    /// The exported `asap.request` span of the request being processed.
    static EXPORTED: RefCell<spans::Span>;
}

/// Starts the exported `asap.request` span, parented by the request's `traceparent`:
/// the span, and the trace context the request runs in (the span's ids).
pub(crate) fn start_request(
    tracer: &spans::Tracer,
    parent: Option<&TraceContext>,
    transport: &'static str,
) -> (spans::Span, TraceContext) {
    let (mut span, context) = tracer.start("asap.request", spans::Kind::Server, parent);
    span.set_static("asap.transport", transport);
    (span, context)
}

/// Runs `future` with `span` as the request's exported span (what [`record_envelope`]
/// and [`record_outcome`] write to); the span ends when `future` does.
pub(crate) async fn with_exported<F: Future>(span: spans::Span, future: F) -> F::Output {
    EXPORTED.scope(RefCell::new(span), future).await
}

fn exported(update: impl FnOnce(&mut spans::Span)) {
    let _ = EXPORTED.try_with(|span| {
        if let Ok(mut span) = span.try_borrow_mut()
            && span.is_recording()
        {
            update(&mut span);
        }
    });
}

/// Records the request envelope on the current `asap.request` spans (one call into the
/// `tracing` subscriber for all the fields).
pub(crate) fn record_envelope(envelope: &Envelope, label: &str) {
    let span = tracing::Span::current();
    tracing::record_all!(
        span,
        asap.envelope.id = envelope.id.as_str(),
        asap.payload_type = label,
        asap.sender = envelope.sender.as_str(),
        asap.recipient = envelope.recipient.as_str(),
        asap.correlation_id = envelope.correlation_id.as_deref(),
    );
    exported(|span| set_envelope(span, envelope, label));
}

/// Sets the request envelope's attributes on an exported `asap.request` span.
pub(crate) fn set_envelope(span: &mut spans::Span, envelope: &Envelope, label: &str) {
    if !span.is_recording() {
        return;
    }
    span.set_str("asap.envelope.id", &envelope.id);
    span.set_str("asap.payload_type", label);
    span.set_str("asap.sender", &envelope.sender);
    // No `asap.recipient`: it names this agent, which the resource's service.name
    // already does (every attribute costs two allocations more at export).
    if let Some(correlation) = &envelope.correlation_id {
        span.set_str("asap.correlation_id", correlation);
    }
}

/// Records a request's outcome on the current `asap.request` spans: `success`, or the
/// error type with the JSON-RPC code.
pub(crate) fn record_outcome(outcome: &str, rpc_code: Option<i64>) {
    let status = if rpc_code.is_some() { "ERROR" } else { "OK" };
    let span = tracing::Span::current();
    tracing::record_all!(
        span,
        asap.outcome = outcome,
        rpc.jsonrpc.error_code = rpc_code,
        otel.status_code = status,
    );
    exported(|span| set_outcome(span, outcome, rpc_code));
}

/// Sets a request's outcome on an exported `asap.request` span.
pub(crate) fn set_outcome(span: &mut spans::Span, outcome: &str, rpc_code: Option<i64>) {
    if !span.is_recording() {
        return;
    }
    span.set_str("asap.outcome", outcome);
    if let Some(code) = rpc_code {
        span.set_i64("rpc.jsonrpc.error_code", code);
    }
    span.set_ok(rpc_code.is_none());
}

/// The `tracing` span `asap.handler.execute` (for logs).
pub(crate) fn handler_span(envelope: &Envelope, agent: &str) -> tracing::Span {
    tracing::info_span!(
        "asap.handler.execute",
        asap.payload_type = envelope.payload_type.as_str(),
        asap.agent.urn = agent,
        asap.envelope.id = envelope.id.as_str(),
        otel.status_code = tracing::field::Empty,
    )
}

/// Starts the exported `asap.handler.execute` span (the reference's name and
/// attributes), parented by the envelope's remote context when it carries one in
/// another trace than the request span's (as the reference does), else by the request
/// span (which continues the envelope's context when it names that trace: a WebSocket
/// message): the span, and the trace context the handler runs in (its outgoing calls
/// continue it).
pub(crate) fn start_handler(
    tracer: &spans::Tracer,
    envelope: &Envelope,
    agent: &str,
) -> (spans::Span, TraceContext) {
    let current = crate::trace_context::current();
    let parent = match envelope_parent(envelope) {
        Some(remote)
            if current
                .as_ref()
                .is_none_or(|c| c.parent.trace_id != remote.parent.trace_id) =>
        {
            Some(remote)
        }
        _ => current,
    };
    let (mut span, context) = tracer.start(
        "asap.handler.execute",
        spans::Kind::Internal,
        parent.as_ref(),
    );
    if span.is_recording() {
        span.set_str("asap.payload_type", &envelope.payload_type);
        span.set_str("asap.agent.urn", agent);
        span.set_str("asap.envelope.id", &envelope.id);
    }
    (span, context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TaskRequest, TaskResponse, TaskStatus};
    use http::HeaderValue;
    use serde_json::json;

    fn request(trace_id: Option<&str>, span_id: Option<&str>) -> Envelope {
        let mut e = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskRequest::new("c", "echo", json!({})),
        );
        e.trace_id = trace_id.map(str::to_owned);
        if let Some(span) = span_id {
            e.extensions = json!({"span_id": span}).as_object().cloned();
        }
        e
    }

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = traceparent {
            h.insert("traceparent", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn the_five_captured_combinations() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        // 1. Nothing: a new trace, injected, trace_id filled.
        let span = ServerSpan::for_request(&request(None, None), &headers(None)).unwrap();
        let mut response = Envelope::new(
            "urn:asap:agent:b",
            "urn:asap:agent:a",
            TaskResponse::new("t", TaskStatus::Completed),
        );
        span.inject(&mut response);
        assert_eq!(response.trace_id.as_deref(), Some(span.trace_id.as_str()));
        assert_eq!(
            response.extensions.as_ref().unwrap()["span_id"]
                .as_str()
                .unwrap()
                .len(),
            16
        );
        // 2. A remote parent in the envelope: nothing injected.
        assert!(
            ServerSpan::for_request(
                &request(Some(trace), Some("b7ad6b7169203331")),
                &headers(None)
            )
            .is_none()
        );
        // 3. A free-form trace_id is kept; the span's id goes into extensions only.
        let span =
            ServerSpan::for_request(&request(Some("trace-01"), None), &headers(None)).unwrap();
        let mut response = Envelope::new(
            "urn:asap:agent:b",
            "urn:asap:agent:a",
            TaskResponse::new("t", TaskStatus::Completed),
        )
        .with_trace_id("trace-01");
        span.inject(&mut response);
        assert_eq!(response.trace_id.as_deref(), Some("trace-01"));
        // 4. A sampled traceparent: same trace, new span.
        let span = ServerSpan::for_request(
            &request(None, None),
            &headers(Some(&format!("00-{trace}-b7ad6b7169203331-01"))),
        )
        .unwrap();
        assert_eq!(span.trace_id, trace);
        // 4b. Inside a request's context, the context's ids.
        let context = TraceContext::new_root();
        let span = futures_util::FutureExt::now_or_never(crate::trace_context::scope(
            context.clone(),
            async { ServerSpan::for_request(&request(None, None), &headers(None)) },
        ))
        .unwrap()
        .unwrap();
        assert_eq!(span.trace_id, context.parent.trace_id_hex());
        assert_eq!(span.span_id, context.parent.span_id_hex());
        // 5. An unsampled traceparent: nothing injected.
        assert!(
            ServerSpan::for_request(
                &request(None, None),
                &headers(Some(&format!("00-{trace}-b7ad6b7169203331-00")))
            )
            .is_none()
        );
    }
}

#[cfg(test)]
mod envelope_context {
    use super::*;
    use crate::model::TaskRequest;
    use serde_json::json;

    #[test]
    fn only_a_hex_trace_and_span_pair_is_a_remote_parent() {
        let mut e = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskRequest::new("c", "echo", json!({})),
        );
        assert_eq!(envelope_parent(&e), None);
        e.trace_id = Some("0af7651916cd43dd8448eb211c80319c".into());
        assert_eq!(envelope_parent(&e), None);
        e.extensions = json!({"span_id": "b7ad6b7169203331"}).as_object().cloned();
        let parent = envelope_parent(&e).unwrap();
        assert_eq!(
            parent.parent.trace_id_hex(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(parent.parent.span_id_hex(), "b7ad6b7169203331");
        e.trace_id = Some("my-trace-1".into());
        assert_eq!(envelope_parent(&e), None);
    }
}
