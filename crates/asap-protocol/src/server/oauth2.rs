//! The OAuth2 bearer middleware (wire spec section 10.2): every HTTP request whose path
//! starts with the prefix (default `/asap`, a plain string prefix as in the reference)
//! needs a valid bearer token; failures are plain JSON `{"detail": ...}` answers with an
//! RFC 6750 `WWW-Authenticate` challenge.
//!
//! Beyond the reference: scopes per route (section 10.3's recommended mapping) and
//! binding the envelope `sender` to the authenticated caller, each behind a switch.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, header};

use super::auth::AuthenticatedCaller;
use super::response::detail;
use crate::auth::{AuthError, Claims, JwtValidator, SCOPE_ADMIN, SCOPE_EXECUTE, SCOPE_READ};

/// The WebSocket binding's path (wire spec section 11).
const WEBSOCKET_PATH: &str = "/asap/ws";

/// Which scope a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ScopeMode {
    /// The policy's one `required_scope` for every protected path (the reference).
    #[default]
    Single,
    /// Per route (wire spec section 10.3): `asap:read` for reads (`GET`/`HEAD`, such as
    /// `/asap/metrics`), `asap:execute` for `POST /asap` and the `/asap/ws` upgrade;
    /// `asap:admin` satisfies either.
    PerRoute,
}

/// OAuth2 protection of a server.
///
/// ```no_run
/// # fn run() -> Result<(), asap_protocol::auth::JwksError> {
/// use std::sync::Arc;
/// use asap_protocol::auth::{JwksCache, JwtPolicy, JwtValidator};
/// use asap_protocol::server::OAuth2;
///
/// let keys = Arc::new(JwksCache::new("https://idp.example/.well-known/jwks.json")?);
/// let policy = JwtPolicy::strict("https://idp.example/", "asap-agents");
/// let validator = JwtValidator::new(keys, "urn:asap:agent:me", policy);
/// let oauth = OAuth2::new(validator).per_route_scopes().bind_sender();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuth2 {
    pub(crate) validator: Arc<JwtValidator>,
    pub(crate) path_prefix: Option<String>,
    scopes: ScopeMode,
    bind_sender: bool,
    websocket_open: bool,
}

impl OAuth2 {
    /// Protects every path under `/asap` with `validator`.
    pub fn new(validator: JwtValidator) -> Self {
        Self {
            validator: Arc::new(validator),
            path_prefix: Some("/asap".into()),
            scopes: ScopeMode::Single,
            bind_sender: false,
            websocket_open: false,
        }
    }

    /// Requires `asap:read` for reads and `asap:execute` for sending work, instead of one
    /// scope for everything ([`ScopeMode::PerRoute`]). The policy's `required_scope`, if
    /// any, still applies on top.
    pub fn per_route_scopes(mut self) -> Self {
        self.scopes = ScopeMode::PerRoute;
        self
    }

    /// Requires the envelope `sender` of `POST /asap` to be one of the caller's identities
    /// (its `sub`, or an agent URN whose `ASAP_AUTH_SUBJECT_MAP` entry lists it);
    /// otherwise the request fails as a sender mismatch (JSON-RPC -32602, `status_code` 403),
    /// as with manifest bearer authentication. The reference does not bind OAuth2 callers.
    pub fn bind_sender(mut self) -> Self {
        self.bind_sender = true;
        self
    }

    /// Leaves the WebSocket upgrade (`/asap/ws`) unauthenticated, as the reference does
    /// under OAuth2 (wire spec section 10.2 calls it a gap). By default the upgrade
    /// request needs a valid token like any other path under the prefix.
    pub fn leave_websocket_open(mut self) -> Self {
        self.websocket_open = true;
        self
    }

    /// Protects paths starting with `prefix` instead; `None` protects every path.
    pub fn path_prefix(mut self, prefix: Option<String>) -> Self {
        self.path_prefix = prefix;
        self
    }
}

/// The scope a request needs, beyond the policy's `required_scope`.
fn route_scope(oauth: &OAuth2, request: &Request) -> Option<&'static str> {
    if oauth.scopes == ScopeMode::Single {
        return None;
    }
    let read = request.method() == http::Method::GET || request.method() == http::Method::HEAD;
    // The WebSocket upgrade is a GET that sends work.
    if read && request.uri().path() != WEBSOCKET_PATH {
        Some(SCOPE_READ)
    } else {
        Some(SCOPE_EXECUTE)
    }
}

fn grants(claims: &Claims, scope: &str) -> bool {
    claims.scopes.iter().any(|s| s == scope || s == SCOPE_ADMIN)
}

/// The RFC 6750 challenge: no error code when no token was sent (section 3.1),
/// `invalid_token` or `insufficient_scope` otherwise, with the required scope.
fn challenge(error: &AuthError, scope: Option<&str>) -> Option<String> {
    let scope = scope
        .map(|s| format!(", scope=\"{s}\""))
        .unwrap_or_default();
    match error {
        AuthError::MissingToken => Some(format!("Bearer realm=\"asap\"{scope}")),
        AuthError::InvalidToken { .. } => Some(format!(
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
    let status = error.status();
    let mut response = detail(status, error.to_string());
    if let Some(value) = challenge(error, scope).and_then(|c| HeaderValue::from_str(&c).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    super::metrics::refused(response, super::RefusalReason::Auth)
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
    if oauth.websocket_open && request.uri().path() == WEBSOCKET_PATH {
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
    let needed = route_scope(&oauth, &request);
    let shown_scope = needed.or(oauth.validator.required_scope());
    let Some(token) = token else {
        return refuse(&AuthError::MissingToken, shown_scope);
    };
    let claims = match oauth.validator.validate(&token).await {
        Ok(claims) => claims,
        Err(error) => {
            tracing::info!(%error, reason = ?error, "bearer token refused");
            return refuse(&error, shown_scope);
        }
    };
    if let Some(scope) = needed
        && !grants(&claims, scope)
    {
        tracing::info!(scope, subject = %claims.subject, "bearer token lacks the route's scope");
        return refuse(&AuthError::InsufficientScope, Some(scope));
    }
    if oauth.bind_sender {
        let identities = oauth.validator.identities(&claims);
        request
            .extensions_mut()
            .insert(AuthenticatedCaller { identities });
    }
    request.extensions_mut().insert(claims);
    next.run(request).await
}
