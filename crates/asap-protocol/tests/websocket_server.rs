//! The server's WebSocket binding (`/asap/ws`) driven frame by frame with a plain
//! WebSocket client: answers, acks, de-duplication, push, heartbeat, limits, close codes
//! and graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asap_protocol::model::{Envelope, Model, TaskRequest, TaskResponse, TaskStatus};
use asap_protocol::server::{Handler, HandlerContext, HandlerError, HandlerRegistry, ServerConfig};
use common::{AGENT, Gate, Options, Running, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(server: &Running) -> Socket {
    let url = format!("ws://{}/asap/ws", server.addr);
    // Nagle off, like the server: a frame is on the wire when it is written, so paused
    // time never jumps while one is held back for a delayed ACK.
    tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap()
        .0
}

fn request(id: &str, envelope: &Envelope) -> Message {
    let frame = json!({"jsonrpc": "2.0", "method": "asap.send", "id": id, "params": {"envelope": envelope.to_value()}});
    Message::Text(frame.to_string().into())
}

fn echo(requires_ack: bool) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"n": 1})),
    )
    .with_requires_ack(requires_ack)
}

/// The next text frame (skipping heartbeat pings), as text.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .unwrap();
        match message {
            Message::Text(text) if text.as_str() == r#"{"type": "ping"}"# => {}
            Message::Text(text) => return text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

async fn next_json(socket: &mut Socket) -> Value {
    serde_json::from_str(&next_text(socket).await).unwrap()
}

/// The close frame that ends the connection (frames before it are skipped).
async fn close_of(socket: &mut Socket) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (frame.code, frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                panic!("the connection ended without a close frame")
            }
            Some(Ok(_)) => {}
        }
    }
}

fn open_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config.websocket.message_rate = None;
    config.websocket.close_timeout = Duration::from_millis(200);
    config
}

async fn server_with(config: ServerConfig, registry: Option<HandlerRegistry>) -> Running {
    start(Options {
        config,
        registry,
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn requests_are_answered_as_over_http() {
    let server = server_with(open_config(), None).await;
    let mut socket = connect(&server).await;
    let envelope = echo(false);
    socket.send(request("ws-req-1", &envelope)).await.unwrap();
    let text = next_text(&mut socket).await;
    assert!(
        text.starts_with(r#"{"jsonrpc":"2.0","result":{"envelope":{"#),
        "S1 bytes: {text}"
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["id"], "ws-req-1");
    let reply = &answer["result"]["envelope"];
    assert_eq!(reply["correlation_id"], envelope.id);
    assert_eq!(reply["payload_type"], "task.response");
    // Several requests on one connection are answered in order.
    for i in 0..5 {
        socket
            .send(request(&format!("r{i}"), &echo(false)))
            .await
            .unwrap();
    }
    for i in 0..5 {
        assert_eq!(next_json(&mut socket).await["id"], format!("r{i}"));
    }
    // The pipeline's checks apply per message: a notification (no id) is -32600.
    let notification = json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope.to_value()}});
    socket
        .send(Message::Text(notification.to_string().into()))
        .await
        .unwrap();
    let answer = next_json(&mut socket).await;
    assert_eq!(
        (answer["error"]["code"].as_i64(), &answer["id"]),
        (Some(-32600), &Value::Null)
    );
    server.stop().await;
}

#[tokio::test]
async fn acks_received_before_and_processed_or_rejected_after() {
    let server = server_with(open_config(), None).await;
    let mut socket = connect(&server).await;
    let envelope = echo(true);
    socket.send(request("a1", &envelope)).await.unwrap();
    let received = next_text(&mut socket).await;
    assert!(
        received.starts_with(
            r#"{"jsonrpc": "2.0", "method": "asap.ack", "params": {"envelope": {"id": ""#
        ),
        "S2 bytes as the reference: {received}"
    );
    let received: Value = serde_json::from_str(&received).unwrap();
    let ack = &received["params"]["envelope"];
    assert_eq!(
        ack["payload"],
        json!({"original_envelope_id": envelope.id, "status": "received", "error": null})
    );
    assert_eq!(
        (ack["sender"].as_str(), ack["recipient"].as_str()),
        (Some(AGENT), Some("urn:asap:agent:client"))
    );
    assert_eq!(next_json(&mut socket).await["id"], "a1");
    let processed = next_json(&mut socket).await;
    assert_eq!(
        processed["params"]["envelope"]["payload"]["status"],
        "processed"
    );

    // An unknown payload type: received, the -32601 answer, then rejected with the reason.
    let unknown = Envelope::raw(
        "urn:asap:agent:client",
        AGENT,
        "no.such.type",
        serde_json::Map::new(),
    )
    .with_requires_ack(true);
    socket.send(request("a2", &unknown)).await.unwrap();
    assert_eq!(
        next_json(&mut socket).await["params"]["envelope"]["payload"]["status"],
        "received"
    );
    assert_eq!(next_json(&mut socket).await["error"]["code"], -32601);
    let rejected = next_json(&mut socket).await;
    let payload = &rejected["params"]["envelope"]["payload"];
    assert_eq!(payload["status"], "rejected");
    assert!(
        payload["error"].as_str().unwrap().contains("no.such.type"),
        "{payload}"
    );
    server.stop().await;
}

/// Counts its calls; answers like the echo skill.
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

#[tokio::test]
async fn a_retransmitted_envelope_runs_its_handler_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(Counting(calls.clone())));
    let server = server_with(open_config(), Some(registry)).await;
    let envelope = echo(true);
    let mut first = connect(&server).await;
    first.send(request("one", &envelope)).await.unwrap();
    next_json(&mut first).await; // received
    let answer = next_json(&mut first).await;
    drop(first);
    // The same envelope again, on a new connection, with a new JSON-RPC id.
    let mut second = connect(&server).await;
    second.send(request("two", &envelope)).await.unwrap();
    assert_eq!(
        next_json(&mut second).await["params"]["envelope"]["payload"]["status"],
        "received"
    );
    let again = next_json(&mut second).await;
    assert_eq!(again["id"], "two");
    assert_eq!(
        again["result"], answer["result"],
        "the same answer, from the cache"
    );
    assert_eq!(
        next_json(&mut second).await["params"]["envelope"]["payload"]["status"],
        "processed"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Envelopes that did not ask for an ack are not de-duplicated (nothing retransmits them).
    second.send(request("three", &echo(false))).await.unwrap();
    next_json(&mut second).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    server.stop().await;
}

