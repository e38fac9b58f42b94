//! Entry points for the fuzz harnesses in `fuzz/` (feature `fuzzing`): parsing steps
//! the server runs internally, reachable from outside only here.
//!
//! Not an API: hidden from the documentation, free to change in any release, and never
//! to be enabled by an application.

use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, decode_header};

pub use crate::server::{BodyRejection, Coding};
use crate::server::{Server, decode_request_body, request_coding};

/// The coding a request declares with this `Content-Encoding` value (pipeline step 4).
pub fn content_coding(content_encoding: &[u8]) -> Result<Coding, BodyRejection> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_encoding) {
        headers.insert(header::CONTENT_ENCODING, value);
    }
    request_coding(&headers)
}

/// Undoes a request body's coding within `max` bytes (pipeline step 6).
pub fn decode_body(raw: Vec<u8>, coding: Coding, max: usize) -> Result<Vec<u8>, BodyRejection> {
    decode_request_body(raw, coding, max)
}

/// The frames a WebSocket connection of `server` sends in answer to one text frame
/// (acks, pushes and the JSON-RPC answer; nothing for ignored frames).
pub async fn websocket_text_frame(server: &Server, text: &str) -> Vec<String> {
    server.answer_text_frame(text).await
}

/// The key for `token` in a JWK set document (as a JWKS endpoint serves it), chosen as
/// the JWT validator chooses it: `Ok(None)` when the set has no key for the token, `Err`
/// when the token's header or the document is unusable.
pub fn jwks_key(document: &[u8], token: &str) -> Result<Option<(Jwk, DecodingKey)>, String> {
    let header = decode_header(token).map_err(|e| e.to_string())?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
    ) {
        return Err("algorithm not allowed".into());
    }
    let keys: JwkSet = serde_json::from_slice(document).map_err(|e| e.to_string())?;
    let Some(jwk) = crate::auth::pick_jwk(&keys, header.kid.as_deref(), header.alg) else {
        return Ok(None);
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    Ok(Some((jwk, key)))
}
