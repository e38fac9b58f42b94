//! A connection in the 2.x dialect (`docs/asap-2.md` section 9): the frames the
//! 2.5.10 reference writes where they differ from 1.1, and streaming, one result frame
//! per streamed envelope, all with the request's JSON-RPC id.
//!
//! The reference decides to stream by the payload type alone: when a streaming handler
//! is registered for it, every request of that type is streamed (there is no request
//! flag; its unary client resolves on the first frame, its streaming client reads until
//! the chunk with `final: true`). Answers keep the reference's serialisations: result
//! frames and internal errors S2 (`json.dumps`), the other errors S1 (the HTTP
//! pipeline's bodies, forwarded), the thread-pool 503 re-framed as a JSON-RPC error.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::connection::Closed;
use crate::json;
use crate::model::Dialect;
use crate::rpc::{ErrorCode, JsonRpcError, JsonRpcErrorResponse};
use crate::server::AppState;
use crate::server::auth::AuthenticatedCaller;
use crate::server::handler::HandlerError;
use crate::server::pipeline::{self, Input, Sent};
use crate::server::stream::{AbortOnDrop, Sink, StreamingHandler, Work};

/// The streaming handler that serves `request` (a parsed JSON-RPC request), if any:
/// the payload type named by its envelope has one. Only a routing decision; the
/// request is checked in full before the handler runs.
pub(super) fn streaming_handler(
    state: &AppState,
    request: &Value,
) -> Option<Arc<dyn StreamingHandler>> {
    let payload_type = request
        .get("params")?
        .get("envelope")?
        .get("payload_type")?
        .as_str()?;
    state.registry.get_streaming(payload_type).cloned()
}

/// The frame of a unary answer (`status`, S1 `body` from the pipeline) in a 2.x
/// connection: a result or an internal error re-serialised S2, the thread-pool 503
/// re-framed as a JSON-RPC error with the request's `id`, anything else as it is.
pub(super) fn unary_frame(status: StatusCode, body: String, id: Option<&Value>) -> String {
    let Ok(answer) = json::parse(body.as_bytes()) else {
        return body;
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return match answer.get("rpc_code") {
            Some(_) => recoverable_error_frame(&answer, id),
            None => body,
        };
    }
    let internal = answer.pointer("/error/code").and_then(Value::as_i64)
        == Some(ErrorCode::InternalError.code());
    if answer.get("result").is_some() || internal {
        json::to_python_default(&answer)
    } else {
        body
    }
}

/// The reference's re-framing of an HTTP 503 body with recovery hints
/// (`_send_ws_recoverable_error_frame`): its client cannot read the flat 503 body.
fn recoverable_error_frame(body: &Value, id: Option<&Value>) -> String {
    let code = body
        .get("rpc_code")
        .and_then(Value::as_i64)
        .unwrap_or(ErrorCode::InternalError.code());
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Service Temporarily Unavailable");
    let mut data = Map::new();
    let recoverable = body.get("recoverable").and_then(Value::as_bool);
    data.insert("recoverable".into(), recoverable.unwrap_or(true).into());
    for key in ["retry_after_ms", "fallback_action"] {
        if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            data.insert(key.into(), value.clone());
        }
    }
    if let Some(details) = body.get("details").filter(|d| is_truthy(d)) {
        data.insert("details".into(), details.clone());
    }
    json::to_python_default(&json!({
        "jsonrpc": "2.0",
        "error": {"code": code, "message": message, "data": data},
        "id": response_id(id),
    }))
}

/// Python's truthiness of a JSON value (`if raw.get("details")`).
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::String(text) => !text.is_empty(),
        Value::Bool(true) | Value::Number(_) => true,
    }
}

/// The id the reference answers with: the request's, `""` when it has none.
fn response_id(id: Option<&Value>) -> Value {
    match id {
        None | Some(Value::Null) => Value::String(String::new()),
        Some(id) => id.clone(),
    }
}

/// The S2 internal-error frame (`_send_internal_error_frame`), with the request's id.
fn internal_error_frame(id: &Value, detail: Option<(String, &str)>) -> String {
    let data = match detail {
        Some((error, kind)) => json!({"error": error, "type": kind}),
        None => json!({"error": "Internal server error"}),
    };
    json::to_python_default(&json!({
        "jsonrpc": "2.0",
        "error": {"code": ErrorCode::InternalError.code(), "message": ErrorCode::InternalError.message(), "data": data},
        "id": id,
    }))
}

