//! Shared state in a real Redis (feature `redis`, Debian's `redis-server` started by
//! the test on a Unix socket): two servers on one Redis refuse a replay through the
//! other, share one rate limit and one WebSocket retransmission cache; with Redis down
//! they are not ready and refuse the requests that need it (503), and they recover by
//! themselves when it returns.

#![cfg(feature = "redis")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asap_protocol::model::{Envelope, Model, TaskRequest, TaskResponse, TaskStatus};
use asap_protocol::server::{
    DEPENDENCY_UNAVAILABLE, Handler, HandlerContext, HandlerError, HandlerRegistry, InProcess,
    RateLimitRule, RedisConfig, RedisSharedState, ServerConfig, SharedStateBackend,
};
use asap_test_support::redis::RedisServer;
use common::{AGENT, Options, Reply, Running, echo_request, envelope, get, post, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// How long a server may take to notice that Redis went away or came back.
const DEADLINE: Duration = Duration::from_secs(30);

async fn redis_state(redis: &RedisServer) -> Arc<dyn SharedStateBackend> {
    redis_state_with(RedisConfig::new(redis.url())).await
}

async fn redis_state_with(config: RedisConfig) -> Arc<dyn SharedStateBackend> {
    Arc::new(
        RedisSharedState::connect(config)
            .await
            .expect("Redis answers"),
    )
}

async fn replica(
    config: ServerConfig,
    shared: Arc<dyn SharedStateBackend>,
    registry: Option<HandlerRegistry>,
) -> Running {
    start(Options {
        config,
        registry,
        shared_state: Some(shared),
        ..Options::default()
    })
    .await
}

fn replay_checks() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config.require_nonce = true;
    config.reject_repeated_ids = true;
    config
}

fn send(id: &str, nonce: Option<&str>) -> Value {
    let mut env = envelope(
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
    );
    env["id"] = json!(id);
    if let Some(nonce) = nonce {
        env["extensions"] = json!({"nonce": nonce});
    }
    json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": env}, "id": "req-1"})
}

fn error_message(reply: &Reply) -> Value {
    reply.json()["error"]["data"]["message"].clone()
}

/// Polls `path` until it answers `status`, within [`DEADLINE`].
async fn wait_for_status(server: &Running, path: &str, status: u16) -> Reply {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let reply = get(&server.base, path, &[]).await;
        if reply.status == status {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {} ({}) after {DEADLINE:?}",
            reply.status,
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_replay_through_another_replica_is_refused() {
    let redis = RedisServer::start();
    let a = replica(replay_checks(), redis_state(&redis).await, None).await;
    let b = replica(replay_checks(), redis_state(&redis).await, None).await;

    let first = post(&a.base, &send("env-1", Some("nonce-1"))).await;
    assert!(first.json().get("result").is_some(), "{}", first.text);
    let replayed = post(&b.base, &send("env-1b", Some("nonce-1"))).await;
    assert_eq!(replayed.code(), -32602);
    assert_eq!(
        error_message(&replayed),
        "Duplicate nonce detected: nonce-1"
    );
    // The same envelope id with a fresh nonce: refused by the id check.
    let same_id = post(&b.base, &send("env-1", Some("nonce-2"))).await;
    assert_eq!(
        error_message(&same_id),
        "Duplicate envelope id detected: env-1"
    );
    // The keys live as long as the nonce window (600 s).
    let ttl: i64 = redis
        .command("PTTL asap:nonce:nonce-1")
        .trim_start_matches(':')
        .trim()
        .parse()
        .unwrap();
    assert!((590_000..=600_000).contains(&ttl), "{ttl}");
    assert!(
        redis
            .command("EXISTS asap:envelope:env-1")
            .starts_with(":1")
    );
    a.stop().await;
    b.stop().await;
}

fn limited(rule: &str) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits = RateLimitRule::parse_list(rule).unwrap();
    config
}

/// Sends `n` echo requests alternately to `a` and `b`; the statuses, in order.
async fn alternate(a: &Running, b: &Running, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..n {
        let server = if i % 2 == 0 { a } else { b };
        statuses.push(post(&server.base, &echo_request(json!({}))).await.status);
    }
    statuses
}

#[tokio::test]
async fn a_burst_split_across_replicas_is_limited_in_total() {
    let redis = RedisServer::start();
    let a = replica(limited("4/minute"), redis_state(&redis).await, None).await;
    let b = replica(limited("4/minute"), redis_state(&redis).await, None).await;
    assert_eq!(alternate(&a, &b, 4).await, [200, 200, 200, 200]);
    for server in [&a, &b] {
        let refused = post(&server.base, &echo_request(json!({}))).await;
        assert_eq!(refused.status, 429);
        let wait: u64 = refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One request every 15 s refills the bucket.
        assert!((1..=15).contains(&wait), "{wait}");
        assert_eq!(
            refused.text,
            format!(
                r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":429,"message":"Rate limit exceeded","data":{{"retry_after":{wait},"limit":"4 per 1 minute"}}}}}}"#
            )
        );
    }
    a.stop().await;
    b.stop().await;

    // In process, each replica has its own buckets: twice the burst passes.
    let in_process: Arc<dyn SharedStateBackend> = Arc::new(InProcess);
    let a = replica(limited("4/minute"), in_process.clone(), None).await;
    let b = replica(limited("4/minute"), in_process, None).await;
    assert_eq!(alternate(&a, &b, 8).await, [200; 8]);
    a.stop().await;
    b.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Running) -> Socket {
    let url = format!("ws://{}/asap/ws", server.addr);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

fn ws_request(id: &str, envelope: &Envelope) -> Message {
    let frame = json!({"jsonrpc": "2.0", "method": "asap.send", "id": id, "params": {"envelope": envelope.to_value()}});
    Message::Text(frame.to_string().into())
}

/// The next JSON frame (skipping heartbeat pings).
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .unwrap();
        match message {
            Message::Text(text) if text.as_str() == r#"{"type": "ping"}"# => {}
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

fn ack_status(frame: &Value) -> Value {
    frame["params"]["envelope"]["payload"]["status"].clone()
}

struct Counting(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Handler for Counting {
    async fn handle(
        &self,
        envelope: Envelope,
        _ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Envelope::response_to(
            &envelope,
            TaskResponse::new("task-1", TaskStatus::Completed),
        ))
    }
}

fn ws_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config.websocket.message_rate = None;
    config.websocket.close_timeout = Duration::from_millis(200);
    config
}

fn acked_echo() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"n": 1})),
    )
    .with_requires_ack(true)
}

