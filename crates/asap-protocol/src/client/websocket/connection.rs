//! One client WebSocket connection to one agent: a task that owns the socket, writes
//! queued frames, answers heartbeats, routes answers to their callers by JSON-RPC id,
//! acks to their envelopes and pushes to subscribers, and reconnects with backoff,
//! resending what was written but not answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::WebSocketOptions;
use crate::client::{ClientError, Credentials, Disconnect, RequestError, WebSocketError};
use crate::json;
use crate::model::{Envelope, Model};

type Answer = Result<Value, ClientError>;
type Slot = Arc<Mutex<Option<Waiter>>>;

/// Who waits for the frames of one JSON-RPC id.
enum Waiter {
    /// A unary call: the first frame is its answer.
    Once(oneshot::Sender<Answer>),
    /// A stream: every frame, until the caller has seen its last; a reader that falls
    /// a whole buffer behind is cut off (`overflowed`).
    Many {
        /// Where its frames go (bounded).
        frames: mpsc::Sender<Answer>,
        /// Set when a frame found the buffer full.
        overflowed: Arc<AtomicBool>,
    },
}

impl Waiter {
    fn fail(self, error: ClientError) {
        match self {
            Self::Once(tx) => {
                let _ = tx.send(Err(error));
            }
            Self::Many { frames, .. } => {
                let _ = frames.try_send(Err(error));
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the connection task and the callers share.
struct Shared {
    /// JSON-RPC id → where its answer goes (several ids may share one slot: the
    /// retransmissions of one envelope).
    waiting: Mutex<HashMap<String, Slot>>,
    /// Envelope id → callers waiting for its ack.
    acks: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// Frames written to a socket and not answered yet, resent after a reconnection.
    written: Mutex<HashMap<String, String>>,
    pushes: broadcast::Sender<Envelope>,
    closed: AtomicBool,
    last_used: Mutex<Instant>,
    in_flight: AtomicUsize,
}

/// A connection; the socket lives in a task that stops when the connection is closed
/// or dropped by its pool.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_id: std::sync::atomic::AtomicU64,
}

enum Outgoing {
    /// A request frame with its JSON-RPC id.
    Request(String, String),
    Close,
}

/// A reply to an application heartbeat.
const PONG: &str = r#"{"type": "pong"}"#;

impl Connection {
    /// Connects to `url` (a `ws://` or `wss://` URL of `/asap/ws`; `tls` configures
    /// the latter), offering the `ASAP-Version`s of `offer` on the handshake (none: the
    /// 1.1 dialect), and starts the task.
    pub(crate) async fn open(
        (url, offer): (String, Option<HeaderValue>),
        tls: Option<Arc<rustls::ClientConfig>>,
        credentials: Credentials,
        options: WebSocketOptions,
    ) -> Result<Self, ClientError> {
        let dialer = Dialer {
            url,
            tls,
            offer,
            trace_context: options.trace_context,
        };
        let token = credentials.token().await?;
        let socket = dialer.dial(token.as_deref(), options.open_timeout).await?;
        let shared = Arc::new(Shared {
            waiting: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            pushes: broadcast::channel(options.push_buffer.max(1)).0,
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
        });
        let (outgoing, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(
            socket,
            dialer,
            credentials,
            options,
            shared.clone(),
            queue,
        ));
        Ok(Self {
            shared,
            outgoing,
            next_id: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// Whether the connection gave up (closed, or reconnection exhausted).
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    /// Idle: nothing in flight since `since`.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        (self.shared.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| lock(&self.shared.last_used).elapsed())
    }

    /// Envelopes the server pushes on this connection.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Envelope> {
        self.shared.pushes.subscribe()
    }

    /// Closes the socket (1000) and fails what is waiting.
    pub(crate) fn close(&self) {
        let _ = self.outgoing.send(Outgoing::Close);
    }

    /// Sends `envelope` once and returns the frames answering it as they arrive (a
    /// stream over a 2.x connection: several result frames with one JSON-RPC id).
    /// Nothing is retransmitted; the frames stop coming when the returned value is
    /// dropped.
    pub(crate) fn open_stream(
        &self,
        envelope: &Envelope,
        buffer: usize,
    ) -> Result<StreamFrames, ClientError> {
        if self.is_closed() {
            return Err(WebSocketError::Closed.into());
        }
        let mut call = Call::new(self.shared.clone(), &envelope.id);
        let limit = buffer.max(1);
        let (tx, frames) = mpsc::channel(limit);
        let overflowed = Arc::new(AtomicBool::new(false));
        let id = self.request_id();
        let waiter = Waiter::Many {
            frames: tx,
            overflowed: overflowed.clone(),
        };
        let slot: Slot = Arc::new(Mutex::new(Some(waiter)));
        lock(&self.shared.waiting).insert(id.clone(), slot);
        call.ids.push(id.clone());
        let frame = request_frame(envelope, &id);
        self.outgoing
            .send(Outgoing::Request(id, frame))
            .map_err(|_| WebSocketError::Closed)?;
        Ok(StreamFrames {
            _call: call,
            frames,
            overflowed,
            limit,
        })
    }

    /// The next JSON-RPC id of this connection.
    fn request_id(&self) -> String {
        format!(
            "{REQUEST_ID_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Sends `envelope` and waits for its answer; retransmits it (same envelope id, new
    /// JSON-RPC id) while no ack arrives, `ack_timeout` doubling each time, when it
    /// asks for an ack. `Err(NotAcknowledged)` after `ack_retries` retransmissions.
    pub(crate) async fn call(
        &self,
        envelope: &Envelope,
        timeout: Duration,
        options: &WebSocketOptions,
    ) -> Result<Value, ClientError> {
        if self.is_closed() {
            return Err(WebSocketError::Closed.into());
        }
        let mut call = Call::new(self.shared.clone(), &envelope.id);
        self.exchange(envelope, timeout, options, &mut call).await
    }

    async fn exchange(
        &self,
        envelope: &Envelope,
        timeout: Duration,
        options: &WebSocketOptions,
        call: &mut Call,
    ) -> Result<Value, ClientError> {
        let (tx, mut answer) = oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(Waiter::Once(tx))));
        let acked = Arc::new(tokio::sync::Notify::new());
        if envelope.requires_ack {
            lock(&self.shared.acks).insert(envelope.id.clone(), acked.clone());
        }
        let deadline = Instant::now() + timeout;
        let ids = &mut call.ids;
        let mut ack_wait = options.ack_timeout;
        let mut retransmissions = 0;
        let mut is_acked = !envelope.requires_ack;
        loop {
            let id = self.request_id();
            let frame = request_frame(envelope, &id);
            lock(&self.shared.waiting).insert(id.clone(), slot.clone());
            ids.push(id.clone());
            if self.outgoing.send(Outgoing::Request(id, frame)).is_err() {
                break Err(WebSocketError::Closed.into());
            }
            let ack_deadline = Instant::now() + ack_wait;
            let retransmit = loop {
                tokio::select! {
                    got = &mut answer => {
                        break Some(got.unwrap_or_else(|_| Err(WebSocketError::Closed.into())));
                    }
                    () = acked.notified(), if !is_acked => { is_acked = true; }
                    () = tokio::time::sleep_until(ack_deadline), if !is_acked => break None,
                    () = tokio::time::sleep_until(deadline) => {
                        break Some(Err(ClientError::Timeout(timeout)));
                    }
                }
            };
            match retransmit {
                Some(result) => break result,
                None if retransmissions < options.ack_retries => {
                    retransmissions += 1;
                    ack_wait *= 2;
                    tracing::debug!(envelope_id = %envelope.id, retransmissions, "no ack; retransmitting");
                }
                None => {
                    break Err(ClientError::NotAcknowledged {
                        envelope_id: envelope.id.clone(),
                        attempts: retransmissions + 1,
                    });
                }
            }
        }
    }
}

/// The prefix of this client's JSON-RPC ids: a frame carrying one that no call waits
/// for any more (the tail of a stream, an answer after a timeout) is dropped, never
/// taken for a push (pushes have `id: null`).
const REQUEST_ID_PREFIX: &str = "ws-req-";

/// The `asap.send` frame carrying `envelope` under JSON-RPC id `id`.
fn request_frame(envelope: &Envelope, id: &str) -> String {
    json::to_compact(&serde_json::json!({
        "jsonrpc": "2.0",
        "method": crate::rpc::ASAP_METHOD,
        "params": {"envelope": envelope.to_value()},
        "id": id,
    }))
}

/// The frames answering a stream, in arrival order; a disconnection is the last.
/// Dropping it ends the call.
pub(crate) struct StreamFrames {
    _call: Call,
    frames: mpsc::Receiver<Answer>,
    overflowed: Arc<AtomicBool>,
    limit: usize,
}

impl StreamFrames {
    /// The next frame; [`WebSocketError::StreamBacklog`] once, after the buffered
    /// frames, when the reader fell a whole buffer behind; `None` once the connection is
    /// gone without a word.
    pub(crate) async fn next(&mut self) -> Option<Answer> {
        match self.frames.recv().await {
            Some(answer) => Some(answer),
            None if self.overflowed.swap(false, Ordering::SeqCst) => {
                let limit = self.limit;
                Some(Err(WebSocketError::StreamBacklog { limit }.into()))
            }
            None => None,
        }
    }
}

/// One call on a connection: counted in `in_flight` and its JSON-RPC ids registered
/// until dropped, whether the call completed, failed, was cancelled (a caller's
/// timeout or `select!`) or panicked, so the connection can idle out again.
struct Call {
    shared: Arc<Shared>,
    envelope_id: String,
    ids: Vec<String>,
}

impl Call {
    fn new(shared: Arc<Shared>, envelope_id: &str) -> Self {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        Self {
            shared,
            envelope_id: envelope_id.to_owned(),
            ids: Vec::new(),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        {
            let mut waiting = lock(&self.shared.waiting);
            let mut written = lock(&self.shared.written);
            for id in &self.ids {
                waiting.remove(id);
                written.remove(id);
            }
        }
        lock(&self.shared.acks).remove(&self.envelope_id);
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        *lock(&self.shared.last_used) = Instant::now();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.outgoing.send(Outgoing::Close);
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where a connection goes, again on every reconnection.
struct Dialer {
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The handshake's `ASAP-Version` (the dialects offered), if any.
    offer: Option<HeaderValue>,
    /// Whether the handshake carries the current trace context.
    trace_context: bool,
}

impl Dialer {
    async fn dial(&self, bearer: Option<&str>, timeout: Duration) -> Result<Socket, ClientError> {
        let url = self.url.as_str();
        let mut request =
            url.into_client_request()
                .map_err(|source| RequestError::InvalidWebSocketUrl {
                    url: url.to_owned(),
                    source: Box::new(source),
                })?;
        if let Some(token) = bearer {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(RequestError::InvalidToken)?;
            request.headers_mut().insert("authorization", value);
        }
        if let Some(offer) = &self.offer {
            request.headers_mut().insert("asap-version", offer.clone());
        }
        if self.trace_context {
            crate::trace_context::for_outgoing().inject(request.headers_mut());
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        // Nagle off: frames are small and latency is the point of this transport.
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
        match tokio::time::timeout(timeout, connecting).await {
            Err(_) => Err(ClientError::Timeout(timeout)),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let status = response.status();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                // A refused offer is answered as on HTTP: a JSON-RPC error (`-32000`).
                if let Ok(answer) = json::parse(body.as_bytes())
                    && let Some(error) = answer.get("error")
                {
                    return Err(crate::client::remote_error(error));
                }
                Err(ClientError::Http { status, body })
            }
            Ok(Err(source)) => Err(WebSocketError::Connect {
                url: url.to_owned(),
                source: Box::new(source),
            }
            .into()),
            Ok(Ok((socket, _))) => Ok(socket),
        }
    }
}

/// Delivers one frame from the server.
fn dispatch(shared: &Shared, text: &str) -> Option<&'static str> {
    let Ok(frame) = json::parse(text.as_bytes()) else {
        tracing::debug!("ignoring a frame that is not JSON");
        return None;
    };
    if frame.get("type").and_then(Value::as_str) == Some("ping") {
        return Some(PONG);
    }
    if frame.get("method").and_then(Value::as_str) == Some("asap.ack") {
        let original = frame
            .pointer("/params/envelope/payload/original_envelope_id")
            .and_then(Value::as_str);
        if let Some(waiter) = original.and_then(|id| lock(&shared.acks).get(id).cloned()) {
            waiter.notify_one();
        }
        return None;
    }
    let id = frame.get("id").and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let slot = id
        .as_ref()
        .and_then(|id| lock(&shared.waiting).get(id).cloned());
    match slot {
        Some(slot) => {
            if let Some(id) = &id {
                lock(&shared.written).remove(id);
            }
            let mut waiter = lock(&slot);
            match waiter.take() {
                Some(Waiter::Once(tx)) => {
                    let _ = tx.send(Ok(frame));
                }
                // A stream keeps its waiter while its reader is there and keeps up;
                // a full buffer ends it (the reader learns why after the buffered frames).
                Some(Waiter::Many { frames, overflowed }) => match frames.try_send(Ok(frame)) {
                    Ok(()) => *waiter = Some(Waiter::Many { frames, overflowed }),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflowed.store(true, Ordering::SeqCst);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                },
                None => {}
            }
        }
        None if id
            .as_deref()
            .is_some_and(|id| id.starts_with(REQUEST_ID_PREFIX)) =>
        {
            tracing::debug!("ignoring a frame for a call that has ended");
        }
        None => match frame.pointer("/result/envelope").map(Envelope::from_value) {
            Some(Ok(envelope)) => {
                let _ = shared.pushes.send(envelope);
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "ignoring a pushed frame with an invalid envelope")
            }
            None => tracing::debug!(frame = %text, "ignoring a frame for no pending request"),
        },
    }
    None
}

/// Fails every caller still waiting.
fn fail_waiting(shared: &Shared, why: &Disconnect) {
    let slots: Vec<Slot> = lock(&shared.waiting).drain().map(|(_, s)| s).collect();
    for slot in slots {
        if let Some(waiter) = lock(&slot).take() {
            waiter.fail(WebSocketError::Disconnected(why.clone()).into());
        }
    }
    lock(&shared.written).clear();
}

/// `min(base × 2^(attempt−1), cap)` with ±20 % jitter.
pub(crate) fn backoff(options: &WebSocketOptions, attempt: u32) -> Duration {
    crate::client::exponential_backoff(
        options.reconnect_base,
        options.reconnect_cap,
        attempt,
        0.8..=1.2,
    )
}

enum Ended {
    /// The caller closed the connection.
    Closed,
    /// The socket failed; reconnect if allowed.
    Lost(Disconnect),
}

async fn run(
    mut socket: Socket,
    dialer: Dialer,
    credentials: Credentials,
    options: WebSocketOptions,
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Outgoing>,
) {
    loop {
        let (why, may_reconnect) = match serve(&mut socket, &options, &shared, &mut queue).await {
            Ended::Closed => {
                let _ = tokio::time::timeout(options.open_timeout, socket.close(None)).await;
                (Disconnect::ClosedByClient, false)
            }
            Ended::Lost(why) => (why, options.reconnect),
        };
        let mut reconnected = None;
        if may_reconnect {
            let mut attempt = 1;
            while options
                .reconnect_max_attempts
                .is_none_or(|max| attempt <= max)
            {
                let delay = backoff(&options, attempt);
                tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, %why, "reconnecting");
                tokio::time::sleep(delay).await;
                // A fresh token for every handshake: the old one may have expired.
                let token = credentials.token().await.ok().flatten();
                if let Ok(fresh) = dialer.dial(token.as_deref(), options.open_timeout).await {
                    reconnected = Some(fresh);
                    break;
                }
                attempt += 1;
            }
        }
        match reconnected {
            Some(fresh) => {
                socket = fresh;
                // What the old socket took but never answered goes out again (same ids).
                let resend: Vec<String> = lock(&shared.written).values().cloned().collect();
                for frame in resend {
                    if socket.send(Message::Text(frame.into())).await.is_err() {
                        break;
                    }
                }
            }
            None => {
                shared.closed.store(true, Ordering::SeqCst);
                fail_waiting(&shared, &why);
                return;
            }
        }
    }
}

/// Runs one socket until it ends.
async fn serve(
    socket: &mut Socket,
    options: &WebSocketOptions,
    shared: &Shared,
    queue: &mut mpsc::UnboundedReceiver<Outgoing>,
) -> Ended {
    let mut heartbeat = tokio::time::interval(options.ping_interval.max(Duration::from_millis(10)));
    heartbeat.tick().await;
    let mut last_received = Instant::now();
    loop {
        tokio::select! {
            command = queue.recv() => match command {
                None | Some(Outgoing::Close) => return Ended::Closed,
                Some(Outgoing::Request(id, frame)) => {
                    lock(&shared.written).insert(id, frame.clone());
                    if let Err(e) = socket.send(Message::Text(frame.into())).await {
                        return Ended::Lost(Disconnect::Write(Arc::new(e)));
                    }
                }
            },
            _ = heartbeat.tick() => {
                if last_received.elapsed() > options.stale_after {
                    return Ended::Lost(Disconnect::Stale(last_received.elapsed()));
                }
                if let Err(e) = socket.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Lost(Disconnect::Ping(Arc::new(e)));
                }
            }
            message = socket.next() => {
                let message = match message {
                    None => return Ended::Lost(Disconnect::ServerClosed),
                    Some(Err(e)) => return Ended::Lost(Disconnect::Read(Arc::new(e))),
                    Some(Ok(message)) => message,
                };
                last_received = Instant::now();
                match message {
                    Message::Text(text) => {
                        if let Some(reply) = dispatch(shared, text.as_str())
                            && let Err(e) = socket.send(Message::Text(reply.into())).await
                        {
                            return Ended::Lost(Disconnect::Write(Arc::new(e)));
                        }
                    }
                    Message::Close(frame) => {
                        let why = frame.map_or(Disconnect::ServerClosed, |f| Disconnect::ServerClosedWith {
                            code: f.code.into(),
                            reason: f.reason.to_string(),
                        });
                        return Ended::Lost(why);
                    }
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskRequest;

    /// A connection with no socket: what it would write lands in the returned queue.
    fn detached() -> (Connection, mpsc::UnboundedReceiver<Outgoing>) {
        let shared = Arc::new(Shared {
            waiting: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            pushes: broadcast::channel(1).0,
            closed: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            in_flight: AtomicUsize::new(0),
        });
        let (outgoing, queue) = mpsc::unbounded_channel();
        let connection = Connection {
            shared,
            outgoing,
            next_id: std::sync::atomic::AtomicU64::new(1),
        };
        (connection, queue)
    }

    #[tokio::test]
    async fn a_stream_whose_reader_falls_a_buffer_behind_ends_with_a_backlog_error() {
        let (connection, mut queue) = detached();
        let envelope = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskRequest::new("c", "s", serde_json::json!({})),
        );
        let mut frames = connection.open_stream(&envelope, 2).unwrap();
        let Some(Outgoing::Request(id, _)) = queue.recv().await else {
            panic!("the request was not queued")
        };
        // Five frames arrive before the reader reads any: two fit, the third ends it.
        for n in 0..5 {
            let frame = format!(r#"{{"jsonrpc": "2.0", "result": {{"n": {n}}}, "id": "{id}"}}"#);
            assert_eq!(dispatch(&connection.shared, &frame), None);
        }
        for n in 0..2 {
            assert_eq!(frames.next().await.unwrap().unwrap()["result"]["n"], n);
        }
        match frames.next().await {
            Some(Err(ClientError::WebSocket(WebSocketError::StreamBacklog { limit: 2 }))) => {}
            other => panic!("{other:?}"),
        }
        assert!(frames.next().await.is_none());
        // The call is over: its id is forgotten, later frames are dropped.
        assert!(lock(&connection.shared.waiting).get(&id).is_some());
        drop(frames);
        assert!(lock(&connection.shared.waiting).get(&id).is_none());
    }
}