/// One request of a 2.x connection served by `handler`: checked as `POST /asap`
/// checks it, then streamed into `out` as result frames with the request's id. A
/// failure before the stream is the pipeline's answer; a handler failure mid-stream
/// ends it with a JSON-RPC error frame (an `asap:*` error as its own code, S1; any
/// other failure `-32603`, S2). When the connection's send queue closes (the client
/// is gone), the handler is aborted. `Ok(None)` when the stream ended without error,
/// else the error frame sent.
pub(super) async fn stream(
    state: &AppState,
    sent: (&HeaderMap, Option<&AuthenticatedCaller>, Dialect),
    handler: Arc<dyn StreamingHandler>,
    (input, request_id): (Input<'_>, Option<&Value>),
    out: &mpsc::Sender<String>,
    started: Instant,
) -> Result<Option<String>, Closed> {
    let (headers, caller, dialect) = sent;
    let slot = match pipeline::acquire_slot(state, dialect, started) {
        Ok(slot) => slot,
        Err((status, body)) => {
            let frame = unary_frame(status, body, request_id);
            out.send(frame.clone()).await?;
            return Ok(Some(frame));
        }
    };
    let bearer = pipeline::pre_authenticate(state, headers).await;
    let sent = Sent {
        headers,
        caller,
        push: None,
        dialect,
    };
    let prepared = match pipeline::prepare(state, sent, input, bearer).await {
        Ok(prepared) => prepared,
        Err((failure, label)) => {
            let seconds = started.elapsed().as_secs_f64();
            let (status, body) = pipeline::failure_answer(state, failure, &label, seconds);
            let frame = unary_frame(status, body, request_id);
            out.send(frame.clone()).await?;
            return Ok(Some(frame));
        }
    };
    let rpc_id = prepared.request_id.clone();
    let id = serde_json::to_value(&rpc_id).unwrap_or(Value::Null);
    let envelope = &prepared.envelope;
    let work = Work::new(
        state,
        handler,
        envelope,
        headers,
        "websocket",
        slot,
        started,
    );
    let sink = Sink::Frames {
        frames: out.clone(),
        id: id.clone(),
    };
    let mut running = AbortOnDrop(tokio::spawn(work.run(prepared, sink)));
    let outcome = tokio::select! {
        joined = &mut running.0 => joined,
        // The client is gone: dropping `running` aborts the handler.
        () = out.closed() => return Err(mpsc::error::SendError(String::new())),
    };
    let frame = match outcome {
        Ok(Ok(())) => return Ok(None),
        Ok(Err(HandlerError::Protocol(error))) => {
            let summary = error.to_string();
            let error = JsonRpcError::from_asap_2x(&summary, &error);
            json::to_compact(&JsonRpcErrorResponse::new(error, Some(rpc_id)))
        }
        Ok(Err(error)) => {
            let detail = state.config.debug.then(|| {
                let text = std::error::Error::source(&error)
                    .map_or_else(|| error.to_string(), ToString::to_string);
                (text, "HandlerError")
            });
            internal_error_frame(&id, detail)
        }
        Err(panicked) => {
            tracing::error!(error = %panicked, "streaming handler panicked");
            let detail = state
                .config
                .debug
                .then(|| (panicked.to_string(), "JoinError"));
            internal_error_frame(&id, detail)
        }
    };
    out.send(frame.clone()).await?;
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_internal_errors_become_s2_other_errors_stay_s1() {
        let result = r#"{"jsonrpc":"2.0","result":{"envelope":{"a":1.0,"b":"é"}},"id":"r"}"#;
        assert_eq!(
            unary_frame(StatusCode::OK, result.into(), None),
            r#"{"jsonrpc": "2.0", "result": {"envelope": {"a": 1.0, "b": "\u00e9"}}, "id": "r"}"#
        );
        let internal = r#"{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error","data":{"error":"Internal server error"}},"id":"r"}"#;
        assert_eq!(
            unary_frame(StatusCode::OK, internal.into(), None),
            r#"{"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error", "data": {"error": "Internal server error"}}, "id": "r"}"#
        );
        let other = r#"{"jsonrpc":"2.0","error":{"code":-32012,"message":"x"},"id":"r"}"#;
        assert_eq!(unary_frame(StatusCode::OK, other.into(), None), other);
    }

    #[test]
    fn the_thread_pool_503_is_reframed_with_the_request_id() {
        let body = r#"{"error":"Service Temporarily Unavailable","code":"asap:transport/thread_pool_exhausted","rpc_code":-32031,"message":"Thread pool exhausted","details":{"max_threads":1},"recoverable":true,"retry_after_ms":1000,"fallback_action":"retry_later"}"#;
        assert_eq!(
            unary_frame(
                StatusCode::SERVICE_UNAVAILABLE,
                body.into(),
                Some(&json!(7))
            ),
            r#"{"jsonrpc": "2.0", "error": {"code": -32031, "message": "Thread pool exhausted", "data": {"recoverable": true, "retry_after_ms": 1000, "fallback_action": "retry_later", "details": {"max_threads": 1}}}, "id": 7}"#
        );
        // Without an id the reference answers "".
        assert!(
            unary_frame(StatusCode::SERVICE_UNAVAILABLE, body.into(), None)
                .ends_with(r#""id": ""}"#)
        );
        // A 503 without recovery hints (shared state unavailable) is left alone.
        let plain = r#"{"error":"Service Unavailable"}"#;
        assert_eq!(
            unary_frame(StatusCode::SERVICE_UNAVAILABLE, plain.into(), None),
            plain
        );
    }

    #[test]
    fn internal_error_frames_carry_the_id() {
        assert_eq!(
            internal_error_frame(&json!("ws-req-1"), None),
            r#"{"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error", "data": {"error": "Internal server error"}}, "id": "ws-req-1"}"#
        );
    }
}