#[tokio::test]
async fn a_retransmission_to_another_replica_is_answered_from_the_shared_cache() {
    let redis = RedisServer::start();
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = || {
        let mut registry = HandlerRegistry::new();
        registry.register("task.request", Arc::new(Counting(calls.clone())));
        Some(registry)
    };
    let a = replica(ws_config(), redis_state(&redis).await, registry()).await;
    let b = replica(ws_config(), redis_state(&redis).await, registry()).await;
    let envelope = acked_echo();
    let mut first = connect(&a).await;
    first.send(ws_request("one", &envelope)).await.unwrap();
    assert_eq!(ack_status(&next_json(&mut first).await), "received");
    let answer = next_json(&mut first).await;
    assert_eq!(ack_status(&next_json(&mut first).await), "processed");

    let mut second = connect(&b).await;
    second.send(ws_request("two", &envelope)).await.unwrap();
    assert_eq!(ack_status(&next_json(&mut second).await), "received");
    let again = next_json(&mut second).await;
    assert_eq!(again["id"], "two");
    assert_eq!(
        again["result"], answer["result"],
        "the first replica's answer"
    );
    assert_eq!(ack_status(&next_json(&mut second).await), "processed");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler ran once");
    let ttl = redis.command(&format!("PTTL asap:ws:{}", envelope.id));
    assert!(!ttl.starts_with(":-"), "the answer expires: {ttl}");
    drop((first, second));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn with_redis_down_the_server_is_not_ready_and_refuses_then_recovers() {
    let mut redis = RedisServer::start();
    let mut rate_limited = ws_config();
    rate_limited.rate_limits = RateLimitRule::parse_list("1000/second").unwrap();
    // A short response timeout: each refusal below waits for it at most.
    let mut quick = RedisConfig::new(redis.url());
    quick.response_timeout = Duration::from_millis(250);
    let limiter = replica(rate_limited, redis_state_with(quick.clone()).await, None).await;
    let checker = replica(replay_checks(), redis_state_with(quick).await, None).await;
    for server in [&limiter, &checker] {
        assert_eq!(get(&server.base, "/ready", &[]).await.status, 200);
    }
    let mut socket = connect(&checker).await;

    redis.stop();
    for server in [&limiter, &checker] {
        wait_for_status(server, "/ready", 503).await;
        let health = get(&server.base, "/.well-known/asap/health", &[]).await;
        assert_eq!(
            (health.status, health.json()["status"].clone()),
            (503, json!("unhealthy"))
        );
    }
    // Neither the rate limit (step 3) nor the nonce (step 15) is skipped: 503.
    for (server, body) in [
        (&limiter, echo_request(json!({}))),
        (&checker, send("env-down", Some("nonce-down"))),
    ] {
        let refused = post(&server.base, &body).await;
        assert_eq!(refused.status, 503, "{}", refused.text);
        let refusal = refused.json();
        assert_eq!(refusal["code"], DEPENDENCY_UNAVAILABLE);
        assert_eq!(refusal["error"], "Service Temporarily Unavailable");
        assert_eq!(refusal["details"]["dependency"], "redis");
    }
    // Over WebSocket, an envelope asking for an ack cannot be de-duplicated: refused.
    socket
        .send(ws_request("ws-down", &acked_echo()))
        .await
        .unwrap();
    assert_eq!(ack_status(&next_json(&mut socket).await), "received");
    assert_eq!(next_json(&mut socket).await["code"], DEPENDENCY_UNAVAILABLE);
    assert_eq!(ack_status(&next_json(&mut socket).await), "rejected");

    redis.restart();
    for server in [&limiter, &checker] {
        wait_for_status(server, "/ready", 200).await;
        let health = get(&server.base, "/.well-known/asap/health", &[]).await;
        assert_eq!(health.status, 200);
    }
    let accepted = post(&limiter.base, &echo_request(json!({}))).await;
    assert_eq!(accepted.status, 200);
    let checked = post(&checker.base, &send("env-up", Some("nonce-up"))).await;
    assert!(checked.json().get("result").is_some(), "{}", checked.text);
    let replayed = post(&checker.base, &send("env-up-2", Some("nonce-up"))).await;
    assert_eq!(
        error_message(&replayed),
        "Duplicate nonce detected: nonce-up"
    );
    drop(socket);
    limiter.stop().await;
    checker.stop().await;
}
