//! Webhook delivery through the durable queue, against a local receiver that fails on
//! command: signatures checked against an HMAC computed independently here, the
//! backoff schedule, no retry on 4xx, 429 with `Retry-After`, dead letters and replay,
//! the per-URL rate limit, bounded concurrency, and a name that rebinds to loopback;
//! every test of the queue runs on SQLite and on PostgreSQL.

mod webhook_support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asap_protocol::webhook::{Resolver, UrlPolicy, Webhook, sign, verify, verify_timestamped};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use webhook_support::{Backend, Database, Names, Receiver, config, header, start_queue};

/// HMAC-SHA256 written out from RFC 2104, independent of the `hmac` crate.
fn reference_hmac(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x36)
        .chain(message.iter().copied())
        .collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = block
        .iter()
        .map(|b| b ^ 0x5c)
        .chain(inner.iter().copied())
        .collect();
    format!("sha256={}", hex::encode(Sha256::digest(&outer)))
}

#[test]
fn signatures_match_an_independent_hmac() {
    let body = br#"{"data":{"a":"h\u00e9llo"},"event":"task.completed"}"#;
    for secret in [&b"test-webhook-secret"[..], b"", &[7u8; 100]] {
        let header = sign(secret, body);
        assert_eq!(header, reference_hmac(secret, body));
        assert!(verify(secret, body, &header));
    }
    let header = sign(b"k", body);
    assert!(!verify(b"other", body, &header));
    assert!(!verify(b"k", b"{}", &header));
    assert!(
        !verify(
            b"k",
            body,
            &header.to_uppercase().replace("SHA256=", "sha256=")
        ),
        "upper-case hex fails, as in the reference"
    );
    assert!(!verify(b"k", body, header.trim_start_matches("sha256=")));
    assert!(!verify(b"k", body, "sha256=zz"));
    let now = 1_900_000_000;
    let stamped = reference_hmac(
        b"k",
        format!("{now}.d-1.")
            .as_bytes()
            .iter()
            .chain(body)
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
    );
    assert!(verify_timestamped(
        b"k",
        now,
        "d-1",
        body,
        &stamped,
        now + 60,
        Duration::from_secs(300)
    ));
    assert!(
        !verify_timestamped(
            b"k",
            now,
            "d-1",
            body,
            &stamped,
            now + 600,
            Duration::from_secs(300)
        ),
        "stale"
    );
    assert!(
        !verify_timestamped(
            b"k",
            now,
            "d-2",
            body,
            &stamped,
            now,
            Duration::from_secs(300)
        ),
        "another delivery"
    );
}

async fn a_signed_delivery_carries_the_canonical_body_and_verifiable_headers(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    let (queue, _task) = start_queue(&db, config()).await;
    let payload =
        json!({"event": "task.completed", "data": {"z": 1, "a": "héllo ✓", "n": [3, 1, 2]}});
    let mut webhook = Webhook::signed(receiver.url("hooks/asap"), payload, "test-webhook-secret");
    webhook.headers.push(("X-Event-Id".into(), "evt-1".into()));
    let id = queue.enqueue(webhook).await.unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(
        String::from_utf8(r.body.clone()).unwrap(),
        r#"{"data":{"a":"h\u00e9llo \u2713","n":[3,1,2],"z":1},"event":"task.completed"}"#
    );
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(
        header(r, "x-asap-signature"),
        reference_hmac(b"test-webhook-secret", &r.body)
    );
    assert_eq!(header(r, "x-asap-delivery-id"), id);
    assert_eq!(header(r, "x-event-id"), "evt-1");
    let timestamp: i64 = header(r, "x-asap-timestamp").parse().unwrap();
    assert!(verify_timestamped(
        b"test-webhook-secret",
        timestamp,
        &id,
        &r.body,
        &header(r, "x-asap-signature-timestamped"),
        timestamp + 5,
        Duration::from_secs(300),
    ));
}

async fn retries_follow_the_backoff_schedule_then_succeed(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    receiver.script(&[(500, None), (502, None), (503, None)]);
    let (queue, _task) = start_queue(&db, config()).await;
    let id = queue
        .enqueue(Webhook::signed(receiver.url("r"), json!({"n": 1}), "s"))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let seen = receiver.seen();
    assert_eq!(seen.len(), 4);
    for r in &seen {
        assert_eq!(header(r, "x-asap-delivery-id"), id, "stable across retries");
    }
    let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].at - w[0].at).collect();
    for (gap, expected) in gaps.iter().zip([100u64, 200, 400]) {
        let expected = Duration::from_millis(expected);
        assert!(
            *gap >= expected.mul_f64(0.9)
                && *gap <= expected.mul_f64(1.0) + Duration::from_millis(250),
            "gaps {gaps:?}"
        );
    }
    assert!(queue.dead_letters().await.unwrap().is_empty());
}

