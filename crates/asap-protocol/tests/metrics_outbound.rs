//! The families of the calls the agent makes: JWKS fetches and token introspection
//! against the in-process identity provider, and webhook attempts through the durable
//! queue against a local receiver.

mod webhook_support;

use std::time::Duration;

use asap_protocol::auth::{JwksCache, TokenIntrospector};
use asap_protocol::server::Metrics;
use asap_protocol::webhook::Webhook;
use asap_test_support::exposition::value;
use asap_test_support::idp::MockIdp;
use serde_json::json;
use webhook_support::{Backend, Database, Receiver, config, open, start_queue};

#[tokio::test]
async fn jwks_fetches_and_introspections_are_counted_by_outcome() {
    let idp = MockIdp::start();
    let metrics = Metrics::new();
    let keys = JwksCache::new(idp.jwks_uri()).unwrap().metrics(&metrics);
    keys.keys().await.unwrap();
    let dead = JwksCache::new("http://127.0.0.1:9/jwks")
        .unwrap()
        .metrics(&metrics);
    assert!(dead.keys().await.is_err());

    idp.set_opaque(true);
    let introspector =
        TokenIntrospector::new(idp.introspection_url(), "asap-client", "asap-secret")
            .unwrap()
            .metrics(&metrics);
    let opaque = idp.issue("asap-client", "asap:execute");
    assert!(introspector.introspect(&opaque).await.unwrap().is_some());
    assert!(
        introspector
            .introspect("opaque-never-issued")
            .await
            .unwrap()
            .is_none()
    );
    let unreachable = TokenIntrospector::new("http://127.0.0.1:9/introspect", "c", "s")
        .unwrap()
        .metrics(&metrics);
    assert!(unreachable.introspect("tok").await.is_err());

    let text = metrics.render();
    assert_eq!(
        value(&text, r#"asap_jwks_fetches_total{outcome="ok"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"asap_jwks_fetches_total{outcome="error"}"#),
        1.0
    );
    for outcome in ["active", "inactive", "error"] {
        let key = format!("asap_introspection_requests_total{{outcome=\"{outcome}\"}}");
        assert_eq!(value(&text, &key), 1.0, "{key}");
    }
    let calls = |call: &str| {
        value(
            &text,
            &format!("asap_auth_call_duration_seconds_count{{call=\"{call}\"}}"),
        )
    };
    assert_eq!((calls("jwks"), calls("introspection")), (2.0, 3.0));
}

#[tokio::test]
async fn webhook_attempts_are_counted_by_outcome() {
    let db = Database::start(Backend::Sqlite);
    let receiver = Receiver::start().await;
    receiver.script(&[(500, None), (200, None), (404, None)]);
    let (queue, _task) = start_queue(&db, config()).await;
    let metrics = Metrics::new();
    queue.metrics(&metrics);
    // One retried then delivered, one refused (4xx: a dead letter at once).
    let first = Webhook::signed(receiver.url("a"), json!({"n": 1}), "secret");
    queue.enqueue(first).await.unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let second = Webhook::signed(receiver.url("b"), json!({"n": 2}), "secret");
    queue.enqueue(second).await.unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());

    let text = metrics.render();
    let attempts = |outcome: &str| {
        value(
            &text,
            &format!("asap_webhook_attempts_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(attempts("retry"), 1.0);
    assert_eq!(attempts("delivered"), 1.0);
    assert_eq!(attempts("dead_letter"), 1.0);
    assert_eq!(value(&text, "asap_webhook_dead_letters_total"), 1.0);
    assert_eq!(
        value(&text, "asap_webhook_attempt_duration_seconds_count"),
        3.0
    );
}

#[tokio::test]
async fn the_queue_depth_counts_a_delivery_in_flight() {
    let db = Database::start(Backend::Sqlite);
    let receiver = Receiver::start().await;
    let (gate, mut arrivals) = receiver.hold();
    let queue = db.queue(config()).await;
    let metrics = Metrics::new();
    queue.metrics(&metrics);
    let webhook = Webhook::signed(receiver.url("a"), json!({"n": 1}), "secret");
    queue.enqueue(webhook).await.unwrap();
    assert_eq!(value(&metrics.render(), "asap_webhook_queue_depth"), 0.0);
    let running = queue.clone();
    let task = tokio::spawn(async move { running.run(std::future::pending()).await.unwrap() });
    // The pass that claimed the delivery read the depth before sending it.
    arrivals.recv().await.unwrap();
    assert_eq!(value(&metrics.render(), "asap_webhook_queue_depth"), 1.0);
    open(&gate);
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    task.abort();
}
