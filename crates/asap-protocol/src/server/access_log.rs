//! The access log: one `info` event per HTTP request, target `asap_protocol::access`,
//! with `method`, `path`, `status`, `rpc_code` (a JSON-RPC error's code), `payload_type`
//! (the metric label: a registered type or `other`), `envelope_id`, `duration_ms`,
//! `client` (after trusted proxies) and `trace_id`. The subscriber's format (text or
//! JSON) applies; `RUST_LOG=asap_protocol::access=off` silences it, and when the target
//! is off the middleware costs one filter check.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
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
    let record = Arc::new(Mutex::new(AccessInfo::default()));
    let response = RECORD.scope(record.clone(), next.run(request)).await;
    let info = std::mem::take(&mut *record.lock().unwrap_or_else(|e| e.into_inner()));
    let trace_id = info
        .trace_id
        .or_else(|| header_trace.map(|c| c.parent.trace_id_hex()));
    tracing::info!(
        target: TARGET,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        rpc_code = info.rpc_code,
        payload_type = info.payload_type.as_deref(),
        envelope_id = info.envelope_id.as_deref(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        client = %client,
        trace_id = trace_id.as_deref(),
        "request"
    );
    response
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
