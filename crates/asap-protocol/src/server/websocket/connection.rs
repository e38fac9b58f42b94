//! One WebSocket connection: a reader/writer loop that owns the socket (heartbeat, rate
//! limit, close codes) and a worker that handles the messages one at a time, in
//! arrival order, as the reference does.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use http::HeaderMap;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::{dialect2, frames};
use crate::json;
use crate::model::{AckStatus, Dialect, Envelope, Model};
use crate::server::AppState;
use crate::server::access_log::{self, WebSocketConnection};
use crate::server::auth::AuthenticatedCaller;
use crate::server::body::{BodyRejection, Coding, coding, decode, too_large};
use crate::server::handler::Push;
use crate::server::metrics::{Direction, RefusalReason};
use crate::server::pipeline::{self, Input, respond};
use crate::server::shared_state::Arrival;

/// Close codes (RFC 6455 section 7.4.1).
const GOING_AWAY: u16 = 1001;
const UNSUPPORTED_DATA: u16 = 1003;
const POLICY_VIOLATION: u16 = 1008;

fn close(code: u16, reason: &str) -> Option<CloseFrame> {
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// A message being handled: its future owns everything it needs.
type Handling = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Closed>> + Send>>;

/// Serves one upgraded connection until either side ends it. Everything happens in this
/// one task: reading, the heartbeat, the message being handled (one at a time, in
/// arrival order, as the reference) and writing its answers and pushes, in the
/// `dialect` negotiated at the upgrade; each message gets its access-log line, with the
/// upgrade's path and client from `access`.
pub(super) async fn run(
    mut socket: WebSocket,
    state: AppState,
    (headers, dialect, access): (Arc<HeaderMap>, Dialect, WebSocketConnection),
    caller: Option<AuthenticatedCaller>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = state.config.websocket.clone();
    let (out_tx, mut out_rx) = mpsc::channel::<String>(limits.send_queue.max(1));
    let mut queued: VecDeque<(Utf8Bytes, Value)> = VecDeque::new();
    let mut current: Option<Handling> = None;
    let mut reading = true;
    let bucket: Option<MessageLimiter> = limits
        .message_rate
        .and_then(NonZeroU32::new)
        .map(|rate| RateLimiter::direct_with_clock(Quota::per_second(rate), TokioClock::new()));
    let mut last_received = Instant::now();
    let period = limits
        .ping_interval
        .max(std::time::Duration::from_millis(10));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    // Once reading stops (shutdown, rate limit), the messages already taken are handled,
    // their answers go out, then this last frame (if any) and the close.
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut last_words: (Option<String>, Option<CloseFrame>) =
        (None, close(GOING_AWAY, "Server shutting down"));
    let drain_for = state.config.shutdown_grace;
    if *shutdown.borrow() {
        reading = false;
        deadline = Some(tokio::time::Instant::now() + drain_for);
    }
    let ending = loop {
        if current.is_none()
            && let Some((text, value)) = queued.pop_front()
        {
            let (state, headers, caller, out, access) = (
                state.clone(),
                headers.clone(),
                caller.clone(),
                out_tx.clone(),
                access.clone(),
            );
            current = Some(Box::pin(async move {
                let peer = Peer {
                    headers: &headers,
                    caller: caller.as_ref(),
                    dialect,
                };
                let handling = handle(&state, peer, &out, text, value);
                access_log::websocket_message(&access, &headers, handling).await
            }));
        }
        if !reading && current.is_none() && queued.is_empty() {
            // Drained: flush what is still queued for writing, then say goodbye.
            let mut failed = false;
            while let Ok(text) = out_rx.try_recv() {
                state.metrics.websocket_message(Direction::Out);
                if socket.send(Message::Text(text.into())).await.is_err() {
                    failed = true;
                    break;
                }
            }
            break if failed {
                (None, None)
            } else {
                std::mem::take(&mut last_words)
            };
        }
        tokio::select! {
            biased;
            changed = shutdown.changed(), if reading => {
                if changed.is_err() || *shutdown.borrow() {
                    reading = false;
                    deadline = Some(tokio::time::Instant::now() + drain_for);
                }
            }
            () = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                break std::mem::take(&mut last_words);
            }
            Some(text) = out_rx.recv() => {
                state.metrics.websocket_message(Direction::Out);
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break (None, None);
                }
            }
            done = async { current.as_mut().expect("polled only while handling").await }, if current.is_some() => {
                current = None;
                if done.is_err() {
                    break (None, None);
                }
            }
            _ = heartbeat.tick() => {
                if last_received.elapsed() > limits.stale_after {
                    tracing::info!(idle_seconds = last_received.elapsed().as_secs(), "closing a stale WebSocket connection");
                    break (None, close(GOING_AWAY, "Connection stale"));
                }
                if socket.send(Message::Text(frames::ping().into())).await.is_err() {
                    break (None, None);
                }
            }
            message = socket.recv(), if reading && queued.len() < limits.receive_queue.max(1) => {
                let Some(Ok(message)) = message else { break (None, None) };
                last_received = Instant::now();
                match message {
                    Message::Text(text) => {
                        state.metrics.websocket_message(Direction::In);
                        let Some(value) = incoming(text.as_str()) else {
                            continue;
                        };
                        if let Some(bucket) = &bucket && bucket.check().is_err() {
                            tracing::warn!("WebSocket message rate exceeded; closing");
                            state.metrics.refusal(RefusalReason::WebSocketMessageRate);
                            last_words = (Some(frames::rate_limited(value.get("id"))), close(POLICY_VIOLATION, ""));
                            reading = false;
                            deadline = Some(tokio::time::Instant::now() + drain_for);
                            continue;
                        }
                        queued.push_back((text, value));
                    }
                    Message::Binary(_) => break (None, close(UNSUPPORTED_DATA, "Binary frames are not supported")),
                    Message::Close(_) => break (None, None),
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
        }
    };
    // A handler still running when the client left finishes anyway (its state changes
    // must not be cut off half-way); its answer has nowhere to go.
    if let Some(unfinished) = current.take() {
        tokio::spawn(unfinished);
    }
    let (last_frame, close_frame) = ending;
    if let Some(text) = last_frame {
        state.metrics.websocket_message(Direction::Out);
        let _ = socket.send(Message::Text(text.into())).await;
    }
    if let Some(frame) = close_frame
        && socket.send(Message::Close(Some(frame))).await.is_ok()
    {
        // The closing handshake: read (and drop) what the client still sends until its
        // close frame, so closing the TCP connection with unread data does not reset it
        // and destroy the frames the client has not read yet.
        let _ = tokio::time::timeout(limits.close_timeout, async {
            while let Some(Ok(message)) = socket.recv().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
}

/// A text frame as the reader takes it: its JSON, or `None` when it is to be ignored
/// (not JSON, as the reference does, or the heartbeat answer).
pub(super) fn incoming(text: &str) -> Option<Value> {
    let Ok(value) = json::parse(text.as_bytes()) else {
        tracing::debug!("ignoring a WebSocket frame that is not JSON");
        return None;
    };
    (!frames::is_pong(&value)).then_some(value)
}

/// The envelope of a request that asks for an ack (and has an id to acknowledge).
fn wants_ack(request: &Value) -> Option<Envelope> {
    let envelope = request.get("params")?.get("envelope")?;
    // Cheap first: most envelopes do not ask (validation coerces the rest as pydantic).
    if matches!(
        envelope.get("requires_ack"),
        None | Some(Value::Null | Value::Bool(false))
    ) {
        return None;
    }
    let envelope = Envelope::from_value(envelope).ok()?;
    (envelope.requires_ack && !envelope.id.is_empty()).then_some(envelope)
}

/// The error text of a JSON-RPC error answer, for a `rejected` ack.
fn failure_reason(answer: &Value) -> Option<String> {
    let error = answer.get("error")?;
    let text = error
        .get("data")
        .and_then(|d| d.get("error"))
        .and_then(Value::as_str)
        .or_else(|| error.get("message").and_then(Value::as_str))
        .unwrap_or("error");
    Some(text.to_owned())
}

pub(super) type Closed = mpsc::error::SendError<String>;

/// What a connection knows of its peer from the upgrade.
#[derive(Clone, Copy)]
pub(super) struct Peer<'a> {
    /// The handshake's headers (authentication, `Content-Encoding`).
    pub(super) headers: &'a HeaderMap,
    /// Who the upgrade authenticated as, when OAuth2 checks the upgrade.
    pub(super) caller: Option<&'a AuthenticatedCaller>,
    /// The connection's dialect.
    pub(super) dialect: Dialect,
}

/// Handles one message taken by the reader: acks, the pipeline, the answer.
pub(super) async fn handle(
    state: &AppState,
    peer: Peer<'_>,
    out: &mpsc::Sender<String>,
    text: Utf8Bytes,
    request: Value,
) -> Result<(), Closed> {
    let Peer {
        headers,
        caller,
        dialect,
    } = peer;
    let started = Instant::now();
    let acked = wants_ack(&request);
    if let Some(envelope) = &acked {
        out.send(frames::ack(envelope, AckStatus::Received, None))
            .await?;
    }
    let max = state.config.max_request_size;
    if text.len() > max {
        return refuse(out, too_large(text.len(), max)).await;
    }
    // The frame is already parsed unless the handshake declared a Content-Encoding,
    // which the reference applies to every frame.
    let coded = match coding(headers) {
        Ok(Coding::Identity) => None,
        Ok(other) => Some(other),
        Err(rejection) => return refuse(out, rejection).await,
    };
    let bytes = match coded.map(|c| decode(text.as_bytes().to_vec(), c, max)) {
        None => None,
        Some(Ok(bytes)) => Some(bytes),
        Some(Err(rejection)) => return refuse(out, rejection).await,
    };
    let request_id = request.get("id").cloned();
    let arrival = match &acked {
        None => None,
        Some(envelope) => match state.ws.dedup.arrive(&envelope.id).await {
            Ok(arrival) => Some(arrival),
            // The cache cannot say whether this is a retransmission: refuse rather than
            // risk running the handler twice.
            Err(error) => {
                let label = state.registry.label(&envelope.payload_type);
                let seconds = started.elapsed().as_secs_f64();
                let failure = pipeline::unavailable(error, None);
                let (_, answer) = pipeline::failure_answer(state, failure, label, seconds);
                out.send(answer.clone()).await?;
                if state.config.websocket.completion_acks {
                    let reason = serde_json::from_str(&answer)
                        .ok()
                        .and_then(|answer: Value| failure_reason(&answer));
                    out.send(ack_after(envelope, reason.as_deref())).await?;
                }
                return Ok(());
            }
        },
    };
    let first = match arrival {
        Some(Arrival::Duplicate(earlier)) => {
            if let Some(answer) = earlier.await {
                let mut answer = (*answer).clone();
                if let Some(object) = answer.as_object_mut() {
                    object.insert("id".into(), request_id.unwrap_or(Value::Null));
                }
                tracing::debug!("answering a retransmitted envelope from the cache");
                out.send(json::to_compact(&answer)).await?;
                if let Some(envelope) = acked
                    .as_ref()
                    .filter(|_| state.config.websocket.completion_acks)
                {
                    let status = failure_reason(&answer);
                    out.send(ack_after(envelope, status.as_deref())).await?;
                }
                return Ok(());
            }
            None
        }
        Some(Arrival::First(first)) => Some(first),
        None => None,
    };
    // A 2.x connection streams when the payload type has a streaming handler (the
    // reference's rule): one result frame per envelope, no answer to record.
    let streaming = if dialect.is_2x() {
        match &bytes {
            Some(bytes) => json::parse(bytes)
                .ok()
                .and_then(|decoded| dialect2::streaming_handler(state, &decoded)),
            None => dialect2::streaming_handler(state, &request),
        }
    } else {
        None
    };
    let input = match &bytes {
        Some(bytes) => Input::Raw(bytes),
        None => Input::Parsed(request),
    };
    if let Some(handler) = streaming {
        drop(first);
        let sent = (headers, caller, dialect);
        let request = (input, request_id.as_ref());
        let failed = dialect2::stream(state, sent, handler, request, out, started).await?;
        if let Some(envelope) = acked
            .as_ref()
            .filter(|_| state.config.websocket.completion_acks)
        {
            let answer = failed.and_then(|frame| json::parse(frame.as_bytes()).ok());
            let reason = answer.as_ref().and_then(failure_reason);
            out.send(ack_after(envelope, reason.as_deref())).await?;
        }
        return Ok(());
    }
    let push = Push {
        frames: out.clone(),
    };
    let (status, body) = respond(state, headers, caller, Some(push), input, started, dialect).await;
    let body = if dialect.is_2x() {
        dialect2::unary_frame(status, body, request_id.as_ref())
    } else {
        body
    };
    let Some(envelope) = &acked else {
        return out.send(body).await;
    };
    // Recorded before it is sent: if this connection is gone, the retransmission that
    // arrives on the next one still gets this answer instead of a second run.
    let answer = json::parse(body.as_bytes()).unwrap_or(Value::Null);
    let reason = failure_reason(&answer);
    // A 503 (a busy server, an unavailable dependency) is transient: not recorded, so
    // a retransmission is handled afresh (dropping `first` releases its waiters).
    if let Some(first) = first.filter(|_| status != http::StatusCode::SERVICE_UNAVAILABLE) {
        first.finish(answer).await;
    }
    out.send(body).await?;
    if state.config.websocket.completion_acks {
        out.send(ack_after(envelope, reason.as_deref())).await?;
    }
    Ok(())
}

/// Answers a message refused before the pipeline (too large, its coding) with the
/// refusal's detail, the status noted for the access log.
async fn refuse(out: &mpsc::Sender<String>, rejection: BodyRejection) -> Result<(), Closed> {
    access_log::note_status(rejection.status);
    let body = json::to_compact(&serde_json::json!({"detail": rejection.detail}));
    out.send(body).await
}

/// `processed`, or `rejected` with the reason, after the answer.
fn ack_after(envelope: &Envelope, failure: Option<&str>) -> String {
    match failure {
        None => frames::ack(envelope, AckStatus::Processed, None),
        Some(reason) => frames::ack(envelope, AckStatus::Rejected, Some(reason)),
    }
}

/// A connection's message bucket, refilled on tokio's clock.
type MessageLimiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// governor's clock on tokio's time, as every other timer of the server: the refill
/// follows the runtime's clock (paused in tests) rather than the machine's.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl TokioClock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now().duration_since(self.origin)
    }
}
