//! Families the reference does not have: refusals, WebSocket, webhooks, the calls to
//! the identity provider and the state store.

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::families::{counter, histogram, int_gauge, plain, plain_histogram};
use super::labels::{
    AuthCall, Direction, FetchOutcome, IntrospectionOutcome, RefusalReason, StoreBackend,
    StoreOperation, WebhookOutcome,
};

#[derive(Clone)]
pub(super) struct Operations {
    refusals: IntCounterVec,
    websocket_connections: IntGauge,
    websocket_messages: IntCounterVec,
    webhook_queue_depth: IntGauge,
    webhook_attempts: IntCounterVec,
    webhook_dead_letters: IntCounter,
    webhook_attempt_duration: Histogram,
    jwks_fetches: IntCounterVec,
    introspection_requests: IntCounterVec,
    auth_call_duration: HistogramVec,
    store_duration: HistogramVec,
}

/// Creates the zero series of every value of a closed label set.
fn initialise<T: Copy>(family: &IntCounterVec, values: &[T], name: fn(T) -> &'static str) {
    for &value in values {
        family.with_label_values(&[name(value)]);
    }
}

impl Operations {
    pub(super) fn new(r: &Registry) -> Self {
        let families = Self {
            refusals: counter(
                r,
                "asap_refusals_total",
                "Requests and connections refused before or instead of their handler, by reason",
                &["reason"],
            ),
            websocket_connections: int_gauge(
                r,
                "asap_websocket_connections",
                "Open WebSocket connections",
            ),
            websocket_messages: counter(
                r,
                "asap_websocket_messages_total",
                "WebSocket text frames received (in) and sent (out)",
                &["direction"],
            ),
            webhook_queue_depth: int_gauge(
                r,
                "asap_webhook_queue_depth",
                "Webhook deliveries waiting or in flight",
            ),
            webhook_attempts: counter(
                r,
                "asap_webhook_attempts_total",
                "Webhook delivery attempts, by outcome",
                &["outcome"],
            ),
            webhook_dead_letters: plain(
                r,
                "asap_webhook_dead_letters_total",
                "Webhook deliveries moved to the dead letters",
            ),
            webhook_attempt_duration: plain_histogram(
                r,
                "asap_webhook_attempt_duration_seconds",
                "Webhook delivery attempt duration in seconds",
            ),
            jwks_fetches: counter(
                r,
                "asap_jwks_fetches_total",
                "JWKS fetches from the identity provider, by outcome",
                &["outcome"],
            ),
            introspection_requests: counter(
                r,
                "asap_introspection_requests_total",
                "Token introspection requests, by outcome",
                &["outcome"],
            ),
            auth_call_duration: histogram(
                r,
                "asap_auth_call_duration_seconds",
                "Duration of calls to the identity provider in seconds",
                &["call"],
            ),
            store_duration: histogram(
                r,
                "asap_store_operation_duration_seconds",
                "State store operation duration in seconds",
                &["backend", "operation"],
            ),
        };
        initialise(
            &families.refusals,
            RefusalReason::ALL,
            RefusalReason::as_str,
        );
        initialise(
            &families.websocket_messages,
            Direction::ALL,
            Direction::as_str,
        );
        initialise(
            &families.webhook_attempts,
            WebhookOutcome::ALL,
            WebhookOutcome::as_str,
        );
        initialise(
            &families.jwks_fetches,
            FetchOutcome::ALL,
            FetchOutcome::as_str,
        );
        initialise(
            &families.introspection_requests,
            IntrospectionOutcome::ALL,
            IntrospectionOutcome::as_str,
        );
        for call in AuthCall::ALL {
            families
                .auth_call_duration
                .with_label_values(&[call.as_str()]);
        }
        families
    }

    pub(super) fn refusal(&self, reason: RefusalReason) {
        self.refusals.with_label_values(&[reason.as_str()]).inc();
    }

    pub(super) fn websocket_opened(&self) {
        self.websocket_connections.inc();
    }

    pub(super) fn websocket_closed(&self) {
        self.websocket_connections.dec();
    }

    pub(super) fn websocket_message(&self, direction: Direction) {
        self.websocket_messages
            .with_label_values(&[direction.as_str()])
            .inc();
    }

    pub(super) fn webhook_queue_depth(&self, depth: u64) {
        self.webhook_queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub(super) fn webhook_attempt(&self, outcome: WebhookOutcome) {
        self.webhook_attempts
            .with_label_values(&[outcome.as_str()])
            .inc();
        if matches!(
            outcome,
            WebhookOutcome::DeadLetter | WebhookOutcome::Blocked
        ) {
            self.webhook_dead_letters.inc();
        }
    }

    pub(super) fn webhook_attempt_duration(&self, seconds: f64) {
        self.webhook_attempt_duration.observe(seconds);
    }

    pub(super) fn jwks_fetch(&self, outcome: FetchOutcome, seconds: f64) {
        self.jwks_fetches
            .with_label_values(&[outcome.as_str()])
            .inc();
        self.auth_call(AuthCall::Jwks, seconds);
    }

    pub(super) fn introspection(&self, outcome: IntrospectionOutcome, seconds: f64) {
        self.introspection_requests
            .with_label_values(&[outcome.as_str()])
            .inc();
        self.auth_call(AuthCall::Introspection, seconds);
    }

    fn auth_call(&self, call: AuthCall, seconds: f64) {
        self.auth_call_duration
            .with_label_values(&[call.as_str()])
            .observe(seconds);
    }

    pub(super) fn store_series(&self, backend: StoreBackend) {
        for operation in StoreOperation::ALL {
            self.store_duration
                .with_label_values(&[backend.as_str(), operation.as_str()]);
        }
    }

    pub(super) fn store_operation(
        &self,
        backend: StoreBackend,
        operation: StoreOperation,
        seconds: f64,
    ) {
        self.store_duration
            .with_label_values(&[backend.as_str(), operation.as_str()])
            .observe(seconds);
    }
}
