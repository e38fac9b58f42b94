//! The client's WebSocket transport against a real server on loopback, with a chaos
//! proxy in between where the network misbehaves: correlation of concurrent requests,
//! push subscriptions, acks and retransmission, reconnection after drops and restarts,
//! partitions longer than the stale limit, and the HTTP fallback.
//!
//! The tests whose scenario is made of time (downtime, partitions, idle and ack
//! timeouts) run on paused tokio time: the clock jumps to the next timer whenever the
//! runtime has nothing to do. Everything (server, proxy, client) runs on the test's
//! runtime over loopback with Nagle off on every socket, so a written frame is readable
//! at once and the clock never jumps while one is on its way.

mod common;
use asap_test_support::proxy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asap_protocol::client::{
    BreakerConfig, Client, ClientError, TransportMode, WebSocketError, WebSocketOptions,
};
use asap_protocol::model::{Envelope, StateQuery, TaskRequest, TaskResponse, TaskStatus};
use asap_protocol::server::{
    Handler, HandlerContext, HandlerError, HandlerRegistry, Server, ServerConfig,
};
use common::{AGENT, Gate, Options, Running, manifest, start};
use proxy::Proxy;
use serde_json::json;

fn config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config.websocket.message_rate = None;
    config.websocket.close_timeout = Duration::from_millis(200);
    config
}

fn fast_options() -> WebSocketOptions {
    {
        let mut value = WebSocketOptions::default();
        value.reconnect_base = Duration::from_millis(50);
        value.reconnect_cap = Duration::from_millis(400);
        value.reconnect_max_attempts = Some(40);
        value.ack_timeout = Duration::from_millis(300);
        value
    }
}

fn client(options: WebSocketOptions) -> Client {
    Client::builder()
        .websocket(options)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn task(n: u64) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"n": n})),
    )
}

/// Counts its calls, records whether envelopes asked for an ack, answers after `delay`
/// (and after passing `gate`, when there is one).
struct Recording {
    calls: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
    delay: Duration,
    gate: Option<Gate>,
}

#[async_trait::async_trait]
impl Handler for Recording {
    async fn handle(
        &self,
        envelope: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if envelope.requires_ack {
            self.acked.fetch_add(1, Ordering::SeqCst);
        }
        if ctx.push.is_some() {
            let progress =
                Envelope::response_to(&envelope, TaskResponse::new("t", TaskStatus::Working));
            let _ = ctx.push(&progress).await;
        }
        tokio::time::sleep(self.delay).await;
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        let mut reply = TaskResponse::new("t", TaskStatus::Completed);
        reply.result = Some(
            envelope
                .payload
                .get("input")
                .cloned()
                .unwrap_or_default()
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        Ok(Envelope::response_to(&envelope, reply))
    }
}

struct Recorder {
    calls: Arc<AtomicUsize>,
    acked: Arc<AtomicUsize>,
}

fn recording(delay: Duration) -> (HandlerRegistry, Recorder) {
    recording_with(delay, None)
}

fn recording_with(delay: Duration, gate: Option<Gate>) -> (HandlerRegistry, Recorder) {
    let calls = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::echo();
    registry.register(
        "task.request",
        Arc::new(Recording {
            calls: calls.clone(),
            acked: acked.clone(),
            delay,
            gate,
        }),
    );
    (registry, Recorder { calls, acked })
}

async fn server(registry: HandlerRegistry) -> Running {
    start(Options {
        config: config(),
        registry: Some(registry),
        ..Options::default()
    })
    .await
}

fn ws(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

#[tokio::test]
async fn concurrent_requests_share_one_connection_and_are_correlated() {
    let (registry, recorder) = recording(Duration::ZERO);
    let server = server(registry).await;
    let client = client(WebSocketOptions::default());
    let url = ws(server.addr);
    let mut calls = Vec::new();
    for n in 0..50 {
        let (client, url) = (client.clone(), url.clone());
        calls.push(tokio::spawn(async move {
            (n, client.send(&url, &task(n)).await)
        }));
    }
    for call in calls {
        let (n, reply) = call.await.unwrap();
        let reply = reply.unwrap();
        assert_eq!(
            reply.payload["result"],
            json!({"n": n}),
            "answers go to their callers"
        );
    }
    assert_eq!(client.websocket_connections(), 1);
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 50);
    assert_eq!(
        recorder.acked.load(Ordering::SeqCst),
        50,
        "task.request asks for an ack"
    );
    // A read-only payload does not ask for one.
    let query = Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        StateQuery {
            task_id: "t-1".into(),
            version: None,
        },
    );
    let _ = client.send(&url, &query).await;
    assert_eq!(recorder.acked.load(Ordering::SeqCst), 50);
    // The same agent over HTTP and WebSocket by explicit mode.
    let forced = Client::builder()
        .transport(TransportMode::WebSocket)
        .build()
        .unwrap();
    forced.send(&server.base, &task(7)).await.unwrap();
    assert_eq!(forced.websocket_connections(), 1);
    let http = Client::builder()
        .transport(TransportMode::Http)
        .build()
        .unwrap();
    http.send(&url, &task(8)).await.unwrap();
    assert_eq!(http.websocket_connections(), 0);
    server.stop().await;
}

