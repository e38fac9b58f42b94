//! Prometheus metrics (wire spec section 9.11): the reference's 20 families with its
//! metric and label names (correct cumulative histograms, classic text format), plus
//! refusals, WebSocket, webhooks, identity-provider calls, store latency and process
//! metrics; docs/metrics.md lists them all. Every label value comes from a closed set
//! ([`labels`]), so hostile input cannot grow the number of series.

mod families;
mod labels;
mod operations;
mod reference;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{Encoder, Gauge, Registry, TextEncoder};

pub use labels::{
    AuthCall, Direction, FetchOutcome, IntrospectionOutcome, RefusalReason, SendErrorReason,
    StoreBackend, StoreOperation, WebhookOutcome,
};
use operations::Operations;
use reference::Reference;

/// The content type of [`Metrics::render`].
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why a request failed, as the `error_type` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorType {
    /// -32700.
    ParseError,
    /// -32600 (structure).
    InvalidRequest,
    /// -32602 (params).
    InvalidParams,
    /// -32602 (no envelope).
    MissingEnvelope,
    /// -32602 (bad envelope).
    InvalidEnvelope,
    /// -32600 (authentication).
    AuthFailed,
    /// -32602 (sender).
    SenderMismatch,
    /// -32602 (timestamp window).
    InvalidTimestamp,
    /// -32602 (nonce).
    InvalidNonce,
    /// -32601.
    HandlerNotFound,
    /// HTTP 503.
    ThreadPoolExhausted,
    /// -32603.
    InternalError,
    /// HTTP 503: shared state (Redis) unavailable for a check the request needs.
    DependencyUnavailable,
}

impl ErrorType {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ParseError => "parse_error",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidParams => "invalid_params",
            Self::MissingEnvelope => "missing_envelope",
            Self::InvalidEnvelope => "invalid_envelope",
            Self::AuthFailed => "auth_failed",
            Self::SenderMismatch => "sender_mismatch",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::InvalidNonce => "invalid_nonce",
            Self::HandlerNotFound => "handler_not_found",
            Self::ThreadPoolExhausted => "thread_pool_exhausted",
            Self::InternalError => "internal_error",
            Self::DependencyUnavailable => "dependency_unavailable",
        }
    }
}

/// The metrics of a server (and of the clients, webhook queue and identity-provider
/// clients given it), in one Prometheus registry. Clones share the registry and every
/// family.
///
/// The application can register metrics of its own in [`Metrics::registry`]; give the
/// same `Metrics` to [`ServerBuilder::metrics`](super::ServerBuilder::metrics) and they
/// appear on `/asap/metrics` with the server's.
#[derive(Clone)]
pub struct Metrics {
    // One allocation shared by every clone: a handler context takes a clone per request,
    // and cloning ~40 prometheus handles one by one showed in profiles.
    inner: Arc<Families>,
}

/// Everything a [`Metrics`] records into.
struct Families {
    registry: Registry,
    started: Instant,
    uptime: Gauge,
    reference: Reference,
    operations: Operations,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family, each labelled series of a closed label set
    /// at zero, and (on Linux) the process collector (`process_*`).
    pub fn new() -> Self {
        let registry = Registry::new();
        let reference = Reference::new(&registry);
        let operations = Operations::new(&registry);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        let uptime = families::gauge(
            &registry,
            "asap_process_uptime_seconds",
            "Time since server start",
        );
        Self {
            inner: Arc::new(Families {
                registry,
                started: Instant::now(),
                uptime,
                reference,
                operations,
            }),
        }
    }

