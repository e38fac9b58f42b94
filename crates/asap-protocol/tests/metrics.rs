//! The metrics against a real server: one refusal per reason, state transitions, the
//! client's transport families, WebSocket counts, the application's own metrics on the
//! same endpoint, and label cardinality under hostile input.

mod common;

use std::sync::Arc;

use asap_protocol::client::{Client, RetryPolicy};
use asap_protocol::json::JsonObject;
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::model::{Task, TaskStatus};
use asap_protocol::server::{
    HandlerContext, HandlerError, HandlerRegistry, Metrics, RateLimitRule, RefusalReason, Server,
    ServerConfig, Skill, Skills, StaticTokens, default_skills,
};
use asap_protocol::store::WriteBatch;
use asap_test_support::exposition::value;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A server recording into `metrics`, on an ephemeral port; its base URL.
async fn serve(config: ServerConfig, metrics: &Metrics, bearer: bool) -> String {
    serve_skills(config, metrics, bearer, default_skills()).await
}

/// [`serve`] with the agent's task handlers running `skills`.
async fn serve_skills(
    config: ServerConfig,
    metrics: &Metrics,
    bearer: bool,
    skills: Skills,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut manifest = common::manifest(&base);
    let mut builder = Server::builder()
        .config(config)
        .registry(HandlerRegistry::agent(skills))
        .metrics(metrics.clone());
    if bearer {
        manifest.auth = Some(asap_protocol::model::AuthScheme {
            schemes: vec!["bearer".into()],
            oauth2: None,
        });
        let tokens = StaticTokens::new([("good-token", "urn:asap:agent:client")]);
        builder = builder.token_validator(Arc::new(tokens));
    }
    let server = builder.manifest(manifest).build().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    base
}

fn quiet_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config
}

fn refusals(metrics: &Metrics, reason: RefusalReason) -> f64 {
    let key = format!("asap_refusals_total{{reason=\"{}\"}}", reason.as_str());
    value(&metrics.render(), &key)
}

/// A `task.request` to the echo skill with `extensions` and `timestamp` as given.
fn request_with(extensions: Value, timestamp: Option<&str>) -> Value {
    let mut request = common::echo_request(json!({"x": "hi"}));
    let envelope = &mut request["params"]["envelope"];
    envelope["id"] = json!(asap_protocol::model::generate_id());
    envelope["extensions"] = extensions;
    if let Some(t) = timestamp {
        envelope["timestamp"] = json!(t);
    }
    request
}

/// Runs `act`, then requires `reason` to have moved by exactly one.
async fn moves_by_one<F: std::future::Future<Output = ()>>(
    metrics: &Metrics,
    reason: RefusalReason,
    act: F,
) {
    let before = refusals(metrics, reason);
    act.await;
    assert_eq!(
        refusals(metrics, reason) - before,
        1.0,
        "{} did not move by one",
        reason.as_str()
    );
}

#[tokio::test]
async fn every_refusal_reason_starts_at_zero() {
    let text = Metrics::new().render();
    for reason in RefusalReason::ALL {
        let key = format!("asap_refusals_total{{reason=\"{}\"}}", reason.as_str());
        assert_eq!(
            asap_test_support::exposition::series(&text).get(&key),
            Some(&0.0),
            "{key}"
        );
    }
}

