//! The WebSocket binding, `GET /asap/ws` (wire spec section 11): JSON-RPC over text
//! frames through the same pipeline and handlers as `POST /asap`, acknowledgements,
//! heartbeat, per-connection limits and graceful shutdown.
//!
//! Differences from the reference, all in the direction its spec notes recommend:
//! stale connections are closed (1001), non-object JSON gets a -32600 answer and the
//! connection stays open, binary frames are closed with 1003, `processed`/`rejected`
//! acks follow the answer, retransmitted envelopes are answered from a cache, and the
//! upgrade is authenticated when OAuth2 is on (see [`OAuth2`](super::OAuth2)).
//!
//! The dialect is chosen per connection at the upgrade from the handshake's
//! `ASAP-Version`, negotiated as on `POST /asap` (no header: 1.1, today's frames byte
//! for byte; no accepted version: the upgrade is refused with the HTTP `-32000`
//! answer); a 2.x connection echoes the version in the `101` and speaks the 2.x
//! dialect (`docs/asap-2.md` section 9, module `dialect2`).

mod connection;
mod dedup;
mod dialect2;
mod frames;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Extension;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use tokio::sync::watch;

use super::AppState;
use super::access_log::WebSocketConnection;
use super::auth::AuthenticatedCaller;
use super::dialect::{asap_version, refuse};
use super::metrics::{RefusalReason, refused};
use super::pipeline::pre_authenticate;
use super::response::detail;
use super::shared_state::RetransmissionCache;

pub(crate) use dedup::Dedup;

use crate::model::Dialect;

/// The server's WebSocket connections: their number, their cap and the shutdown signal.
pub(crate) struct Hub {
    open: AtomicUsize,
    closed: tokio::sync::Notify,
    shutdown: watch::Sender<bool>,
    pub(crate) dedup: Arc<dyn RetransmissionCache>,
}

impl Hub {
    /// A hub answering retransmissions from `dedup`.
    pub(crate) fn new(dedup: Arc<dyn RetransmissionCache>) -> Self {
        Self {
            open: AtomicUsize::new(0),
            closed: tokio::sync::Notify::new(),
            shutdown: watch::channel(false).0,
            dedup,
        }
    }

    /// Open connections.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Tells every connection to finish its message in progress and close with 1001.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until every connection has closed.
    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One counted connection; uncounted when dropped.
pub(crate) struct Slot(AppState);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.ws.open.fetch_sub(1, Ordering::SeqCst);
        self.0.metrics.websocket_closed();
        self.0.ws.closed.notify_waiters();
    }
}

fn take_slot(state: &AppState) -> Option<Slot> {
    let max = state.config.websocket.max_connections;
    state
        .ws
        .open
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| {
            state.metrics.websocket_opened();
            Slot(state.clone())
        })
}

/// `GET /asap/ws`.
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    caller: Option<Extension<AuthenticatedCaller>>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let peer = state.client_ip(connect_info, &headers);
    // The connection's dialect, negotiated as on `POST /asap` (no header: 1.1).
    let dialect = match Dialect::negotiate(headers.get(asap_version()), &state.config.dialects) {
        Ok(dialect) => dialect,
        Err(refusal) => {
            tracing::warn!(client = %peer, requested = %refusal.requested, "WebSocket upgrade refused: ASAP protocol version incompatible");
            return refuse(&refusal);
        }
    };
    if state.shutting_down() {
        let response = detail(StatusCode::SERVICE_UNAVAILABLE, "Server shutting down");
        return refused(response, RefusalReason::ShuttingDown);
    }
    // A server that requires a bearer token requires it on the upgrade too, so a
    // tokenless peer cannot take a connection slot (the reference accepts the upgrade
    // and refuses each message).
    if state.config.websocket.authenticate_upgrade
        && let Some(Err(failure)) = pre_authenticate(&state, &headers).await
    {
        tracing::debug!(client = %peer, "WebSocket upgrade refused: {}", failure.message());
        return refused(
            detail(StatusCode::UNAUTHORIZED, failure.message()),
            RefusalReason::Auth,
        );
    }
    let Some(slot) = take_slot(&state) else {
        tracing::warn!(client = %peer, "WebSocket connection refused: too many connections");
        let response = detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many WebSocket connections",
        );
        return refused(response, RefusalReason::WebSocketLimit);
    };
    let limits = &state.config.websocket;
    let shutdown = state.ws.shutdown.subscribe();
    let caller = caller.map(|Extension(c)| c);
    let mut response = ws
        .read_buffer_size(limits.read_buffer_size.max(1024))
        .max_message_size(limits.max_message_size)
        .max_frame_size(limits.max_message_size)
        .on_upgrade(move |socket| async move {
            tracing::debug!(client = %peer, %dialect, "WebSocket connected");
            let access = WebSocketConnection::new(uri.path(), peer);
            let handshake = (Arc::new(headers), dialect, access);
            connection::run(socket, state, handshake, caller, shutdown).await;
            drop(slot);
            tracing::debug!(client = %peer, "WebSocket closed");
        })
        .into_response();
    if dialect.is_2x() {
        response
            .headers_mut()
            .insert(asap_version(), HeaderValue::from_static(dialect.as_str()));
    }
    response
}

/// What a connection sends in answer to one text frame (acks, pushes, the answer), its
/// reader's and worker's steps without a socket: the entry point of the fuzz harness.
#[cfg(feature = "fuzzing")]
pub(crate) async fn answer_text_frame(state: &AppState, text: &str) -> Vec<String> {
    let Some(value) = connection::incoming(text) else {
        return Vec::new();
    };
    // Room for every frame one message can produce, so `handle` never waits on it.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let text = axum::extract::ws::Utf8Bytes::from(text.to_owned());
    let headers = HeaderMap::new();
    let peer = connection::Peer {
        headers: &headers,
        caller: None,
        dialect: crate::model::Dialect::V1_1,
    };
    let _ = connection::handle(state, peer, &tx, text, value).await;
    drop(tx);
    let mut sent = Vec::new();
    while let Some(frame) = rx.recv().await {
        sent.push(frame);
    }
    sent
}