#[tokio::test]
async fn pushed_envelopes_reach_subscribers() {
    let (registry, _) = recording(Duration::from_millis(50));
    let server = server(registry).await;
    let client = client(WebSocketOptions::default());
    let url = ws(server.addr);
    let mut pushes = client.subscribe(&url).await.unwrap();
    let reply = client.send(&url, &task(1)).await.unwrap();
    let pushed = tokio::time::timeout(Duration::from_secs(5), pushes.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pushed.payload["status"], "working");
    assert_eq!(pushed.correlation_id, reply.correlation_id);
    server.stop().await;
}

#[tokio::test]
async fn a_connection_cut_mid_request_completes_exactly_once() {
    let gate = Gate::new();
    let (registry, recorder) = recording_with(Duration::ZERO, Some(gate.clone()));
    let server = server(registry).await;
    let proxy = Proxy::start(server.addr).await;
    let client = client(fast_options());
    let url = ws(proxy.addr);
    gate.release(1);
    client.send(&url, &task(0)).await.unwrap();
    gate.entered().await;
    let sending = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.send(&url, &task(1)).await }
    });
    // Cut while the request is in the handler; then let it (and any rerun, which the
    // count below would catch) answer.
    gate.entered().await;
    proxy.cut();
    gate.release(10);
    let reply = sending.await.unwrap().unwrap();
    assert_eq!(reply.payload["result"], json!({"n": 1}));
    assert!(proxy.accepted() >= 2, "the client reconnected");
    // The resent envelope was answered from the server's cache: one run per request.
    assert_eq!(recorder.calls.load(Ordering::SeqCst), 2);
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn clients_reconnect_after_a_server_restart() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let build = || {
        Server::builder()
            .manifest(manifest(&format!("http://{addr}")))
            .config(config())
            .build()
            .unwrap()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let first = tokio::spawn(build().serve(listener, async move {
        let _ = stopped.await;
    }));
    let client = client(fast_options());
    let url = ws(addr);
    client.send(&url, &task(1)).await.unwrap();
    let _ = stop.send(());
    first.await.unwrap().unwrap();
    // Down for a while, then back on the same port.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let second = tokio::spawn(build().serve(listener, std::future::pending()));
    let reply = client.send(&url, &task(2)).await.unwrap();
    assert_eq!(reply.payload["result"], json!({"echoed": {"n": 2}}));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the backoff schedule"
    );
    second.abort();
}

