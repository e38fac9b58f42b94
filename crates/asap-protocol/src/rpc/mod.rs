//! JSON-RPC 2.0 as ASAP uses it (wire spec sections 9.3 and 9.4): one method,
//! `asap.send`, whose `params.envelope` carries an [`Envelope`].
//!
//! Requests are validated like the reference's `JsonRpcRequest` model (so the same
//! `validation_errors` come back), and every response is built here with the
//! reference's member order.

mod request;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::model::{AsapError, Envelope, VersionIncompatible};

pub use request::{JsonRpcRequest, RequestId, parse_request};

/// The only method ASAP serves.
pub const ASAP_METHOD: &str = "asap.send";

/// The most requests in one JSON-RPC batch (ASAP 2.x), as the 2.5.10 reference
/// (`DEFAULT_MAX_BATCH_SIZE`): the server's default limit and the client's.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 50;

/// A JSON-RPC error code with its fixed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// -32700: the body is not JSON.
    ParseError,
    /// -32600: not a valid JSON-RPC request, or authentication failed.
    InvalidRequest,
    /// -32601: unknown method, or no handler for the payload type.
    MethodNotFound,
    /// -32602: bad params, envelope, timestamp or nonce.
    InvalidParams,
    /// -32603: the server failed.
    InternalError,
    /// -32001: the WebSocket per-connection rate limit (ASAP-specific).
    WsRateLimited,
    /// -32000: no `ASAP-Version` token names a dialect the server accepts (ASAP 2.x).
    VersionIncompatible,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::WsRateLimited => -32001,
            Self::VersionIncompatible => -32000,
        }
    }

    /// The fixed message the reference sends with the code.
    pub fn message(self) -> &'static str {
        match self {
            Self::ParseError => "Parse error",
            Self::InvalidRequest => "Invalid request",
            Self::MethodNotFound => "Method not found",
            Self::InvalidParams => "Invalid params",
            Self::InternalError => "Internal error",
            Self::WsRateLimited => "Rate limit exceeded",
            Self::VersionIncompatible => "ASAP protocol version incompatible",
        }
    }

    /// The code for a number, if it is one of the above.
    pub fn from_code(code: i64) -> Option<Self> {
        [
            Self::ParseError,
            Self::InvalidRequest,
            Self::MethodNotFound,
            Self::InvalidParams,
            Self::InternalError,
            Self::WsRateLimited,
            Self::VersionIncompatible,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}

/// The `error` member of an error response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonRpcError {
    /// The numeric code.
    pub code: i64,
    /// The message.
    pub message: String,
    /// Details; always an object in ASAP.
    pub data: Option<Map<String, Value>>,
}

impl JsonRpcError {
    /// An error with the code's fixed message.
    pub fn new(code: ErrorCode, data: Value) -> Self {
        let data = match data {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => Some(Map::from_iter([("error".to_owned(), other)])),
        };
        Self {
            code: code.code(),
            message: code.message().to_owned(),
            data,
        }
    }

    /// `-32602` carrying an `asap:*` error the way the reference reports timestamp and
    /// nonce errors: `{"error": <summary>, "code", "message", "details"}`.
    pub fn from_asap(summary: &str, error: &AsapError) -> Self {
        let mut data = Map::new();
        data.insert("error".into(), summary.into());
        data.insert("code".into(), error.code().into());
        data.insert("message".into(), error.to_string().into());
        data.insert("details".into(), Value::Object(error.details()));
        Self::new(ErrorCode::InvalidParams, Value::Object(data))
    }

    /// An `asap:*` error the way a 2.x server reports it: the error's own code
    /// ([`AsapError::rpc_code`]), its message, and [`AsapError::rpc_data`] with
    /// `error` set to `summary`.
    pub fn from_asap_2x(summary: &str, error: &AsapError) -> Self {
        Self {
            code: error.rpc_code(),
            message: error.to_string(),
            data: Some(error.rpc_data(summary)),
        }
    }

    /// `-32000` refusing an `ASAP-Version` header, with the reference's `data`
    /// (`{"requested", "supported"}`).
    pub fn version_incompatible(refusal: &VersionIncompatible) -> Self {
        Self::new(ErrorCode::VersionIncompatible, refusal.data())
    }
}