    /// The registry every family is in: register the application's own metrics here.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Creates the zero series of the payload types a server has handlers for (its
    /// `payload_type` label values besides `other`).
    pub(crate) fn payload_types<'a>(&self, types: impl IntoIterator<Item = &'a str>) {
        for payload_type in types {
            self.inner.reference.payload_type(payload_type);
        }
    }

    /// Records a successful request.
    pub fn success(&self, payload_type: &str, seconds: f64) {
        self.inner.reference.success(payload_type, seconds);
    }

    /// Records a failed request, with the counters specific to its kind; the kinds that
    /// are refusals (authentication, sender, timestamp, handler slots, shared state) also
    /// count in `asap_refusals_total`.
    pub fn error(&self, payload_type: &str, error: ErrorType, seconds: f64) {
        self.inner.reference.error(payload_type, error, seconds);
        let refusal = match error {
            ErrorType::AuthFailed => RefusalReason::Auth,
            ErrorType::SenderMismatch => RefusalReason::SenderMismatch,
            ErrorType::InvalidTimestamp => RefusalReason::ReplayTimestamp,
            ErrorType::ThreadPoolExhausted => RefusalReason::ThreadPool,
            ErrorType::DependencyUnavailable => RefusalReason::DependencyUnavailable,
            _ => return,
        };
        self.refusal(refusal);
    }

    /// Records one handler run.
    pub fn handler(&self, payload_type: &str, seconds: f64, failed: bool) {
        self.inner.reference.handler(payload_type, seconds, failed);
    }

    /// Records one refusal.
    pub fn refusal(&self, reason: RefusalReason) {
        self.inner.operations.refusal(reason);
    }

    /// Records a task status change.
    pub fn state_transition(&self, from: crate::model::TaskStatus, to: crate::model::TaskStatus) {
        self.inner.reference.state_transition(from, to);
    }

    /// Records one client send (all its attempts) and how long it took.
    pub fn transport_send(&self, success: bool, seconds: f64) {
        self.inner.reference.send(success, seconds);
    }

    /// Records why a client send failed.
    pub fn transport_send_error(&self, reason: SendErrorReason) {
        self.inner.reference.send_error(reason);
    }

    /// Records one client retry.
    pub fn transport_retry(&self) {
        self.inner.reference.retry();
    }

    /// Records a WebSocket connection opened.
    pub fn websocket_opened(&self) {
        self.inner.operations.websocket_opened();
    }

    /// Records a WebSocket connection closed.
    pub fn websocket_closed(&self) {
        self.inner.operations.websocket_closed();
    }

    /// Records one WebSocket text frame.
    pub fn websocket_message(&self, direction: Direction) {
        self.inner.operations.websocket_message(direction);
    }

    /// Sets the webhook deliveries waiting or in flight.
    pub fn webhook_queue_depth(&self, depth: u64) {
        self.inner.operations.webhook_queue_depth(depth);
    }

    /// Records a webhook attempt's outcome (dead letters and blocked ones also count in
    /// `asap_webhook_dead_letters_total`).
    pub fn webhook_attempt(&self, outcome: WebhookOutcome) {
        self.inner.operations.webhook_attempt(outcome);
    }

    /// Records how long a webhook attempt took.
    pub fn webhook_attempt_duration(&self, seconds: f64) {
        self.inner.operations.webhook_attempt_duration(seconds);
    }

    /// Records a JWKS fetch.
    pub fn jwks_fetch(&self, outcome: FetchOutcome, seconds: f64) {
        self.inner.operations.jwks_fetch(outcome, seconds);
    }

    /// Records a token introspection request.
    pub fn introspection(&self, outcome: IntrospectionOutcome, seconds: f64) {
        self.inner.operations.introspection(outcome, seconds);
    }

    /// Creates the zero series of every operation of `backend`.
    pub fn store_backend(&self, backend: StoreBackend) {
        self.inner.operations.store_series(backend);
    }

    /// Records one store operation.
    pub fn store_operation(&self, backend: StoreBackend, operation: StoreOperation, seconds: f64) {
        self.inner
            .operations
            .store_operation(backend, operation, seconds);
    }

    /// The Prometheus text exposition of every metric in the registry.
    pub fn render(&self) -> String {
        self.inner
            .uptime
            .set((self.inner.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.inner.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// The reason of a body refused before parsing, from its status.
pub(crate) fn body_refusal(status: http::StatusCode) -> RefusalReason {
    match status {
        http::StatusCode::PAYLOAD_TOO_LARGE => RefusalReason::BodyTooLarge,
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE => RefusalReason::UnsupportedEncoding,
        http::StatusCode::SERVICE_UNAVAILABLE => RefusalReason::BufferBudget,
        _ => RefusalReason::MalformedBody,
    }
}

/// A response refused for `reason` by a layer without the server's state (origin,
/// version, OAuth2): [`count_refusals`] counts it on the way out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refused(pub(crate) RefusalReason);

/// Marks `response` as refused for `reason`.
pub(crate) fn refused(mut response: Response, reason: RefusalReason) -> Response {
    response.extensions_mut().insert(Refused(reason));
    response
}

/// The outermost layer: counts the responses marked [`Refused`].
pub(crate) async fn count_refusals(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    if let Some(Refused(reason)) = response.extensions().get::<Refused>() {
        metrics.refusal(*reason);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_names_labels_and_cumulative_buckets() {
        let m = Metrics::new();
        m.success("task.request", 0.004);
        m.success("task.request", 0.2);
        m.error("other", ErrorType::ParseError, 0.001);
        m.error("other", ErrorType::InvalidEnvelope, 0.001);
        m.handler("task.request", 0.003, false);
        let text = m.render();
        assert!(text.contains("# HELP asap_requests_total Total number of ASAP requests received\n# TYPE asap_requests_total counter\n"));
        assert!(
            text.contains(r#"asap_requests_total{payload_type="task.request",status="success"} 2"#)
        );
        assert!(text.contains(
            r#"asap_requests_error_total{error_type="parse_error",payload_type="other"} 1"#
        ));
        assert!(text.contains("asap_parse_errors_total 1"));
        assert!(text.contains(r#"asap_validation_errors_total{reason="invalid_envelope"} 1"#));
        assert!(text.contains(r#"asap_request_duration_seconds_bucket{payload_type="task.request",status="success",le="0.005"} 1"#));
        assert!(text.contains(r#"asap_request_duration_seconds_bucket{payload_type="task.request",status="success",le="0.25"} 2"#));
        assert!(text.contains(r#"asap_request_duration_seconds_bucket{payload_type="task.request",status="success",le="+Inf"} 2"#));
        assert!(text.contains("# TYPE asap_process_uptime_seconds gauge"));
    }
}
