//! The client's WebSocket transport (wire spec section 11): one pooled connection per
//! agent, concurrent requests correlated by JSON-RPC id, acks with retransmission,
//! reconnection with backoff, and server push.

mod connection;
mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub(crate) use connection::{Connection, StreamFrames};

use crate::client::{ClientError, Credentials};
use crate::model::PayloadType;
use reqwest::header::HeaderValue;

/// How the client reaches an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TransportMode {
    /// WebSocket for `ws://` and `wss://` URLs, HTTP for `http://` and `https://`.
    #[default]
    Auto,
    /// Always HTTP (`ws(s)://` URLs are sent to the matching `http(s)://` agent).
    Http,
    /// Always WebSocket (`http(s)://` URLs connect to `ws(s)://…/asap/ws`).
    WebSocket,
}

/// Settings of the WebSocket transport. `Default` follows the reference (section 11.8)
/// except where noted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebSocketOptions {
    /// Time to open a connection (10 s).
    pub open_timeout: Duration,
    /// Time to wait for the ack of an envelope that asks for one before retransmitting
    /// it (30 s), doubling with each retransmission.
    pub ack_timeout: Duration,
    /// Retransmissions before giving up (3); then the request fails with
    /// `NotAcknowledged` and the circuit breaker records a failure.
    pub ack_retries: u32,
    /// Reconnect when the connection drops (on; the reference's default is off).
    pub reconnect: bool,
    /// First reconnection delay (1 s), doubled per attempt ...
    pub reconnect_base: Duration,
    /// ... up to this (30 s), each with ±20 % jitter.
    pub reconnect_cap: Duration,
    /// Attempts before the connection gives up (`None`: unlimited; default 10).
    pub reconnect_max_attempts: Option<u32>,
    /// Protocol-level ping interval (30 s) ...
    pub ping_interval: Duration,
    /// ... and how long without any frame from the server counts as a dead connection
    /// (90 s), which is then reconnected.
    pub stale_after: Duration,
    /// Connections kept (one per agent URL; 64).
    pub max_connections: usize,
    /// A connection with nothing in flight for this long is closed (60 s).
    pub idle_timeout: Duration,
    /// Pushed envelopes buffered per connection for slow subscribers (256).
    pub push_buffer: usize,
    /// Frames of one stream ([`Client::stream_websocket`](crate::client::Client::stream_websocket))
    /// buffered while its reader is slower than the agent (256); past it the stream ends
    /// with [`WebSocketError::StreamBacklog`](crate::client::WebSocketError::StreamBacklog).
    pub stream_buffer: usize,
    /// When the circuit breaker for an agent is open, send over HTTP instead (on).
    pub http_fallback: bool,
    /// Whether the handshake carries `traceparent` (set from
    /// `ClientBuilder::trace_context`).
    pub(crate) trace_context: bool,
}

impl Default for WebSocketOptions {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(30),
            ack_retries: 3,
            reconnect: true,
            reconnect_base: Duration::from_secs(1),
            reconnect_cap: Duration::from_secs(30),
            reconnect_max_attempts: Some(10),
            ping_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(90),
            max_connections: 64,
            idle_timeout: Duration::from_secs(60),
            push_buffer: 256,
            stream_buffer: 256,
            http_fallback: true,
            trace_context: true,
        }
    }
}

/// Payload types whose envelopes the client marks `requires_ack`: the state-changing
/// ones of the payload table ([`PayloadType::is_state_changing`]) in any spelling.
pub(crate) fn needs_ack(payload_type: &str) -> bool {
    PayloadType::from_wire(payload_type).is_some_and(PayloadType::is_state_changing)
}

/// Whether `url` names a WebSocket endpoint.
pub(crate) fn is_websocket_url(url: &str) -> bool {
    url.starts_with("ws://") || url.starts_with("wss://")
}

/// The `ws(s)://…/asap/ws` URL of an agent given by any of its URLs.
///
/// ```
/// # use asap_protocol::client::websocket_url;
/// assert_eq!(websocket_url("http://127.0.0.1:8000"), "ws://127.0.0.1:8000/asap/ws");
/// assert_eq!(websocket_url("https://a.example/base/"), "wss://a.example/base/asap/ws");
/// assert_eq!(websocket_url("ws://h:1/asap/ws"), "ws://h:1/asap/ws");
/// ```
pub fn websocket_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    };
    if url.ends_with("/asap/ws") {
        url
    } else {
        format!("{url}/asap/ws")
    }
}