async fn a_4xx_is_not_retried_and_429_honours_retry_after(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    receiver.script(&[(404, None)]);
    let (queue, _task) = start_queue(&db, config()).await;
    let refused = queue
        .enqueue(Webhook::signed(receiver.url("gone"), json!({"n": 1}), "s"))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    assert_eq!(receiver.seen().len(), 1);
    let dead = queue.dead_letters().await.unwrap();
    assert_eq!(
        (dead[0].id.as_str(), dead[0].attempts),
        (refused.as_str(), 1)
    );
    assert!(
        dead[0].last_error.contains("HTTP 404"),
        "{}",
        dead[0].last_error
    );

    receiver.script(&[(429, Some(1))]);
    queue
        .enqueue(Webhook::signed(receiver.url("busy"), json!({"n": 2}), "s"))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    let gap = seen[2].at - seen[1].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 waited {gap:?}, not the 100 ms backoff"
    );
}

async fn after_the_last_retry_a_dead_letter_then_replay(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    receiver.script(&[(503, None), (503, None), (503, None)]);
    let (queue, _task) = start_queue(&db, {
        let mut value = config();
        value.max_retries = 2;
        value
    })
    .await;
    let buried = Arc::new(Mutex::new(Vec::new()));
    let hook = buried.clone();
    queue.on_dead_letter(move |letter| hook.lock().unwrap().push(letter.clone()));
    let id = queue
        .enqueue(Webhook::signed(receiver.url("down"), json!({"n": 1}), "s"))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    assert_eq!(receiver.seen().len(), 3, "1 + max_retries attempts");
    let letters = queue.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].id.as_str(), letters[0].attempts),
        (id.as_str(), 3)
    );
    assert!(letters[0].last_error.contains("HTTP 503"));
    assert_eq!(buried.lock().unwrap().clone(), letters, "the hook saw it");
    // The receiver is back: replaying delivers it, under the same delivery id.
    queue.replay(&id).await.unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let seen = receiver.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(header(&seen[3], "x-asap-delivery-id"), id);
    assert!(queue.dead_letters().await.unwrap().is_empty());
    assert!(queue.replay("no-such-id").await.is_err());
}

