//! Building HTTP responses with the reference's bytes (S1 JSON).

use axum::body::Body;
use axum::response::Response;
use http::{StatusCode, header};
use serde::Serialize;
use serde_json::json;

use crate::json;

/// A JSON response with S1 bytes and `content-type: application/json`.
pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json::to_compact(body)))
        .expect("valid response")
}

/// A FastAPI-style `{"detail": ...}` error.
pub(crate) fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({"detail": message.into()}))
}

pub(crate) async fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not Found")
}

pub(crate) async fn method_not_allowed() -> Response {
    detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}
