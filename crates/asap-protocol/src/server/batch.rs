//! JSON-RPC batches on `POST /asap` (ASAP 2.x, `docs/asap-2.md` section 6.2), as the
//! 2.5.10 reference serves them (`asap/transport/routes/jsonrpc.py:_handle_batch`): a
//! JSON array body whose members are answered one by one, concurrently, through the
//! single-request pipeline, the answers in request order in one JSON array.
//!
//! The pipeline hands a batch here only in a 2.x dialect and only for an uncompressed
//! body (the reference recognises a batch in the raw body, so a gzip or br array falls
//! through to the single-request path and its `-32600` "must be an object").

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::body::Body;
use axum::response::Response;
use futures_util::future::join_all;
use http::{StatusCode, header};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::AppState;
use super::pipeline::charge;
use crate::json;
use crate::rpc::{ErrorCode, JsonRpcError, JsonRpcErrorResponse};

/// Answers the batch `members`: one `-32600` object for an empty or oversized batch
/// (without counting it against the rate limit), else the rate limiter charged one hit
/// per member (HTTP 429 for the whole batch when that is too many) and an array of the
/// members' answers in their order. `respond` is the single-request pipeline for one
/// member object; a member that is not an object gets the reference's `-32600` with
/// `data: null` without reaching it. An answer the pipeline gives with another status
/// than 200 (503: no handler slot, shared state unavailable) is embedded as its body.
pub(crate) async fn answer<F, Fut>(
    state: &AppState,
    client: IpAddr,
    members: Vec<Value>,
    started: Instant,
    respond: F,
) -> Response
where
    F: Fn(Value) -> Fut,
    Fut: Future<Output = (StatusCode, String)>,
{
    let max = state.config.max_batch_size;
    let Some(hits) = u32::try_from(members.len()).ok().and_then(NonZeroU32::new) else {
        return refuse("empty batch");
    };
    if members.len() > max {
        return refuse(&format!("batch size {} exceeds max {max}", members.len()));
    }
    if let Err(refusal) = charge(state, client, hits, started).await {
        return refusal;
    }
    tracing::debug!(members = members.len(), "JSON-RPC batch");
    let answers = join_all(members.into_iter().map(|member| async {
        if member.is_object() {
            respond(member).await.1
        } else {
            not_an_object()
        }
    }))
    .await;
    let mut body = String::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1);
    body.push('[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(answer);
    }
    body.push(']');
    json_body(body)
}

/// The one answer to a batch refused as a whole (empty, too large).
fn refuse(reason: &str) -> Response {
    let error = JsonRpcError::new(ErrorCode::InvalidRequest, json!({"reason": reason}));
    json_body(json::to_compact(&JsonRpcErrorResponse::new(error, None)))
}

/// The answer to a member that is not an object: `-32600` with `data: null`.
fn not_an_object() -> String {
    let error = JsonRpcError::new(ErrorCode::InvalidRequest, Value::Null);
    json::to_compact(&JsonRpcErrorResponse::new(error, None))
}

fn json_body(body: String) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_that_is_not_an_object_gets_null_data() {
        assert_eq!(
            not_an_object(),
            r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":null},"id":null}"#
        );
    }
}
