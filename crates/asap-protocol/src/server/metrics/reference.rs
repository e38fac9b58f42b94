//! The reference's families (`asap/observability/metrics.py:MetricsCollector`), with its
//! names, help texts, labels and buckets.

use prometheus::{HistogramVec, IntCounter, IntCounterVec, Registry};

use super::ErrorType;
use super::families::{counter, histogram, plain};
use super::labels::SendErrorReason;
use crate::model::TaskStatus;
use crate::model::state_machine::can_transition;

/// The reference's families but its uptime gauge.
#[derive(Clone)]
pub(super) struct Reference {
    requests: IntCounterVec,
    requests_success: IntCounterVec,
    requests_error: IntCounterVec,
    thread_pool_exhausted: IntCounter,
    handler_executions: IntCounterVec,
    handler_errors: IntCounterVec,
    state_transitions: IntCounterVec,
    send: IntCounterVec,
    send_errors: IntCounterVec,
    retries: IntCounter,
    parse_errors: IntCounter,
    auth_failures: IntCounter,
    validation_errors: IntCounterVec,
    invalid_timestamp: IntCounter,
    invalid_nonce: IntCounter,
    sender_mismatch: IntCounter,
    request_duration: HistogramVec,
    handler_duration: HistogramVec,
    send_duration: HistogramVec,
}

const STATUSES: [&str; 2] = ["success", "error"];

impl Reference {
    pub(super) fn new(r: &Registry) -> Self {
        let families = Self {
            requests: counter(
                r,
                "asap_requests_total",
                "Total number of ASAP requests received",
                &["payload_type", "status"],
            ),
            requests_success: counter(
                r,
                "asap_requests_success_total",
                "Total number of successful ASAP requests",
                &["payload_type"],
            ),
            requests_error: counter(
                r,
                "asap_requests_error_total",
                "Total number of failed ASAP requests",
                &["error_type", "payload_type"],
            ),
            thread_pool_exhausted: plain(
                r,
                "asap_thread_pool_exhausted_total",
                "Total number of thread pool exhaustion events",
            ),
            handler_executions: counter(
                r,
                "asap_handler_executions_total",
                "Total number of handler executions",
                &["payload_type"],
            ),
            handler_errors: counter(
                r,
                "asap_handler_errors_total",
                "Total number of handler execution failures",
                &["payload_type"],
            ),
            state_transitions: counter(
                r,
                "asap_state_transitions_total",
                "Total number of state machine transitions",
                &["from_status", "to_status"],
            ),
            send: counter(
                r,
                "asap_transport_send_total",
                "Total number of transport send attempts",
                &["status"],
            ),
            send_errors: counter(
                r,
                "asap_transport_send_errors_total",
                "Total number of transport send errors",
                &["reason"],
            ),
            retries: plain(
                r,
                "asap_transport_retries_total",
                "Total number of transport retries",
            ),
            parse_errors: plain(
                r,
                "asap_parse_errors_total",
                "Total number of JSON-RPC parse errors",
            ),
            auth_failures: plain(
                r,
                "asap_auth_failures_total",
                "Total number of authentication failures",
            ),
            validation_errors: counter(
                r,
                "asap_validation_errors_total",
                "Total number of envelope validation errors",
                &["reason"],
            ),
            invalid_timestamp: plain(
                r,
                "asap_invalid_timestamp_total",
                "Total number of invalid timestamp rejections",
            ),
            invalid_nonce: plain(
                r,
                "asap_invalid_nonce_total",
                "Total number of invalid nonce rejections",
            ),
            sender_mismatch: plain(
                r,
                "asap_sender_mismatch_total",
                "Total number of sender identity mismatches",
            ),
            request_duration: histogram(
                r,
                "asap_request_duration_seconds",
                "Request processing duration in seconds",
                &["payload_type", "status"],
            ),
            handler_duration: histogram(
                r,
                "asap_handler_duration_seconds",
                "Handler execution duration in seconds",
                &["payload_type"],
            ),
            send_duration: histogram(
                r,
                "asap_transport_send_duration_seconds",
                "Transport send duration in seconds",
                &["status"],
            ),
        };
        families.initialise();
        families
    }

    /// Creates zero series so that every family prints from the start (the reference
    /// prints an unlabelled `name 0` for a family without series): `payload_type`
    /// `other`, both statuses, the validation reasons, every send error reason and
    /// every transition the state machine allows.
    fn initialise(&self) {
        for status in STATUSES {
            self.requests.with_label_values(&["other", status]);
            self.send.with_label_values(&[status]);
            self.send_duration.with_label_values(&[status]);
        }
        self.request_duration.with_label_values(&["other", "error"]);
        self.requests_success.with_label_values(&["other"]);
        self.requests_error
            .with_label_values(&[ErrorType::ParseError.as_str(), "other"]);
        self.handler_executions.with_label_values(&["other"]);
        self.handler_errors.with_label_values(&["other"]);
        self.handler_duration.with_label_values(&["other"]);
        for reason in [
            ErrorType::InvalidEnvelope,
            ErrorType::MissingEnvelope,
            ErrorType::InvalidParams,
        ] {
            self.validation_errors.with_label_values(&[reason.as_str()]);
        }
        for reason in SendErrorReason::ALL {
            self.send_errors.with_label_values(&[reason.as_str()]);
        }
        for &from in TaskStatus::ALL {
            for &to in TaskStatus::ALL {
                if can_transition(from, to) {
                    self.state_transitions
                        .with_label_values(&[from.as_str(), to.as_str()]);
                }
            }
        }
    }

    /// Creates the zero series of a registered payload type's success and handler
    /// families.
    pub(super) fn payload_type(&self, payload_type: &str) {
        self.requests.with_label_values(&[payload_type, "success"]);
        self.requests_success.with_label_values(&[payload_type]);
        self.request_duration
            .with_label_values(&[payload_type, "success"]);
        self.handler_executions.with_label_values(&[payload_type]);
        self.handler_errors.with_label_values(&[payload_type]);
        self.handler_duration.with_label_values(&[payload_type]);
    }

    pub(super) fn success(&self, payload_type: &str, seconds: f64) {
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

    pub(super) fn error(&self, payload_type: &str, error: ErrorType, seconds: f64) {
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

    pub(super) fn handler(&self, payload_type: &str, seconds: f64, failed: bool) {
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

    pub(super) fn state_transition(&self, from: TaskStatus, to: TaskStatus) {
        self.state_transitions
            .with_label_values(&[from.as_str(), to.as_str()])
            .inc();
    }

    pub(super) fn send(&self, success: bool, seconds: f64) {
        let status = if success { "success" } else { "error" };
        self.send.with_label_values(&[status]).inc();
        self.send_duration
            .with_label_values(&[status])
            .observe(seconds);
    }

    pub(super) fn send_error(&self, reason: SendErrorReason) {
        self.send_errors.with_label_values(&[reason.as_str()]).inc();
    }

    pub(super) fn retry(&self) {
        self.retries.inc();
    }
}