#[tokio::test(start_paused = true)]
async fn a_partition_longer_than_the_stale_limit_is_noticed_by_both_sides() {
    let mut config = config();
    config.websocket.ping_interval = Duration::from_millis(100);
    config.websocket.stale_after = Duration::from_millis(400);
    // One connection at most: the client can only come back if the server let go of
    // the stale one.
    config.websocket.max_connections = 1;
    let server = start(Options {
        config,
        ..Options::default()
    })
    .await;
    let proxy = Proxy::start(server.addr).await;
    let client = client({
        let mut value = fast_options();
        value.ping_interval = Duration::from_millis(100);
        value.stale_after = Duration::from_millis(400);
        value
    });
    let url = ws(proxy.addr);
    client.send(&url, &task(1)).await.unwrap();
    proxy.stall(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    proxy.cut();
    proxy.stall(false);
    let reply = client.send(&url, &task(2)).await.unwrap();
    assert_eq!(reply.payload["result"], json!({"echoed": {"n": 2}}));
    assert!(proxy.accepted() >= 2);
    server.stop().await;
}

/// An agent whose WebSocket takes requests and never acknowledges nor answers them,
/// and whose HTTP endpoint works (for the fallback).
async fn deaf_agent() -> (SocketAddr, Arc<AtomicUsize>) {
    use axum::extract::ws::{Message, WebSocketUpgrade};
    let frames = Arc::new(AtomicUsize::new(0));
    let seen = frames.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut http_only = config();
    http_only.websocket.enabled = false;
    let http = Server::builder()
        .manifest(manifest(&format!("http://{addr}")))
        .config(http_only)
        .build()
        .unwrap()
        .router();
    let app = axum::Router::new()
        .route(
            "/asap/ws",
            axum::routing::get(move |ws: WebSocketUpgrade| {
                let seen = seen.clone();
                async move {
                    ws.on_upgrade(move |mut socket| async move {
                        while let Some(Ok(message)) = socket.recv().await {
                            if let Message::Text(text) = message {
                                let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                                assert_eq!(frame["params"]["envelope"]["requires_ack"], true);
                                seen.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                }
            }),
        )
        .merge(http);
    // Nagle off, like the library's server (see the module comment).
    let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    (addr, frames)
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_envelopes_are_retransmitted_then_the_breaker_falls_back_to_http() {
    let (addr, frames) = deaf_agent().await;
    let client = Client::builder()
        .websocket({
            let mut value = WebSocketOptions::default();
            value.ack_timeout = Duration::from_millis(100);
            value.ack_retries = 2;
            value
        })
        .circuit_breaker(Some({
            let mut value = BreakerConfig::default();
            value.threshold = 1;
            value
        }))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = ws(addr);
    let started = tokio::time::Instant::now();
    let error = client.send(&url, &task(1)).await.unwrap_err();
    match error {
        ClientError::NotAcknowledged { attempts, .. } => assert_eq!(attempts, 3),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        frames.load(Ordering::SeqCst),
        3,
        "sent, then retransmitted twice"
    );
    // 100 + 200 + 400 ms: the wait doubles.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    // The breaker is open now: the next envelope goes over HTTP and succeeds.
    let reply = client.send(&url, &task(2)).await.unwrap();
    assert_eq!(reply.payload_type, "task.response");
    assert_eq!(frames.load(Ordering::SeqCst), 3, "not over the WebSocket");
}

#[tokio::test]
async fn a_bearer_token_goes_on_the_upgrade_and_refusals_are_http_errors() {
    let server = start(
        Options {
            config: config(),
            ..Options::default()
        }
        .bearer_tokens(&[("s3cret", "urn:asap:agent:client")]),
    )
    .await;
    let url = ws(server.addr);
    let authed = Client::builder().bearer_token("s3cret").build().unwrap();
    authed.send(&url, &task(1)).await.unwrap();
    let anonymous = Client::builder().build().unwrap();
    // The server refuses a tokenless upgrade itself (the reference accepts it and
    // refuses each message), so the slot stays free: an HTTP 401.
    match anonymous.send(&url, &task(1)).await.unwrap_err() {
        ClientError::Http { status, body } => {
            assert_eq!(status, 401);
            assert_eq!(body, r#"{"detail":"Authentication required"}"#);
        }
        other => panic!("{other:?}"),
    }
    // Nothing listening: a clear connection error, not a hang.
    let nowhere = client({
        let mut value = fast_options();
        value.reconnect_max_attempts = Some(0);
        value
    });
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    match nowhere.send(&ws(closed), &task(1)).await.unwrap_err() {
        ClientError::WebSocket(why @ WebSocketError::Connect { .. }) => {
            assert!(why.to_string().contains("cannot connect"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_pool_is_bounded_and_closes_idle_connections() {
    let one = server(recording(Duration::ZERO).0).await;
    let two = server(recording(Duration::ZERO).0).await;
    let three = server(recording(Duration::ZERO).0).await;
    let bounded = client({
        let mut value = WebSocketOptions::default();
        value.max_connections = 2;
        value
    });
    for s in [&one, &two, &three] {
        bounded.send(&ws(s.addr), &task(1)).await.unwrap();
    }
    assert_eq!(
        bounded.websocket_connections(),
        2,
        "one evicted for the third agent"
    );
    let idle = client({
        let mut value = WebSocketOptions::default();
        value.idle_timeout = Duration::from_millis(100);
        value
    });
    idle.send(&ws(one.addr), &task(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    idle.send(&ws(two.addr), &task(2)).await.unwrap();
    assert_eq!(idle.websocket_connections(), 1, "the idle one was closed");
    // Reusing the same agent keeps its connection however idle it was.
    tokio::time::sleep(Duration::from_millis(250)).await;
    idle.send(&ws(two.addr), &task(3)).await.unwrap();
    assert_eq!(idle.websocket_connections(), 1);
    one.stop().await;
    two.stop().await;
    three.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_hanging_agent_does_not_hold_up_connections_to_others() {
    let (registry, _) = recording(Duration::ZERO);
    let good = server(registry).await;
    // Accepts TCP connections and never answers the WebSocket handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
            let _ = accepted_tx.send(());
        }
    });
    let client = client({
        let mut value = WebSocketOptions::default();
        value.open_timeout = Duration::from_secs(3);
        value.reconnect_max_attempts = Some(0);
        value
    });
    let hanging = tokio::spawn({
        let client = client.clone();
        async move { client.send(&ws(silent_addr), &task(1)).await }
    });
    // The hanging agent has the connection; its handshake is now under way.
    accepted.recv().await.unwrap();
    let started = tokio::time::Instant::now();
    client.send(&ws(good.addr), &task(2)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} behind the hanging agent",
        started.elapsed()
    );
    assert!(matches!(
        hanging.await.unwrap(),
        Err(ClientError::Timeout(_))
    ));
    good.stop().await;
}