/// The `http(s)://` base URL of an agent given by its WebSocket URL.
///
/// ```
/// # use asap_protocol::client::http_base_url;
/// assert_eq!(http_base_url("ws://127.0.0.1:8000/asap/ws"), "http://127.0.0.1:8000");
/// assert_eq!(http_base_url("wss://a.example/base/asap/ws"), "https://a.example/base");
/// ```
pub fn http_base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/asap/ws").unwrap_or(url);
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

/// Open connections, one per agent URL.
pub(crate) struct Pool {
    connections: Mutex<HashMap<String, Arc<Connection>>>,
    /// One lock per URL being opened, so concurrent first calls to an agent share one
    /// connection while openings to other agents go ahead.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The TLS configuration of `wss://` connections.
    tls: Arc<rustls::ClientConfig>,
}

impl Pool {
    /// A pool whose `wss://` connections use `tls`.
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            connections: Mutex::default(),
            opening: Mutex::default(),
            tls,
        }
    }

    /// The connection to `url` whose handshake offers `offer` (`ASAP-Version`; none
    /// for 1.1), opened when there is none (or it gave up). Connections with different
    /// offers to one agent are different connections (the dialect is per connection).
    pub(crate) async fn get(
        &self,
        (url, offer): (&str, Option<HeaderValue>),
        credentials: Credentials,
        options: &WebSocketOptions,
    ) -> Result<Arc<Connection>, ClientError> {
        let key = match &offer {
            Some(offer) => format!("{url} {}", offer.to_str().unwrap_or_default()),
            None => url.to_owned(),
        };
        if let Some(found) = self.live(&key, options) {
            return Ok(found);
        }
        let gate = self
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let _opening = gate.lock().await;
        if let Some(found) = self.live(&key, options) {
            return Ok(found);
        }
        let tls = url.starts_with("wss://").then(|| self.tls.clone());
        let opened = Connection::open((url.to_owned(), offer), tls, credentials, options.clone())
            .await
            .map(|connection| self.insert(&key, Arc::new(connection), options));
        // Only now, with the connection pooled (or the attempt failed) and the gate
        // still held, may a newcomer find no gate: it then finds the connection.
        let mut opening = self.opening.lock().unwrap_or_else(PoisonError::into_inner);
        if opening.get(&key).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
            opening.remove(&key);
        }
        opened
    }

    /// Pools `connection` under `url` (its pool key), evicting the longest idle one when full.
    fn insert(
        &self,
        url: &str,
        connection: Arc<Connection>,
        options: &WebSocketOptions,
    ) -> Arc<Connection> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connections.len() >= options.max_connections.max(1) {
            // Evict the connection idle the longest (any one when none is idle).
            let victim = connections
                .iter()
                .max_by_key(|(_, c)| c.idle_for().unwrap_or_default())
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim
                && let Some(old) = connections.remove(&victim)
            {
                old.close();
            }
        }
        connections.insert(url.to_owned(), connection.clone());
        connection
    }

    /// A usable pooled connection; closes idle and dead ones on the way.
    fn live(&self, url: &str, options: &WebSocketOptions) -> Option<Arc<Connection>> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.retain(|key, c| {
            let idle = c
                .idle_for()
                .is_some_and(|d| d > options.idle_timeout && key != url);
            let keep = !c.is_closed() && !idle;
            if !keep {
                c.close();
            }
            keep
        });
        connections.get(url).cloned()
    }

    /// Number of open connections.
    pub(crate) fn len(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spellings(t: PayloadType) -> impl Iterator<Item = &'static str> {
        std::iter::once(t.as_str()).chain(t.aliases().iter().copied())
    }

    #[test]
    fn acks_exactly_the_state_changing_types_in_every_spelling() {
        for t in PayloadType::ALL {
            for name in spellings(t) {
                assert_eq!(needs_ack(name), t.is_state_changing(), "{name}");
            }
        }
        let acked: Vec<&str> = PayloadType::ALL
            .into_iter()
            .flat_map(spellings)
            .filter(|name| needs_ack(name))
            .collect();
        assert_eq!(
            acked,
            [
                "task.request",
                "TaskRequest",
                "task.cancel",
                "TaskCancel",
                "message.send",
                "MessageSend",
                "message_send",
                "state.restore",
                "StateRestore",
                "state_restore",
            ]
        );
        assert!(!needs_ack("Task.Request"));
        assert!(!needs_ack("task.response"));
    }
}
