//! Dialect negotiation (`ASAP-Version`, `docs/asap-2.md` section 1): a middleware on
//! the JSON-RPC routes that picks each request's [`Dialect`] before anything else looks
//! at the request (body size, OAuth2, JSON), stores it in the request's extensions for
//! the route, and echoes a negotiated 2.x version in the response.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::response::json_response;
use crate::model::{Dialect, VersionIncompatible};
use crate::rpc::{JsonRpcError, JsonRpcErrorResponse};

/// The `ASAP-Version` header.
pub(crate) fn asap_version() -> HeaderName {
    HeaderName::from_static("asap-version")
}

/// The routes whose `POST`s are negotiated;
/// every other method and path leaves the header alone, as the reference does.
const NEGOTIATED_PATHS: [&str; 2] = ["/asap", "/asap/stream"];

/// The dialects a server accepts ([`super::ServerConfig::dialects`]).
pub(crate) type Accepted = Arc<[Dialect]>;

/// Negotiates the dialect of a `POST` to a JSON-RPC route. Accepted: the request goes
/// on with the [`Dialect`] in its extensions, and a 2.x answer carries
/// `ASAP-Version: <negotiated>` (a 1.1 answer is left exactly as it was). Refused: the
/// reference's `-32000` answer, without reading the body.
pub(crate) async fn negotiate(
    State(accepted): State<Accepted>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || !NEGOTIATED_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let header = request.headers().get(asap_version());
    match Dialect::negotiate(header, &accepted) {
        Ok(dialect) => {
            request.extensions_mut().insert(dialect);
            let mut response = next.run(request).await;
            if dialect.is_2x() {
                response
                    .headers_mut()
                    .insert(asap_version(), HeaderValue::from_static(dialect.as_str()));
            }
            response
        }
        Err(refusal) => {
            tracing::warn!(
                path = request.uri().path(),
                requested = %refusal.requested,
                "ASAP protocol version incompatible"
            );
            refuse(&refusal)
        }
    }
}

/// The answer to a request (or a WebSocket upgrade) whose `ASAP-Version` names no
/// accepted dialect.
pub(crate) fn refuse(refusal: &VersionIncompatible) -> Response {
    let body = JsonRpcErrorResponse::new(JsonRpcError::version_incompatible(refusal), None);
    let mut response = json_response(StatusCode::OK, &body);
    response.headers_mut().insert(
        asap_version(),
        HeaderValue::from_static(refusal.answer_version().as_str()),
    );
    super::metrics::refused(response, super::RefusalReason::Version)
}