/// Pushes a `task.update`-like envelope before answering.
struct Pushing;

#[async_trait::async_trait]
impl Handler for Pushing {
    async fn handle(
        &self,
        envelope: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let update =
            Envelope::response_to(&envelope, TaskResponse::new("task-1", TaskStatus::Working));
        ctx.push(&update).await.map_err(HandlerError::internal)?;
        Ok(Envelope::response_to(
            &envelope,
            TaskResponse::new("task-1", TaskStatus::Completed),
        ))
    }
}

#[tokio::test]
async fn handlers_push_envelopes_ahead_of_the_reply() {
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(Pushing));
    let server = server_with(open_config(), Some(registry)).await;
    let mut socket = connect(&server).await;
    socket.send(request("p1", &echo(false))).await.unwrap();
    let pushed = next_json(&mut socket).await;
    assert_eq!(pushed["id"], Value::Null);
    assert_eq!(pushed["result"]["envelope"]["payload"]["status"], "working");
    let answer = next_json(&mut socket).await;
    assert_eq!(answer["id"], "p1");
    // Over HTTP the same handler gets a clear error instead of a push.
    let reply = common::post(&server.base, &common::echo_request(json!({}))).await;
    assert_eq!(reply.code(), -32603, "{}", reply.text);
    server.stop().await;
}

