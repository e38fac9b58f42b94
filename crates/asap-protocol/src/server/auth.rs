//! Manifest bearer authentication (wire spec section 10.1).
//!
//! Enabled when the manifest declares `auth` and the server has a
//! [`TokenValidator`]. Failures are JSON-RPC `-32600` answers inside HTTP 200, as the
//! reference gives them.

use async_trait::async_trait;
use http::HeaderMap;

use crate::model::Manifest;

/// The identities a transport-level authentication (OAuth2 with sender binding) proved
/// for the caller; `POST /asap` then requires the envelope `sender` to be one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedCaller {
    /// The identities the caller may act as.
    pub identities: Vec<String>,
}

/// Turns a bearer token into the agent identity (URN) it belongs to.
#[async_trait]
pub trait TokenValidator: Send + Sync {
    /// The identity, or `None` when the token is not valid.
    async fn validate(&self, token: &str) -> Option<String>;
}

/// A fixed token table: each token maps to one identity.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use asap_protocol::server::{StaticTokens, TokenValidator};
/// let tokens = StaticTokens::new([("s3cret", "urn:asap:agent:client")]);
/// assert_eq!(tokens.validate("s3cret").await.as_deref(), Some("urn:asap:agent:client"));
/// assert_eq!(tokens.validate("nope").await, None);
/// # });
/// ```
#[derive(Clone, Default)]
pub struct StaticTokens {
    tokens: std::collections::HashMap<String, String>,
}

/// Shows the identities, never the tokens.
impl std::fmt::Debug for StaticTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut identities: Vec<&String> = self.tokens.values().collect();
        identities.sort();
        f.debug_struct("StaticTokens")
            .field("identities", &identities)
            .finish_non_exhaustive()
    }
}

impl StaticTokens {
    /// A table from `(token, identity)` pairs.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            tokens: pairs
                .into_iter()
                .map(|(t, i)| (t.to_owned(), i.to_owned()))
                .collect(),
        }
    }
}

#[async_trait]
impl TokenValidator for StaticTokens {
    async fn validate(&self, token: &str) -> Option<String> {
        self.tokens.get(token).cloned()
    }
}

/// Why authentication failed, with the reference's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthFailure {
    /// No usable `Authorization: Bearer` header.
    Missing,
    /// The token was refused (or the manifest does not list `bearer`).
    Invalid,
}

impl AuthFailure {
    /// The message in `data.error`.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "Authentication required",
            Self::Invalid => "Invalid authentication token",
        }
    }
}

/// The bearer token in `Authorization`, split at the first space with the scheme
/// compared case-insensitively (FastAPI's `HTTPBearer`).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()).then(|| token.trim())
}

/// Authenticates a request against the manifest's scheme list and the validator.
pub async fn authenticate(
    manifest: &Manifest,
    validator: &dyn TokenValidator,
    headers: &HeaderMap,
) -> Result<String, AuthFailure> {
    let token = bearer_token(headers).ok_or(AuthFailure::Missing)?;
    // The reference looks for the exact lower-case "bearer", so `["Bearer"]` locks
    // everyone out there; the scheme is compared case-insensitively here (spec 17.12).
    let schemes = manifest
        .auth
        .as_ref()
        .map(|a| a.schemes.as_slice())
        .unwrap_or_default();
    if !schemes.iter().any(|s| s.eq_ignore_ascii_case("bearer")) {
        return Err(AuthFailure::Invalid);
    }
    validator.validate(token).await.ok_or(AuthFailure::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AuthScheme;
    use http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn header_parsing() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn scheme_list_and_validator() {
        let tokens = StaticTokens::new([("good", "urn:asap:agent:c")]);
        let mut manifest = Manifest::new("urn:asap:agent:s", "S", "1.0", "d", "http://x/asap");
        manifest.auth = Some(AuthScheme {
            schemes: vec!["bearer".into()],
            oauth2: None,
        });
        assert_eq!(
            authenticate(&manifest, &tokens, &headers("Bearer good")).await,
            Ok("urn:asap:agent:c".into())
        );
        assert_eq!(
            authenticate(&manifest, &tokens, &headers("Bearer bad")).await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(
            authenticate(&manifest, &tokens, &HeaderMap::new()).await,
            Err(AuthFailure::Missing)
        );
        manifest.auth = Some(AuthScheme {
            schemes: vec!["Bearer".into()],
            oauth2: None,
        });
        assert_eq!(
            authenticate(&manifest, &tokens, &headers("Bearer good")).await,
            Ok("urn:asap:agent:c".into())
        );
        manifest.auth = Some(AuthScheme {
            schemes: vec!["basic".into()],
            oauth2: None,
        });
        assert_eq!(
            authenticate(&manifest, &tokens, &headers("Bearer good")).await,
            Err(AuthFailure::Invalid)
        );
        assert_eq!(AuthFailure::Missing.message(), "Authentication required");
    }
}
