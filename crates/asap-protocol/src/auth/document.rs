//! Fetching an identity document (JWKS, OIDC discovery, introspection answer): one
//! request, a success status, a body of at most the caller's limit
//! ([`MAX_IDENTITY_DOCUMENT`](crate::client::MAX_IDENTITY_DOCUMENT) by default), JSON.

use std::time::Duration;

use reqwest::StatusCode;

use crate::client::ClientError;

/// Why an identity document could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// No answer (connection refused, timeout, ...).
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    /// An answer whose status is not a success.
    #[error("HTTP {0}")]
    Status(StatusCode),
    /// The body could not be read (larger than the cap, connection lost).
    #[error("the body could not be read")]
    Body(#[source] Box<ClientError>),
    /// The body is not the expected document.
    #[error("not a valid {what}")]
    Parse {
        /// What was expected (`JWK set`, `OIDC discovery document`, ...).
        what: &'static str,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
}

/// The HTTP client identity documents are fetched with: 10 s timeout.
pub(crate) fn identity_http() -> Result<reqwest::Client, reqwest::Error> {
    crate::client::tls::http_builder()
        .timeout(Duration::from_secs(10))
        .build()
}

/// Sends `request` and parses the answer as `what`.
pub(crate) async fn fetch_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &'static str,
    limit: usize,
) -> Result<T, DocumentError> {
    let response = request.send().await.map_err(DocumentError::Request)?;
    if !response.status().is_success() {
        return Err(DocumentError::Status(response.status()));
    }
    let body = crate::client::body::read_capped(response, limit, what)
        .await
        .map_err(|e| DocumentError::Body(Box::new(e)))?;
    serde_json::from_slice(&body).map_err(|source| DocumentError::Parse { what, source })
}