async fn the_per_url_rate_limit_spreads_deliveries_and_concurrency_is_bounded(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    let (queue, _task) = start_queue(&db, {
        let mut value = config();
        value.per_url_rate = 5;
        value
    })
    .await;
    let started = Instant::now();
    for n in 0..15 {
        queue
            .enqueue(Webhook::signed(
                receiver.url("limited"),
                json!({"n": n}),
                "s",
            ))
            .await
            .unwrap();
    }
    assert!(queue.drained(Duration::from_secs(20)).await.unwrap());
    assert_eq!(receiver.seen().len(), 15);
    // A burst of 5, then 5 per second: the last one no sooner than 2 s in.
    assert!(
        started.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
    // The next queue is the only worker on the database.
    _task.abort();

    let slow = Receiver::start().await;
    *slow.state.delay.lock().unwrap() = Duration::from_millis(150);
    let (bounded, _task) = start_queue(&db, {
        let mut value = config();
        value.max_in_flight = 2;
        value
    })
    .await;
    for n in 0..8 {
        bounded
            .enqueue(Webhook::signed(slow.url("slow"), json!({"n": n}), "s"))
            .await
            .unwrap();
    }
    assert!(bounded.drained(Duration::from_secs(20)).await.unwrap());
    assert_eq!(slow.seen().len(), 8);
    assert_eq!(slow.state.most_active.load(Ordering::SeqCst), 2);
}

async fn a_name_that_rebinds_to_loopback_is_caught_at_delivery(backend: Backend) {
    let db = Database::start(backend);
    let (queue, _task) = start_queue(&db, {
        let mut value = config();
        value.// http allowed = // http allowed; value.nothing private allowed.
        policy = UrlPolicy::development([]);
        value
    })
    .await;
    // Registration sees the public answer and accepts the URL ...
    let id = queue
        .enqueue(Webhook::signed("http://rebind.test/hook", json!({}), "s"))
        .await
        .unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    // ... the delivery's own resolution gets loopback, is refused, and is not retried.
    let letters = queue.dead_letters().await.unwrap();
    assert_eq!(
        (letters[0].id.as_str(), letters[0].attempts),
        (id.as_str(), 1)
    );
    assert!(
        letters[0].last_error.contains("resolves to 127.0.0.1"),
        "{}",
        letters[0].last_error
    );
    // And refused URLs never enter the queue.
    let refused = queue
        .enqueue(Webhook::signed("http://10.0.0.1/", Value::Null, "s"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("private (RFC 1918)"),
        "{refused}"
    );
}

async fn task_status_changes_reach_registered_callbacks(backend: Backend) {
    use asap_protocol::model::{Envelope, Manifest, Skill, TaskRequest};
    use asap_protocol::server::{HandlerRegistry, Server, ServerConfig, default_skills};
    use asap_protocol::webhook::TaskWebhooks;

    let db = Database::start(backend);

    let receiver = Receiver::start().await;
    let store = db.state_store().await;
    let queue = db.queue(config()).await;
    let hooks = Arc::new(TaskWebhooks::new(queue.clone()));
    let blocked = hooks
        .subscribe("http://169.254.169.254/", "s")
        .await
        .unwrap_err();
    assert!(blocked.to_string().contains("link-local"), "{blocked}");
    let subscription = hooks
        .subscribe(&receiver.url("tasks"), "task-secret")
        .await
        .unwrap();
    assert_eq!(hooks.urls(), [receiver.url("tasks")]);
    let running = queue.clone();
    tokio::spawn(async move { running.run(std::future::pending()).await });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut manifest = Manifest::new(
        "urn:asap:agent:hooked",
        "Hooked",
        "1.0.0",
        "webhooks",
        format!("{base}/asap"),
    );
    manifest
        .capabilities
        .skills
        .push(Skill::new("echo", "Echo"));
    let mut server_config = ServerConfig::default();
    server_config.rate_limits.clear();
    let server = Server::builder()
        .manifest(manifest)
        .config(server_config)
        .store(store)
        .registry(HandlerRegistry::agent(default_skills()))
        .task_events(hooks.clone())
        .build()
        .unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    let client = asap_protocol::client::Client::builder().build().unwrap();
    let request = Envelope::new(
        "urn:asap:agent:client",
        "urn:asap:agent:hooked",
        TaskRequest::new("c1", "echo", json!({"n": 1})),
    );
    let reply = client.send(&base, &request).await.unwrap();
    let task_id = reply.payload["task_id"].as_str().unwrap().to_owned();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let seen = receiver.seen();
    let events: Vec<(String, String)> = seen
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["task_id"], task_id);
            assert!(verify(
                b"task-secret",
                &r.body,
                &header(r, "x-asap-signature")
            ));
            (
                header(r, "x-asap-event"),
                body["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Exactly these, once each (delivered concurrently, so in any order).
    let mut events = events;
    events.sort();
    let mut expected: Vec<(String, String)> = [
        ("task.completed", "completed"),
        ("task.status_changed", "completed"),
        ("task.status_changed", "submitted"),
        ("task.status_changed", "working"),
    ]
    .iter()
    .map(|(e, s)| ((*e).to_owned(), (*s).to_owned()))
    .collect();
    expected.sort();
    assert_eq!(events, expected);
    assert!(hooks.unsubscribe(&subscription));
    assert!(!hooks.unsubscribe(&subscription));
}

#[tokio::test]
async fn deliver_now_reports_the_outcome_of_its_attempts() {
    use asap_protocol::webhook::deliver_now;
    let names = || -> Arc<dyn Resolver> {
        Arc::new(Names {
            rebind_calls: AtomicUsize::new(0),
        })
    };
    let receiver = Receiver::start().await;
    receiver.script(&[(503, None), (503, None)]);
    let report = deliver_now(
        Webhook::signed(receiver.url("now"), json!({"n": 1}), "s"),
        &config(),
        names(),
    )
    .await
    .unwrap();
    assert!(report.delivered);
    assert_eq!(
        (report.status_code, report.attempts, report.error),
        (200, 3, None)
    );
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(
        header(&seen[0], "x-asap-signature"),
        reference_hmac(b"s", &seen[0].body)
    );
    assert_eq!(
        header(&seen[0], "x-asap-delivery-id"),
        header(&seen[2], "x-asap-delivery-id"),
        "one delivery id across its attempts"
    );

    receiver.script(&[(400, None)]);
    let refused = deliver_now(
        Webhook::signed(receiver.url("bad"), json!({}), "s"),
        &config(),
        names(),
    )
    .await
    .unwrap();
    assert!(!refused.delivered);
    assert_eq!((refused.status_code, refused.attempts), (400, 1));
    assert!(refused.error.unwrap().contains("not retried"));

    receiver.script(&[(502, None), (502, None)]);
    let exhausted = deliver_now(
        Webhook::signed(receiver.url("down"), json!({}), "s"),
        &{
            let mut value = config();
            value.max_retries = 1;
            value
        },
        names(),
    )
    .await
    .unwrap();
    assert!(!exhausted.delivered);
    assert_eq!((exhausted.status_code, exhausted.attempts), (502, 2));

    let blocked = deliver_now(
        Webhook::signed("http://10.0.0.1/", json!({}), "s"),
        &config(),
        names(),
    )
    .await
    .unwrap_err();
    assert!(
        blocked.to_string().contains("private (RFC 1918)"),
        "{blocked}"
    );

    // A redirect is an answer, never followed, and retried like any non-2xx non-4xx.
    receiver.script(&[(302, None)]);
    let before = receiver.seen().len();
    let redirected = deliver_now(
        Webhook::signed(receiver.url("moved"), json!({}), "s"),
        &{
            let mut value = config();
            value.max_retries = 0;
            value
        },
        names(),
    )
    .await
    .unwrap();
    assert_eq!((redirected.delivered, redirected.status_code), (false, 302));
    assert_eq!(receiver.seen().len(), before + 1);

    // No answer at all (nothing listens): retried, then given up with status 0.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = deliver_now(
        Webhook::signed(format!("http://receiver.test:{closed}/"), json!({}), "s"),
        &{
            let mut value = config();
            value.max_retries = 1;
            value
        },
        names(),
    )
    .await
    .unwrap();
    assert_eq!(
        (refused.delivered, refused.status_code, refused.attempts),
        (false, 0, 2)
    );
    assert!(refused.error.is_some());
}

/// Counts lookups, resolving as [`Names`] does.
struct Counting(Names, AtomicUsize);

#[async_trait::async_trait]
impl Resolver for Counting {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.resolve(host).await
    }
}

async fn task_events_are_queued_without_a_lookup_in_the_request_path(backend: Backend) {
    use asap_protocol::model::{Task, TaskStatus};
    use asap_protocol::server::TaskEvents;
    use asap_protocol::webhook::TaskWebhooks;

    let db = Database::start(backend);

    let resolver = Arc::new(Counting(
        Names {
            rebind_calls: AtomicUsize::new(0),
        },
        AtomicUsize::new(0),
    ));
    // Not running: nothing is delivered, so every lookup below is the caller's.
    let queue = db.queue_with(config(), resolver.clone()).await;
    let hooks = TaskWebhooks::new(queue.clone());
    hooks
        .subscribe("http://receiver.test/tasks", "s")
        .await
        .unwrap();
    assert_eq!(
        resolver.1.load(Ordering::SeqCst),
        1,
        "checked when subscribed"
    );
    let mut task = Task::new("t-1", "c-1");
    task.transition(TaskStatus::Working).unwrap();
    hooks.task_changed(&task).await;
    task.transition(TaskStatus::Completed).unwrap();
    hooks.task_changed(&task).await;
    assert_eq!(
        queue.pending().await.unwrap(),
        3,
        "working, completed, task.completed"
    );
    assert_eq!(resolver.1.load(Ordering::SeqCst), 1, "no lookup per event");
}

on_every_backend!(
    a_signed_delivery_carries_the_canonical_body_and_verifiable_headers,
    retries_follow_the_backoff_schedule_then_succeed,
    a_4xx_is_not_retried_and_429_honours_retry_after,
    after_the_last_retry_a_dead_letter_then_replay,
    the_per_url_rate_limit_spreads_deliveries_and_concurrency_is_bounded,
    a_name_that_rebinds_to_loopback_is_caught_at_delivery,
    task_status_changes_reach_registered_callbacks,
    task_events_are_queued_without_a_lookup_in_the_request_path
);