#[tokio::test]
async fn frames_that_are_not_requests() {
    let server = server_with(open_config(), None).await;
    let mut socket = connect(&server).await;
    // Not JSON: ignored, the connection stays.
    socket
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    // JSON but not an object: -32600, the connection stays (the reference closes it).
    socket.send(Message::Text("[1, 2]".into())).await.unwrap();
    let answer = next_json(&mut socket).await;
    assert_eq!(answer["error"]["code"], -32600);
    assert_eq!(answer["error"]["data"]["received_type"], "list");
    // A client's {"type": "ping"} is an ordinary (invalid) request, as in the reference.
    socket
        .send(Message::Text(r#"{"type": "ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await["error"]["code"], -32600);
    // Pongs are never answered.
    socket
        .send(Message::Text(r#"{"type": "pong"}"#.into()))
        .await
        .unwrap();
    socket.send(request("after", &echo(false))).await.unwrap();
    assert_eq!(next_json(&mut socket).await["id"], "after");
    // Binary: closed with 1003.
    socket
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let (code, _) = close_of(&mut socket).await;
    assert_eq!(code, CloseCode::Unsupported);
    server.stop().await;
}

/// Paused time: the message bucket refills on tokio's clock, so however slowly this
/// machine sends the 15 messages, no token comes back in between.
#[tokio::test(start_paused = true)]
async fn a_flood_gets_the_error_frame_and_close_1008_and_others_are_unaffected() {
    let mut config = open_config();
    config.websocket.message_rate = Some(10);
    let server = server_with(config, None).await;
    let mut flooder = connect(&server).await;
    let mut bystander = connect(&server).await;
    for i in 1..=15 {
        flooder
            .send(request(&format!("ws-rl-{i}"), &echo(false)))
            .await
            .unwrap();
    }
    let mut answered = 0;
    let error = loop {
        let frame = next_json(&mut flooder).await;
        if frame.get("result").is_some() {
            answered += 1;
        } else {
            break frame;
        }
    };
    assert_eq!(answered, 10);
    assert_eq!(
        error,
        json!({"jsonrpc": "2.0", "error": {"code": -32001, "message": "Rate limit exceeded; too many messages per second"}, "id": "ws-rl-11"})
    );
    assert_eq!(close_of(&mut flooder).await.0, CloseCode::Policy);
    bystander.send(request("calm", &echo(false))).await.unwrap();
    assert_eq!(next_json(&mut bystander).await["id"], "calm");
    server.stop().await;
}

/// Paused time: the pings and the stale limit are tokio timers, and every socket is on
/// this runtime over loopback.
#[tokio::test(start_paused = true)]
async fn heartbeat_pings_and_stale_connections_are_closed() {
    let mut config = open_config();
    config.websocket.ping_interval = Duration::from_millis(100);
    config.websocket.stale_after = Duration::from_millis(450);
    let server = server_with(config, None).await;
    let mut answering = connect(&server).await;
    let mut silent = connect(&server).await;
    // The answering client replies to each ping and outlives the stale limit.
    let started = tokio::time::Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(900) {
        match tokio::time::timeout(Duration::from_secs(2), answering.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                assert_eq!(text.as_str(), r#"{"type": "ping"}"#);
                pings += 1;
                answering
                    .send(Message::Text(r#"{"type": "pong"}"#.into()))
                    .await
                    .unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(pings >= 5, "{pings} pings");
    // The silent one was closed with 1001.
    let (code, reason) = close_of(&mut silent).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "Connection stale")
    );
    answering
        .send(request("alive", &echo(false)))
        .await
        .unwrap();
    assert_eq!(next_json(&mut answering).await["id"], "alive");
    server.stop().await;
}

#[tokio::test]
async fn connection_cap_and_oversized_messages() {
    let mut config = open_config();
    config.websocket.max_connections = 2;
    config.max_request_size = 1000;
    let server = server_with(config, None).await;
    let mut one = connect(&server).await;
    let _two = connect(&server).await;
    let url = format!("ws://{}/asap/ws", server.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("the third connection must be refused: {other:?}"),
    }
    // Over ASAP's size limit: the reference's detail frame, connection kept.
    let big = echo(false);
    let mut frame = json!({"jsonrpc": "2.0", "method": "asap.send", "id": "big", "params": {"envelope": big.to_value()}});
    frame["params"]["envelope"]["payload"]["input"] = json!({"blob": "x".repeat(2000)});
    let text = frame.to_string();
    let size = text.len();
    one.send(Message::Text(text.into())).await.unwrap();
    assert_eq!(
        next_text(&mut one).await,
        format!(r#"{{"detail":"Request size ({size} bytes) exceeds maximum (1000 bytes)"}}"#)
    );
    one.send(request("small", &echo(false))).await.unwrap();
    assert_eq!(next_json(&mut one).await["id"], "small");
    // A closed connection frees its slot: once the server has ended it (it closes the
    // TCP connection after answering the close), a third connection is taken. (The slot
    // is released as the server's connection task ends, just after; hence a few tries,
    // each yielding to the server.)
    one.close(None).await.unwrap();
    while one.next().await.is_some() {}
    let mut three = None;
    for _ in 0..50 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(&url).await {
            three = Some(socket);
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(three.is_some());
    server.stop().await;
}

#[tokio::test]
async fn frames_over_the_websocket_size_cap_close_the_connection() {
    let mut config = open_config();
    config.websocket.max_message_size = 4096;
    let server = server_with(config, None).await;
    let mut socket = connect(&server).await;
    socket
        .send(Message::Text("x".repeat(5000).into()))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .unwrap()
    {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Size),
        // The server may drop the connection without a close frame once the frame is too big.
        None | Some(Err(_)) => {}
        other => panic!("expected the connection to end, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_the_message_then_closes_with_1001() {
    let gate = Gate::new();
    let mut server = server_with(open_config(), Some(gate.registry())).await;
    let mut busy = connect(&server).await;
    let mut idle = connect(&server).await;
    busy.send(request("inflight", &echo(false))).await.unwrap();
    gate.entered().await;
    server.signal_stop();
    // The idle connection is closed at once; the busy one waits for its message.
    let (code, reason) = close_of(&mut idle).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "Server shutting down")
    );
    gate.release(1);
    assert_eq!(
        next_json(&mut busy).await["id"],
        "inflight",
        "the message in flight is answered"
    );
    let (code, reason) = close_of(&mut busy).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "Server shutting down")
    );
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// The WebSocket drain at shutdown counts its grace from the stop, not from the start:
/// a server that has run longer than its grace still waits for the message in flight
/// before it returns (and closes its store). It used to return at once.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_websocket_messages_after_a_long_uptime() {
    let gate = Gate::new();
    let mut config = open_config();
    config.shutdown_grace = Duration::from_millis(300);
    let mut server = server_with(config, Some(gate.registry())).await;
    // Up for longer than the grace (the condition of the defect, not a synchronisation;
    // paused time, so no real wait).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut socket = connect(&server).await;
    socket
        .send(request("inflight", &echo(false)))
        .await
        .unwrap();
    gate.entered().await;
    server.signal_stop();
    // Released a while after the stop (the drain must wait for it; paused time).
    let releaser = tokio::spawn({
        let gate = gate.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            gate.release(1);
        }
    });
    tokio::time::timeout(Duration::from_secs(10), &mut server.task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert_eq!(
        gate.finished(),
        1,
        "serve returned while a WebSocket handler was still running"
    );
    assert_eq!(next_json(&mut socket).await["id"], "inflight");
    releaser.await.unwrap();
}

#[tokio::test]
async fn manifest_bearer_auth_uses_the_handshake_header() {
    let mut config = open_config();
    config.websocket.max_connections = 2;
    let server = start(
        Options {
            config,
            ..Options::default()
        }
        .bearer_tokens(&[("s3cret", "urn:asap:agent:client")]),
    )
    .await;
    let url = format!("ws://{}/asap/ws", server.addr);
    let mut handshake =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    handshake
        .headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (mut authed, _) = tokio_tungstenite::connect_async(handshake).await.unwrap();
    authed.send(request("ok", &echo(false))).await.unwrap();
    assert!(next_json(&mut authed).await.get("result").is_some());
    // The sender must be the token's identity.
    let other = Envelope::new(
        "urn:asap:agent:other",
        AGENT,
        TaskRequest::new("c", "echo", json!({})),
    );
    authed.send(request("spoof", &other)).await.unwrap();
    assert_eq!(
        next_json(&mut authed).await["error"]["data"]["status_code"],
        403
    );
    // Without a token, or with a wrong one, the upgrade itself is refused (401), so
    // tokenless peers cannot take the connection slots (1,024 of them used to).
    let refused = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(response.status(), 401);
    let mut wrong = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        url.as_str(),
    )
    .unwrap();
    wrong
        .headers_mut()
        .insert("authorization", "Bearer guess".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(wrong).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(response.status(), 401);
    assert_eq!(
        String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()),
        r#"{"detail":"Invalid authentication token"}"#
    );
    // Refused upgrades took no slot: the second of two slots is still free.
    for _ in 0..5 {
        assert!(tokio_tungstenite::connect_async(&url).await.is_err());
    }
    let mut second =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .unwrap();
    second
        .headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (mut second, _) = tokio_tungstenite::connect_async(second).await.unwrap();
    second.send(request("two", &echo(false))).await.unwrap();
    assert!(next_json(&mut second).await.get("result").is_some());
    server.stop().await;
}

/// `authenticate_upgrade` off restores the reference: the upgrade is open and each
/// message without a valid token is refused.
#[tokio::test]
async fn with_upgrade_auth_off_tokenless_messages_are_refused_one_by_one() {
    let mut config = open_config();
    config.websocket.authenticate_upgrade = false;
    let server = start(
        Options {
            config,
            ..Options::default()
        }
        .bearer_tokens(&[("s3cret", "urn:asap:agent:client")]),
    )
    .await;
    let url = format!("ws://{}/asap/ws", server.addr);
    let mut anonymous = tokio_tungstenite::connect_async(&url).await.unwrap().0;
    anonymous.send(request("anon", &echo(false))).await.unwrap();
    assert_eq!(
        next_json(&mut anonymous).await["error"],
        json!({"code": -32600, "message": "Invalid request", "data": {"error": "Authentication required", "status_code": 401}})
    );
    server.stop().await;
}
