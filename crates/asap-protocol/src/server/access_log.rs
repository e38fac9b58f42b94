//! The access log: one `info` event per HTTP request, target `asap_protocol::access`,
//! with `method`, `path`, `status`, `rpc_code` (a JSON-RPC error's code), `payload_type`
//! (the metric label: a registered type or `other`), `envelope_id`, `duration_ms`,
//! `client` (after trusted proxies) and `trace_id`. The subscriber's format (text or
//! JSON) applies; `RUST_LOG=asap_protocol::access=off` silences it, and when the target
//! is off the middleware costs one filter check.
//!
//! A WebSocket connection gets the line of its upgrade (`GET`, status `101`) and then
//! one line per JSON-RPC message it handles (`websocket_message`), with the same
//! fields: `method` is `WS` (rather than the JSON-RPC method, `asap.send` for every
//! message past the method check: `WS` tells these lines from the HTTP ones), `path`
//! and `client` the upgrade's, `status` the HTTP status the pipeline computed for the
//! message (`200` for an answer, JSON-RPC errors included; `400`, `413`, `415` or `503`
//! when it was refused), and `trace_id` the message's request span's (its envelope's
//! `trace_id` when it carries one with `extensions.span_id`, else the handshake's
//! `traceparent`'s, see `server::trace`). `duration_ms` runs from when the
//! message's handling starts (it may have waited in the connection's queue). A frame
//! that is not JSON or answers the heartbeat is not a message and has no line; neither
//! has the message that exceeds the connection's message rate (the connection closes
//! with `1008`). Off for the target, a message costs one filter check.

use std::fmt::Display;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::AppState;
use crate::trace_context::TraceContext;

/// The access log's `tracing` target (`RUST_LOG=asap_protocol::access=off` silences it).
pub const TARGET: &str = "asap_protocol::access";

/// The longest path and envelope id logged, in bytes (longer ones are cut at a
/// character boundary).
const MAX_FIELD: usize = 256;

/// What the pipeline learns of a request, for its access-log line.
#[derive(Debug, Default)]
struct AccessInfo {
    status: Option<StatusCode>,
    rpc_code: Option<i64>,
    payload_type: Option<String>,
    envelope_id: Option<String>,
    trace_id: Option<String>,
}

tokio::task_local! {
    static RECORD: Arc<Mutex<AccessInfo>>;
}

fn with_record(update: impl FnOnce(&mut AccessInfo)) {
    let _ = RECORD.try_with(|record| {
        if let Ok(mut info) = record.lock() {
            update(&mut info);
        }
    });
}

/// Notes a request's outcome: the JSON-RPC error code (none for a success) and the
/// `payload_type` label. Does nothing outside the access log's middleware.
pub(crate) fn note_outcome(rpc_code: Option<i64>, payload_type: &str) {
    with_record(|info| {
        info.rpc_code = rpc_code;
        info.payload_type = Some(payload_type.to_owned());
    });
}

/// Notes the HTTP status the pipeline computed for a request (a WebSocket message's
/// line has no response to read it from). Does nothing outside the access log.
pub(crate) fn note_status(status: StatusCode) {
    with_record(|info| info.status = Some(status));
}

/// Notes the request envelope's id.
pub(crate) fn note_envelope(id: &str) {
    with_record(|info| info.envelope_id = Some(cap(id).to_owned()));
}

/// Notes the trace id the request runs in (the request span's).
pub(crate) fn note_trace() {
    if RECORD.try_with(|_| ()).is_err() {
        return;
    }
    if let Some(context) = crate::trace_context::current() {
        with_record(|info| info.trace_id = Some(context.parent.trace_id_hex()));
    }
}

fn cap(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs `work` with a fresh record in scope: its output and what the pipeline noted.
async fn recorded<F: Future>(work: F) -> (F::Output, AccessInfo) {
    let record = Arc::new(Mutex::new(AccessInfo::default()));
    let output = RECORD.scope(record.clone(), work).await;
    let info = std::mem::take(&mut *record.lock().unwrap_or_else(|e| e.into_inner()));
    (output, info)
}

/// One line: what the request was, its outcome (`info`), and where it came from.
struct Line<'a> {
    method: &'a dyn Display,
    path: &'a str,
    status: StatusCode,
    started: Instant,
    client: IpAddr,
    /// The `traceparent` the request (or the WebSocket handshake) carried: the trace id
    /// when the pipeline noted none.
    header_trace: Option<TraceContext>,
}

impl Line<'_> {
    fn write(self, info: AccessInfo) {
        let trace_id = info
            .trace_id
            .or_else(|| self.header_trace.map(|c| c.parent.trace_id_hex()));
        tracing::info!(
            target: TARGET,
            method = %self.method,
            path = %self.path,
            status = self.status.as_u16(),
            rpc_code = info.rpc_code,
            payload_type = info.payload_type.as_deref(),
            envelope_id = info.envelope_id.as_deref(),
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            client = %self.client,
            trace_id = trace_id.as_deref(),
            "request"
        );
    }
}

/// The middleware writing the line once the response is ready.
pub(crate) async fn log(
    State(state): State<AppState>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
    next: Next,
) -> Response {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return next.run(request).await;
    }
    let started = Instant::now();
    let method = request.method().clone();
    let path = cap(request.uri().path()).to_owned();
    let client = state.client_ip(connect_info, request.headers());
    let header_trace = TraceContext::from_headers(request.headers());
    let (response, info) = recorded(next.run(request)).await;
    let line = Line {
        method: &method,
        path: &path,
        status: response.status(),
        started,
        client,
        header_trace,
    };
    line.write(info);
    response
}

/// What the message lines of one WebSocket connection share: the upgrade's path and
/// client address (after trusted proxies).
#[derive(Debug, Clone)]
pub(crate) struct WebSocketConnection {
    path: Arc<str>,
    client: IpAddr,
}

impl WebSocketConnection {
    /// The connection upgraded at `path` by `client`.
    pub(crate) fn new(path: &str, client: IpAddr) -> Self {
        Self {
            path: cap(path).into(),
            client,
        }
    }
}

/// The `method` of a WebSocket message's line.
const WEBSOCKET_METHOD: &str = "WS";

/// Handles one message of a WebSocket connection (`handling`, whose pipeline notes
/// its outcome) and writes its line; `headers` are the handshake's.
pub(crate) async fn websocket_message<F: Future>(
    connection: &WebSocketConnection,
    headers: &HeaderMap,
    handling: F,
) -> F::Output {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return handling.await;
    }
    let started = Instant::now();
    let (output, info) = recorded(handling).await;
    let line = Line {
        method: &WEBSOCKET_METHOD,
        path: &connection.path,
        status: info.status.unwrap_or(StatusCode::OK),
        started,
        client: connection.client,
        header_trace: TraceContext::from_headers(headers),
    };
    line.write(info);
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        assert_eq!(cap("short"), "short");
        let long = "é".repeat(200);
        let cut = cap(&long);
        assert!(cut.len() <= MAX_FIELD && cut.len() >= MAX_FIELD - 1);
        assert!(long.starts_with(cut));
    }
}
