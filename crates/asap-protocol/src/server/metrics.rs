//! Prometheus metrics of the server (wire spec section 9.11), with the reference's
//! metric and label names, correct cumulative histograms and the classic text format.

use std::time::Instant;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// Histogram buckets in seconds, as the reference declares them.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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

/// The server's metrics, in a registry of their own.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    started: Instant,
    requests: IntCounterVec,
    requests_success: IntCounterVec,
    requests_error: IntCounterVec,
    thread_pool_exhausted: IntCounter,
    handler_executions: IntCounterVec,
    handler_errors: IntCounterVec,
    parse_errors: IntCounter,
    auth_failures: IntCounter,
    validation_errors: IntCounterVec,
    invalid_timestamp: IntCounter,
    invalid_nonce: IntCounter,
    sender_mismatch: IntCounter,
    request_duration: HistogramVec,
    handler_duration: HistogramVec,
    uptime: Gauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn plain(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        labels,
    )
    .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let r = Registry::new();
        let uptime = Gauge::new("asap_process_uptime_seconds", "Process uptime in seconds")
            .expect("valid metric");
        r.register(Box::new(uptime.clone())).expect("unique metric");
        Self {
            requests: counter(
                &r,
                "asap_requests_total",
                "Total number of ASAP requests received",
                &["payload_type", "status"],
            ),
            requests_success: counter(
                &r,
                "asap_requests_success_total",
                "Total number of successful ASAP requests",
                &["payload_type"],
            ),
            requests_error: counter(
                &r,
                "asap_requests_error_total",
                "Total number of failed ASAP requests",
                &["error_type", "payload_type"],
            ),
            thread_pool_exhausted: plain(
                &r,
                "asap_thread_pool_exhausted_total",
                "Total number of thread pool exhaustion events",
            ),
            handler_executions: counter(
                &r,
                "asap_handler_executions_total",
                "Total number of handler executions",
                &["payload_type"],
            ),
            handler_errors: counter(
                &r,
                "asap_handler_errors_total",
                "Total number of handler execution failures",
                &["payload_type"],
            ),
            parse_errors: plain(
                &r,
                "asap_parse_errors_total",
                "Total number of JSON-RPC parse errors",
            ),
            auth_failures: plain(
                &r,
                "asap_auth_failures_total",
                "Total number of authentication failures",
            ),
            validation_errors: counter(
                &r,
                "asap_validation_errors_total",
                "Total number of envelope validation errors",
                &["reason"],
            ),
            invalid_timestamp: plain(
                &r,
                "asap_invalid_timestamp_total",
                "Total number of invalid timestamp rejections",
            ),
            invalid_nonce: plain(
                &r,
                "asap_invalid_nonce_total",
                "Total number of invalid nonce rejections",
            ),
            sender_mismatch: plain(
                &r,
                "asap_sender_mismatch_total",
                "Total number of sender identity mismatches",
            ),
            request_duration: histogram(
                &r,
                "asap_request_duration_seconds",
                "Request processing duration in seconds",
                &["payload_type", "status"],
            ),
            handler_duration: histogram(
                &r,
                "asap_handler_duration_seconds",
                "Handler execution duration in seconds",
                &["payload_type"],
            ),
            uptime,
            registry: r,
            started: Instant::now(),
        }
    }

    /// Records a successful request.
    pub fn success(&self, payload_type: &str, seconds: f64) {
        self.requests
            .with_label_values(&[payload_type, "success"])
            .inc();
        self.requests_success
            .with_label_values(&[payload_type])
            .inc();
        self.request_duration
            .with_label_values(&[payload_type, "success"])
            .observe(seconds);
    }

    /// Records a failed request, with the counters specific to its kind.
    pub fn error(&self, payload_type: &str, error: ErrorType, seconds: f64) {
        self.requests
            .with_label_values(&[payload_type, "error"])
            .inc();
        self.requests_error
            .with_label_values(&[error.as_str(), payload_type])
            .inc();
        self.request_duration
            .with_label_values(&[payload_type, "error"])
            .observe(seconds);
        match error {
            ErrorType::ParseError => self.parse_errors.inc(),
            ErrorType::AuthFailed => self.auth_failures.inc(),
            ErrorType::InvalidTimestamp => self.invalid_timestamp.inc(),
            ErrorType::InvalidNonce => self.invalid_nonce.inc(),
            ErrorType::SenderMismatch => self.sender_mismatch.inc(),
            ErrorType::ThreadPoolExhausted => self.thread_pool_exhausted.inc(),
            ErrorType::MissingEnvelope | ErrorType::InvalidEnvelope | ErrorType::InvalidParams => {
                let reason = error.as_str();
                self.validation_errors.with_label_values(&[reason]).inc();
            }
            ErrorType::InvalidRequest
            | ErrorType::HandlerNotFound
            | ErrorType::InternalError
            | ErrorType::DependencyUnavailable => {}
        }
    }

    /// Records one handler run.
    pub fn handler(&self, payload_type: &str, seconds: f64, failed: bool) {
        self.handler_executions
            .with_label_values(&[payload_type])
            .inc();
        self.handler_duration
            .with_label_values(&[payload_type])
            .observe(seconds);
        if failed {
            self.handler_errors.with_label_values(&[payload_type]).inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.uptime
            .set((self.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
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