#[tokio::test]
async fn each_refusal_counts_once_with_its_reason() {
    let metrics = Metrics::new();
    let mut config = quiet_config();
    config.max_request_size = 4096;
    config.require_nonce = true;
    config.reject_repeated_ids = true;
    config.websocket.max_connections = 0;
    let base = serve(config, &metrics, false).await;

    moves_by_one(&metrics, RefusalReason::BodyTooLarge, async {
        let reply = common::post_raw(&base, vec![b' '; 5000], &[]).await;
        assert_eq!(reply.status, 413);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::UnsupportedEncoding, async {
        let reply = common::post_raw(&base, b"{}".to_vec(), &[("content-encoding", "zstd")]).await;
        assert_eq!(reply.status, 415);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::MalformedBody, async {
        let headers = [("content-encoding", "gzip")];
        let reply = common::post_raw(&base, b"not gzip".to_vec(), &headers).await;
        assert_eq!(reply.status, 400);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::Origin, async {
        let reply =
            common::post_raw(&base, b"{}".to_vec(), &[("origin", "https://evil.example")]).await;
        assert_eq!(reply.status, 403);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::Version, async {
        let reply = common::post_raw(&base, b"{}".to_vec(), &[("asap-version", "9.9")]).await;
        assert_eq!(reply.code(), -32000);
    })
    .await;
    let nonce = json!({"nonce": "n-1"});
    let first = common::post(&base, &request_with(nonce.clone(), None)).await;
    assert!(first.json()["result"].is_object(), "{}", first.text);
    moves_by_one(&metrics, RefusalReason::ReplayNonce, async {
        let reply = common::post(&base, &request_with(nonce, None)).await;
        assert_eq!(reply.code(), -32602);
    })
    .await;
    let mut repeated = request_with(json!({"nonce": "n-2"}), None);
    assert!(common::post(&base, &repeated).await.json()["result"].is_object());
    repeated["params"]["envelope"]["extensions"]["nonce"] = json!("n-3");
    moves_by_one(&metrics, RefusalReason::ReplayId, async {
        assert_eq!(common::post(&base, &repeated).await.code(), -32602);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::ReplayTimestamp, async {
        let old = request_with(json!({"nonce": "n-4"}), Some("2001-01-01T00:00:00Z"));
        assert_eq!(common::post(&base, &old).await.code(), -32602);
    })
    .await;
    moves_by_one(&metrics, RefusalReason::WebSocketLimit, async {
        let url = format!("{}/asap/ws", base.replace("http://", "ws://"));
        assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    })
    .await;
    let text = metrics.render();
    assert_eq!(value(&text, "asap_invalid_nonce_total"), 2.0);
    assert_eq!(value(&text, "asap_invalid_timestamp_total"), 1.0);
}

#[tokio::test]
async fn rate_limit_and_bearer_refusals_count_once() {
    let metrics = Metrics::new();
    let mut config = ServerConfig::default();
    config.rate_limits = RateLimitRule::parse_setting("2/minute").unwrap();
    let base = serve(config, &metrics, false).await;
    let body = common::echo_request(json!({"x": "hi"}));
    common::post(&base, &body).await;
    common::post(&base, &body).await;
    moves_by_one(&metrics, RefusalReason::RateLimit, async {
        assert_eq!(common::post(&base, &body).await.status, 429);
    })
    .await;

    let metrics = Metrics::new();
    let base = serve(quiet_config(), &metrics, true).await;
    moves_by_one(&metrics, RefusalReason::Auth, async {
        let bytes = serde_json::to_vec(&body).unwrap();
        let reply = common::post_raw(&base, bytes, &[("authorization", "Bearer bad")]).await;
        assert_eq!(reply.code(), -32600);
    })
    .await;
    assert_eq!(value(&metrics.render(), "asap_auth_failures_total"), 1.0);
}

#[tokio::test]
async fn state_transitions_and_the_clients_sends_are_counted() {
    let metrics = Metrics::new();
    let base = serve(quiet_config(), &metrics, false).await;
    let mut retry = RetryPolicy::default();
    retry.max_attempts = 2;
    retry.base_delay = std::time::Duration::from_millis(1);
    let client = Client::builder()
        .metrics(&metrics)
        .retry(retry)
        .build()
        .unwrap();
    let envelope = Envelope::new(
        "urn:asap:agent:client",
        common::AGENT,
        TaskRequest::new("c", "echo", json!({"x": 1})),
    );
    client.send(&base, &envelope).await.unwrap();
    // A closed port: two attempts, one retry, one transport error.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    assert!(client.send(&dead, &envelope).await.is_err());

    let text = metrics.render();
    let transition = |from: &str, to: &str| {
        value(
            &text,
            &format!("asap_state_transitions_total{{from_status=\"{from}\",to_status=\"{to}\"}}"),
        )
    };
    assert_eq!(transition("submitted", "working"), 1.0);
    assert_eq!(transition("working", "completed"), 1.0);
    assert_eq!(
        value(&text, r#"asap_transport_send_total{status="success"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"asap_transport_send_total{status="error"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"asap_transport_send_errors_total{reason="transport"}"#
        ),
        1.0
    );
    assert_eq!(value(&text, "asap_transport_retries_total"), 1.0);
    assert_eq!(
        value(
            &text,
            r#"asap_transport_send_duration_seconds_count{status="success"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"asap_store_operation_duration_seconds_count{backend="memory",operation="commit"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn websocket_connections_and_messages_are_counted() {
    let metrics = Metrics::new();
    let base = serve(quiet_config(), &metrics, false).await;
    let url = format!("{}/asap/ws", base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(value(&metrics.render(), "asap_websocket_connections"), 1.0);
    let request = common::echo_request(json!({"x": "ws"})).to_string();
    socket
        .send(tokio_tungstenite::tungstenite::Message::text(request))
        .await
        .unwrap();
    let answer = socket.next().await.unwrap().unwrap();
    assert!(answer.into_text().unwrap().contains("\"result\""));
    let text = metrics.render();
    assert_eq!(
        value(&text, r#"asap_websocket_messages_total{direction="in"}"#),
        1.0
    );
    assert!(value(&text, r#"asap_websocket_messages_total{direction="out"}"#) >= 1.0);
}

#[tokio::test]
async fn the_applications_metrics_share_the_endpoint() {
    let metrics = Metrics::new();
    let mine = prometheus::IntCounter::new("my_app_widgets_total", "Widgets made").unwrap();
    metrics.registry().register(Box::new(mine.clone())).unwrap();
    mine.inc_by(3);
    let base = serve(quiet_config(), &metrics, false).await;
    let scraped = common::get(&base, "/asap/metrics", &[]).await.text;
    assert_eq!(value(&scraped, "my_app_widgets_total"), 3.0);
    assert!(scraped.contains("# TYPE process_cpu_seconds_total counter"));
    // The registered payload types' series exist before any request.
    let series = asap_test_support::exposition::series(&scraped);
    let key = r#"asap_handler_executions_total{payload_type="task.request"}"#;
    assert_eq!(series.get(key), Some(&0.0));
}

/// Sends `count` WebSocket frames with distinct bogus payload types from `first` on,
/// each answered before the next.
async fn hostile_frames(url: &str, first: usize, count: usize) {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for i in first..first + count {
        let mut request = common::echo_request(json!({"i": i}));
        request["id"] = json!(format!("ws-{i}"));
        request["params"]["envelope"]["payload_type"] = json!(format!("bogus.frame.{i}"));
        let frame = tokio_tungstenite::tungstenite::Message::text(request.to_string());
        socket.send(frame).await.unwrap();
        let id = format!("\"ws-{i}\"");
        while let Some(message) = socket.next().await {
            if message.unwrap().into_text().unwrap().contains(&id) {
                break;
            }
        }
    }
}

/// Hostile input: 10 000 distinct payload types, plus random paths, methods, versions
/// and 1 000 WebSocket frames; the number of series stays what the first round made.
#[tokio::test]
async fn label_cardinality_is_bounded_under_hostile_input() {
    use tower::ServiceExt;
    let metrics = Metrics::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = quiet_config();
    config.websocket.message_rate = None;
    let server = Server::builder()
        .manifest(common::manifest(&base))
        .config(config)
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let router = server.router();
    tokio::spawn(server.serve(listener, std::future::pending()));
    let ws = format!("{}/asap/ws", base.replace("http://", "ws://"));
    let hostile = |i: usize| {
        let mut request = common::echo_request(json!(i));
        request["params"]["envelope"]["payload_type"] = json!(format!("bogus.type.{i}"));
        request["method"] = json!(if i.is_multiple_of(3) {
            format!("m{i}")
        } else {
            "asap.send".into()
        });
        let method = ["POST", "PUT", "PATCH", "DELETE"][i % 4];
        let path = if i.is_multiple_of(2) {
            "/asap".to_owned()
        } else {
            format!("/x/{i}")
        };
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header(
                "asap-version",
                if i.is_multiple_of(5) {
                    format!("{}.{i}", i % 7)
                } else {
                    "1.1".into()
                },
            )
            .body(axum::body::Body::from(request.to_string()))
            .unwrap()
    };
    let round = |range: std::ops::Range<usize>| {
        let router = router.clone();
        async move {
            for i in range {
                let response = router.clone().oneshot(hostile(i)).await.unwrap();
                let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            }
        }
    };
    round(0..28).await;
    hostile_frames(&ws, 0, 2).await;
    let first = asap_test_support::exposition::series_count(&metrics.render());
    round(28..10_028).await;
    hostile_frames(&ws, 2, 1000).await;
    let after = metrics.render();
    assert_eq!(asap_test_support::exposition::series_count(&after), first);
    assert!(!after.contains("bogus."));
    assert!(value(&after, r#"asap_websocket_messages_total{direction="in"}"#) >= 1002.0);
    assert!(
        value(
            &after,
            r#"asap_requests_total{payload_type="other",status="error"}"#
        ) > 1000.0
    );
}

#[tokio::test]
async fn slot_budget_sender_and_timeout_refusals_count_once() {
    let body = common::echo_request(json!({"x": "hi"}));
    let metrics = Metrics::new();
    let mut config = quiet_config();
    config.max_concurrent_handlers = Some(0);
    let base = serve(config, &metrics, false).await;
    moves_by_one(&metrics, RefusalReason::ThreadPool, async {
        assert_eq!(common::post(&base, &body).await.status, 503);
    })
    .await;

    let metrics = Metrics::new();
    let mut config = quiet_config();
    config.max_buffered_bytes = 8;
    let base = serve(config, &metrics, false).await;
    moves_by_one(&metrics, RefusalReason::BufferBudget, async {
        assert_eq!(common::post(&base, &body).await.status, 503);
    })
    .await;

    let metrics = Metrics::new();
    let base = serve(quiet_config(), &metrics, true).await;
    let mut stranger = body.clone();
    stranger["params"]["envelope"]["sender"] = json!("urn:asap:agent:someone-else");
    moves_by_one(&metrics, RefusalReason::SenderMismatch, async {
        let bytes = serde_json::to_vec(&stranger).unwrap();
        let reply = common::post_raw(&base, bytes, &[("authorization", "Bearer good-token")]).await;
        assert_eq!(reply.code(), -32602);
    })
    .await;

    // A declared body that never comes: 408 once the read timeout passes.
    let metrics = Metrics::new();
    let mut config = quiet_config();
    config.body_read_timeout = Duration::from_millis(50);
    let base = serve(config, &metrics, false).await;
    moves_by_one(&metrics, RefusalReason::BodyTimeout, async {
        let mut stream = TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
        let head = "POST /asap HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0; 12];
        stream.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 408");
    })
    .await;
}

#[tokio::test]
async fn connection_cap_and_websocket_rate_refusals_count_once() {
    let metrics = Metrics::new();
    let mut config = quiet_config();
    config.max_connections = 1;
    config.websocket.message_rate = Some(1);
    let base = serve(config, &metrics, false).await;
    let url = format!("{}/asap/ws", base.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    moves_by_one(&metrics, RefusalReason::WebSocketMessageRate, async {
        let request = common::echo_request(json!({"x": "ws"})).to_string();
        for _ in 0..3 {
            let frame = tokio_tungstenite::tungstenite::Message::text(request.clone());
            if socket.send(frame).await.is_err() {
                break;
            }
        }
        // Until the server closes the connection.
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() {
                break;
            }
        }
    })
    .await;
    // An upgraded WebSocket leaves the HTTP connection count; a silent TCP connection
    // holds the only slot.
    let _held = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    moves_by_one(&metrics, RefusalReason::ConnectionLimit, async {
        let mut second = TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .unwrap();
        let mut rest = Vec::new();
        // Closed at once, before anything is read.
        assert_eq!(second.read_to_end(&mut rest).await.unwrap_or(0), 0);
    })
    .await;
}

/// A skill that fails its own task (through `HandlerContext::update_task`) and then
/// returns a result: the task handler must leave the task failed.
struct FailsItsTask;

#[async_trait::async_trait]
impl Skill for FailsItsTask {
    async fn run(
        &self,
        task: &Task,
        _request: &TaskRequest,
        ctx: &HandlerContext,
    ) -> Result<JsonObject, HandlerError> {
        ctx.update_task::<HandlerError, _>(
            &task.id,
            |task| {
                task.transition(TaskStatus::Failed)?;
                Ok(true)
            },
            |_| WriteBatch::new(),
        )
        .await?;
        Ok(JsonObject::new())
    }
}

#[tokio::test]
async fn a_transition_is_counted_where_it_is_committed() {
    let metrics = Metrics::new();
    let mut skills = Skills::new();
    skills.insert("fail".into(), Arc::new(FailsItsTask));
    let base = serve_skills(quiet_config(), &metrics, false, skills).await;
    let envelope = Envelope::new(
        "urn:asap:agent:client",
        common::AGENT,
        TaskRequest::new("c", "fail", json!({})),
    );
    let client = Client::builder().build().unwrap();
    let answer = client.send(&base, &envelope).await.unwrap();
    assert_eq!(answer.payload["status"], "failed");

    let text = metrics.render();
    let transition = |from: &str, to: &str| {
        value(
            &text,
            &format!("asap_state_transitions_total{{from_status=\"{from}\",to_status=\"{to}\"}}"),
        )
    };
    // The skill's own move is counted by the update that committed it; the handler's
    // move to completed never happened and is not counted.
    assert_eq!(transition("submitted", "working"), 1.0);
    assert_eq!(transition("working", "failed"), 1.0);
    assert_eq!(transition("working", "completed"), 0.0);
}
