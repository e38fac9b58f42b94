//! Response bodies read with a cap, enforced while streaming: a malicious or broken
//! peer cannot make the client buffer a body larger than the cap (an endless or 2 GB
//! body used to be read whole).

use super::ClientError;

/// The largest bodies the client reads, per kind. A larger body fails with
/// [`ClientError::ResponseTooLarge`] as soon as it passes the cap (at once when
/// `Content-Length` says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseLimits {
    /// The answer to a JSON-RPC send (16 MiB: above the 10 MiB a server accepts).
    pub envelope: usize,
    /// A manifest (1 MiB; real ones are a few KiB).
    pub manifest: usize,
    /// A health document (64 KiB).
    pub health: usize,
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            envelope: 16 * 1024 * 1024,
            manifest: 1024 * 1024,
            health: 64 * 1024,
        }
    }
}

impl ResponseLimits {
    /// The same cap for every kind.
    pub fn all(limit: usize) -> Self {
        Self {
            envelope: limit,
            manifest: limit,
            health: limit,
        }
    }
}

/// The largest identity document read (JWKS, OIDC discovery, introspection answer): 1 MiB.
pub const MAX_IDENTITY_DOCUMENT: usize = 1024 * 1024;
/// The largest Lite Registry document read: 16 MiB.
pub const MAX_REGISTRY_DOCUMENT: usize = 16 * 1024 * 1024;

/// The body of `response`, at most `limit` bytes; `what` names it in the error.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
    what: &'static str,
) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::ResponseTooLarge { what, limit };
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An identity document (JWKS, OIDC discovery, introspection answer) parsed from a body
/// of at most [`MAX_IDENTITY_DOCUMENT`] bytes; the error says what went wrong, for the
/// caller's own error type.
#[cfg(feature = "oauth2")]
pub(crate) async fn read_identity_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &'static str,
) -> Result<T, String> {
    let body = read_capped(response, MAX_IDENTITY_DOCUMENT, what)
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not a valid {what}: {e}"))
}

/// Like [`read_capped`], as text (invalid UTF-8 replaced, as reqwest's `text()` does).
pub(crate) async fn read_capped_text(
    response: reqwest::Response,
    limit: usize,
    what: &'static str,
) -> Result<String, ClientError> {
    let body = read_capped(response, limit, what).await?;
    Ok(match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
