//! The OAuth2 bearer middleware (wire spec section 10.2): every HTTP request whose path
//! starts with the prefix (default `/asap`, a plain string prefix as in the reference)
//! needs a valid JWT; failures are plain JSON `{"detail": ...}` answers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::response::detail;
use crate::auth::{AuthError, JwtValidator};

/// OAuth2 protection of a server.
#[derive(Clone)]
pub struct OAuth2 {
    pub(crate) validator: Arc<JwtValidator>,
    pub(crate) path_prefix: Option<String>,
}

impl OAuth2 {
    /// Protects every path under `/asap` with `validator`.
    pub fn new(validator: JwtValidator) -> Self {
        Self {
            validator: Arc::new(validator),
            path_prefix: Some("/asap".into()),
        }
    }

    /// Protects paths starting with `prefix` instead; `None` protects every path.
    pub fn path_prefix(mut self, prefix: Option<String>) -> Self {
        self.path_prefix = prefix;
        self
    }
}

/// The RFC 6750 challenge: no error code when no token was sent (section 3.1),
/// `invalid_token` or `insufficient_scope` otherwise, with the required scope.
fn challenge(error: &AuthError, scope: Option<&str>) -> Option<String> {
    let scope = scope
        .map(|s| format!(", scope=\"{s}\""))
        .unwrap_or_default();
    match error {
        AuthError::MissingToken => Some(format!("Bearer realm=\"asap\"{scope}")),
        AuthError::InvalidToken(_) => Some(format!(
            "Bearer realm=\"asap\", error=\"invalid_token\", error_description=\"{error}\"{scope}"
        )),
        AuthError::InsufficientScope | AuthError::IdentityMismatch { .. } => Some(format!(
            "Bearer realm=\"asap\", error=\"insufficient_scope\", error_description=\"{}\"{scope}",
            error.to_string().replace('"', "'")
        )),
        AuthError::Unavailable(_) => None,
    }
}

fn refuse(error: &AuthError, scope: Option<&str>) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = detail(status, error.to_string());
    if let Some(value) = challenge(error, scope).and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

pub(crate) async fn guard(
    State(oauth): State<OAuth2>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(prefix) = &oauth.path_prefix
        && !request.uri().path().starts_with(prefix.as_str())
    {
        return next.run(request).await;
    }
    // Exactly "Bearer " (capital B, one space), as the reference requires.
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(token) = token else {
        return refuse(&AuthError::MissingToken, oauth.validator.required_scope());
    };
    match oauth.validator.validate(&token).await {
        Ok(claims) => {
            request.extensions_mut().insert(claims);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, reason = ?error, "bearer token refused");
            refuse(&error, oauth.validator.required_scope())
        }
    }
}