/// A success response: `{"jsonrpc":"2.0","result":{"envelope":...},"id":...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonRpcResponse {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// `{"envelope": ...}`.
    pub result: EnvelopeResult,
    /// The request's id.
    pub id: RequestId,
}

/// The `result` of a success response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvelopeResult {
    /// The response envelope.
    pub envelope: Envelope,
}

impl JsonRpcResponse {
    /// The success response for request `id`.
    pub fn new(envelope: Envelope, id: RequestId) -> Self {
        Self {
            jsonrpc: "2.0",
            result: EnvelopeResult { envelope },
            id,
        }
    }
}

/// An error response: `{"jsonrpc":"2.0","error":{...},"id":...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonRpcErrorResponse {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// The error.
    pub error: JsonRpcError,
    /// The request's id, or `null` when it is not known (never `""`).
    pub id: Option<RequestId>,
}

impl JsonRpcErrorResponse {
    /// The error response for request `id`.
    ///
    /// ```
    /// use asap_protocol::rpc::{ErrorCode, JsonRpcError, JsonRpcErrorResponse, RequestId};
    /// let r = JsonRpcErrorResponse::new(JsonRpcError::new(ErrorCode::MethodNotFound,
    ///     serde_json::json!({"method": "x"})), Some(RequestId::from("req-1")));
    /// assert_eq!(asap_protocol::json::to_compact(&r),
    ///     r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"method":"x"}},"id":"req-1"}"#);
    /// ```
    pub fn new(error: JsonRpcError, id: Option<RequestId>) -> Self {
        Self {
            jsonrpc: "2.0",
            error,
            id,
        }
    }
}

/// The body of the HTTP 429 answer, in the reference's member order (note `id`
/// before `error`, and the non-standard code 429).
pub fn rate_limited_body(retry_after: u64, limit: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": 429, "message": "Rate limit exceeded", "data": {"retry_after": retry_after, "limit": limit}}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        for code in [
            ErrorCode::ParseError,
            ErrorCode::InvalidRequest,
            ErrorCode::MethodNotFound,
            ErrorCode::InvalidParams,
            ErrorCode::InternalError,
            ErrorCode::WsRateLimited,
            ErrorCode::VersionIncompatible,
        ] {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ErrorCode::from_code(1), None);
        assert_eq!(ErrorCode::InternalError.message(), "Internal error");
    }

    #[test]
    fn asap_errors_carried_in_data() {
        let e = AsapError::TaskNotFound {
            task_id: "t".into(),
        };
        let r = JsonRpcErrorResponse::new(JsonRpcError::from_asap("Task not found", &e), None);
        assert_eq!(
            crate::json::to_compact(&r),
            r#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{"error":"Task not found","code":"asap:task/not_found","message":"Task not found: t","details":{"task_id":"t"}}},"id":null}"#
        );
    }

    #[test]
    fn version_refusal_matches_the_capture() {
        let refusal = crate::model::Dialect::negotiate(Some(b"9.9"), &crate::model::Dialect::ALL)
            .unwrap_err();
        let r = JsonRpcErrorResponse::new(JsonRpcError::version_incompatible(&refusal), None);
        assert_eq!(
            crate::json::to_compact(&r),
            r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"ASAP protocol version incompatible","data":{"requested":"9.9","supported":["2.1","2.2"]}},"id":null}"#
        );
    }

    #[test]
    fn rate_limit_body_matches_the_capture() {
        assert_eq!(
            crate::json::to_compact(&rate_limited_body(1, "10 per 1 second")),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":429,"message":"Rate limit exceeded","data":{"retry_after":1,"limit":"10 per 1 second"}}}"#
        );
    }

    #[test]
    fn non_object_data_is_wrapped() {
        let e = JsonRpcError::new(ErrorCode::InternalError, json!("boom"));
        assert_eq!(e.data.unwrap()["error"], "boom");
        assert_eq!(
            JsonRpcError::new(ErrorCode::InternalError, Value::Null).data,
            None
        );
    }
}
