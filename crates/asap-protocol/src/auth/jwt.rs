//! Bearer JWT validation (wire spec section 10.2) with reference-compatible defaults
//! and strict switches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use reqwest::StatusCode;

use super::introspection::{IntrospectionError, TokenIntrospector};
use super::jwks::{JwksCache, JwksError};

/// Read access: manifest, health, metrics.
pub const SCOPE_READ: &str = "asap:read";
/// Sending tasks (`POST /asap`, `/asap/ws`).
pub const SCOPE_EXECUTE: &str = "asap:execute";
/// Administration.
pub const SCOPE_ADMIN: &str = "asap:admin";
/// The claim carrying the agent URN, as the reference names it (`ASAP_AUTH_CUSTOM_CLAIM`).
pub const DEFAULT_CUSTOM_CLAIM: &str = "https://github.com/adriannoes/asap-protocol/agent_id";
/// Longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// What a token must satisfy. `Default` is the reference's behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtPolicy {
    /// A scope every token must carry (`None`: no scope check).
    pub required_scope: Option<String>,
    /// The claim compared with the manifest id when present.
    pub custom_claim: String,
    /// Refuse tokens without `exp` (the reference accepts them).
    pub require_exp: bool,
    /// Refuse tokens whose `nbf` is in the future (the reference ignores `nbf`).
    pub check_nbf: bool,
    /// Clock tolerance for `exp` and `nbf` (the reference has none).
    pub leeway: Duration,
    /// Required `iss` (the reference never checks it).
    pub issuer: Option<String>,
    /// Required `aud` (the reference never checks it).
    pub audience: Option<String>,
    /// Read scopes from `scp` when `scope` is absent (Azure AD style; the reference ignores `scp`).
    pub accept_scp: bool,
    /// `ASAP_AUTH_SUBJECT_MAP`: the subjects allowed to act for an agent URN, consulted
    /// when a token has no custom claim.
    pub subject_map: HashMap<String, Vec<String>>,
    /// Reject a token without the custom claim whose subject the map does not list for
    /// this agent (the reference only logs it).
    pub strict_subjects: bool,
}

impl Default for JwtPolicy {
    fn default() -> Self {
        Self {
            required_scope: None,
            // The library reads no environment: `OAuth2Settings` (and `asap serve`) take
            // `ASAP_AUTH_CUSTOM_CLAIM`.
            custom_claim: DEFAULT_CUSTOM_CLAIM.to_owned(),
            require_exp: false,
            check_nbf: false,
            leeway: Duration::ZERO,
            issuer: None,
            audience: None,
            accept_scp: false,
            subject_map: HashMap::new(),
            strict_subjects: false,
        }
    }
}

impl JwtPolicy {
    /// What to turn on in production: `exp` required, `nbf` checked (30 s leeway),
    /// and the given issuer and audience required.
    pub fn strict(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            require_exp: true,
            check_nbf: true,
            leeway: Duration::from_secs(30),
            issuer: Some(issuer.into()),
            audience: Some(audience.into()),
            ..Self::default()
        }
    }
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `sub`.
    pub subject: String,
    /// Scopes from `scope` (or `scp` when allowed).
    pub scopes: Vec<String>,
    /// `exp`, when present.
    pub expires_at: Option<i64>,
    /// Every claim.
    pub all: Map<String, Value>,
}

/// Why a request is refused, with the reference's status and `detail` (the `Display`
/// of each variant, sent as it is).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization: Bearer` header: 401.
    #[error("Authentication required")]
    MissingToken,
    /// The token is not valid (signature, format, expiry, `sub`, ...): 401.
    #[error("Invalid authentication token")]
    InvalidToken {
        /// Why, for logs (`token expired`, `no key for this token`, ...).
        reason: &'static str,
        /// The JWT library's error, when it found the fault.
        #[source]
        source: Option<jsonwebtoken::errors::Error>,
    },
    /// The required scope is missing: 403.
    #[error("Insufficient scope")]
    InsufficientScope,
    /// The custom claim names another agent: 403.
    #[error("Identity mismatch: custom claim does not match agent manifest (expected: {expected})")]
    IdentityMismatch {
        /// The manifest id.
        expected: String,
    },
    /// The key set or the introspection answer could not be had: 503.
    #[error("Authentication service unavailable")]
    Unavailable(#[source] Unavailable),
}

/// Which identity service failed, for [`AuthError::Unavailable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Unavailable {
    /// The key set.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// Token introspection.
    #[error(transparent)]
    Introspection(#[from] IntrospectionError),
}

impl AuthError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken | Self::InvalidToken { .. } => StatusCode::UNAUTHORIZED,
            Self::InsufficientScope | Self::IdentityMismatch { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// An invalid token, for `reason`.
    fn invalid(reason: &'static str) -> Self {
        Self::InvalidToken {
            reason,
            source: None,
        }
    }

    /// An invalid token, as the JWT library found it.
    fn invalid_jwt(reason: &'static str, source: jsonwebtoken::errors::Error) -> Self {
        Self::InvalidToken {
            reason,
            source: Some(source),
        }
    }
}

impl From<JwksError> for AuthError {
    fn from(error: JwksError) -> Self {
        Self::Unavailable(error.into())
    }
}

impl From<IntrospectionError> for AuthError {
    fn from(error: IntrospectionError) -> Self {
        Self::Unavailable(error.into())
    }
}

/// Validates bearer tokens for one agent: JWTs against the provider's keys, and, when an
/// introspector is configured, opaque tokens through RFC 7662 introspection. Both then
/// pass the same `sub`, scope and identity checks.
///
/// Tokens that passed are remembered (by their exact text) until their `exp`, at most
/// `verified_ttl` (default 60 s), up to `verified_capacity` tokens (default 10 000), so a
/// client reusing its token pays for the signature check once.
pub struct JwtValidator {
    jwks: Option<Arc<JwksCache>>,
    introspector: Option<Arc<TokenIntrospector>>,
    policy: JwtPolicy,
    manifest_id: String,
    hmac_secret: Option<Vec<u8>>,
    verified: std::sync::Mutex<HashMap<String, (Claims, tokio::time::Instant)>>,
    verified_ttl: Duration,
    verified_capacity: usize,
}

fn family_matches(alg: Algorithm, jwk: &Jwk) -> bool {
    matches!(
        (alg, &jwk.algorithm),
        (Algorithm::RS256, AlgorithmParameters::RSA(_))
            | (Algorithm::ES256, AlgorithmParameters::EllipticCurve(_))
            | (Algorithm::EdDSA, AlgorithmParameters::OctetKeyPair(_))
    )
}

/// The key of `keys` for a token signed with `alg`: the one named `kid` when the token
/// names one, else the first of the algorithm's family.
pub(crate) fn pick(keys: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
    match kid {
        Some(kid) => keys.find(kid).filter(|k| family_matches(alg, k)).cloned(),
        None => keys.keys.iter().find(|k| family_matches(alg, k)).cloned(),
    }
}

/// Seconds since the Unix epoch on tokio's clock: the system time, moved by however far
/// tokio's clock is from the real one. They are the same clock (to the nanosecond)
/// except where tokio's is paused, in tests, which can so let tokens expire with
/// `tokio::time::advance` instead of waiting.
fn unix_now() -> i64 {
    let system = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let real = std::time::Instant::now();
    let tokio = tokio::time::Instant::now().into_std();
    let now = match tokio.checked_duration_since(real) {
        Some(ahead) => system + ahead,
        None => system.saturating_sub(real.duration_since(tokio)),
    };
    i64::try_from(now.as_secs()).unwrap_or(i64::MAX)
}

/// `exp`, when it is a whole number (the JWT checks refuse any other).
fn expiry(claims: &Map<String, Value>) -> Option<i64> {
    claims.get("exp").and_then(Value::as_i64)
}

/// `scope` as a space-separated string or an array of strings.
fn scopes(value: Option<&Value>) -> Option<Vec<String>> {
    match value? {
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

impl JwtValidator {
    /// A validator for the agent `manifest_id`, with keys from `jwks`.
    pub fn new(jwks: Arc<JwksCache>, manifest_id: impl Into<String>, policy: JwtPolicy) -> Self {
        Self::build(Some(jwks), None, manifest_id.into(), policy)
    }

    /// A validator that accepts only opaque tokens, asking `introspector` about each
    /// (answers cached by the introspector, bounded by each token's lifetime).
    pub fn introspecting(
        introspector: Arc<TokenIntrospector>,
        manifest_id: impl Into<String>,
        policy: JwtPolicy,
    ) -> Self {
        Self::build(None, Some(introspector), manifest_id.into(), policy)
    }

    /// Also accepts opaque tokens (anything that is not a JWT), through `introspector`.
    pub fn with_introspection(mut self, introspector: Arc<TokenIntrospector>) -> Self {
        self.introspector = Some(introspector);
        self
    }

    fn build(
        jwks: Option<Arc<JwksCache>>,
        introspector: Option<Arc<TokenIntrospector>>,
        manifest_id: String,
        policy: JwtPolicy,
    ) -> Self {
        Self {
            jwks,
            introspector,
            policy,
            manifest_id,
            hmac_secret: None,
            verified: std::sync::Mutex::new(HashMap::new()),
            verified_ttl: Duration::from_secs(60),
            verified_capacity: 10_000,
        }
    }

    /// How long, and how many, verified tokens are remembered (`Duration::ZERO` turns it off).
    pub fn verified_cache(mut self, ttl: Duration, capacity: usize) -> Self {
        self.verified_ttl = ttl;
        self.verified_capacity = capacity;
        self
    }

    fn remembered(&self, token: &str) -> Option<Claims> {
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified
            .get(token)
            .filter(|(_, until)| tokio::time::Instant::now() < *until)
            .map(|(claims, _)| claims.clone())
    }

    fn remember(&self, token: &str, claims: &Claims) {
        if self.verified_ttl.is_zero() || self.verified_capacity == 0 {
            return;
        }
        let now_unix = unix_now();
        let mut ttl = self.verified_ttl;
        if let Some(exp) = claims.expires_at {
            ttl = ttl.min(Duration::from_secs(
                u64::try_from(exp - now_unix).unwrap_or(0),
            ));
        }
        let now = tokio::time::Instant::now();
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= self.verified_capacity {
            verified.retain(|_, (_, until)| now < *until);
            if verified.len() >= self.verified_capacity {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), (claims.clone(), now + ttl));
    }

    /// Also accepts HS256 tokens signed with this shared secret.
    pub fn with_hmac_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hmac_secret = Some(secret.into());
        self
    }

    /// The scope every token must carry, if any.
    pub fn required_scope(&self) -> Option<&str> {
        self.policy.required_scope.as_deref()
    }

    /// The key cache (for its fetch count), when JWTs are accepted.
    pub fn jwks(&self) -> Option<&JwksCache> {
        self.jwks.as_deref()
    }

    /// The policy tokens are checked against.
    pub fn policy(&self) -> &JwtPolicy {
        &self.policy
    }

    /// The agent identities a caller with these claims may act as: its `sub`, and every
    /// agent URN whose `ASAP_AUTH_SUBJECT_MAP` entry lists that subject.
    pub fn identities(&self, claims: &Claims) -> Vec<String> {
        let mut identities = vec![claims.subject.clone()];
        identities.extend(
            self.policy
                .subject_map
                .iter()
                .filter(|(_, subjects)| subjects.contains(&claims.subject))
                .map(|(urn, _)| urn.clone()),
        );
        identities
    }

    /// Validates a token and applies the scope and identity rules.
    pub async fn validate(&self, token: &str) -> Result<Claims, AuthError> {
        if let Some(claims) = self.remembered(token) {
            return Ok(claims);
        }
        let claims = self.verify(token).await?;
        self.remember(token, &claims);
        Ok(claims)
    }

    async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::invalid("token too large"));
        }
        let all = match (decode_header(token), &self.introspector) {
            (Ok(header), _) if self.jwks.is_some() || header.alg == Algorithm::HS256 => {
                self.verify_jwt(token, header).await?
            }
            (Ok(_), None) => {
                return Err(AuthError::invalid("JWTs are not accepted"));
            }
            (_, Some(introspector)) => self.introspect(introspector, token).await?,
            (Err(e), None) => return Err(AuthError::invalid_jwt("not a JWT", e)),
        };
        self.authorize(all)
    }

    /// An opaque token: active per the provider, not expired, and (when the answer names
    /// them) from the configured issuer for the configured audience.
    async fn introspect(
        &self,
        introspector: &TokenIntrospector,
        token: &str,
    ) -> Result<Map<String, Value>, AuthError> {
        let invalid = AuthError::invalid;
        let info = introspector
            .introspect(token)
            .await?
            .ok_or_else(|| invalid("token is not active"))?;
        let all = info.claims;
        let now = unix_now();
        let leeway = self.policy.leeway.as_secs() as i64;
        match info.expires_at {
            Some(exp) if exp + leeway < now => return Err(invalid("token expired")),
            None if self.policy.require_exp => return Err(invalid("exp missing")),
            _ => {}
        }
        if let (Some(issuer), Some(found)) = (&self.policy.issuer, all.get("iss"))
            && found.as_str() != Some(issuer.as_str())
        {
            return Err(invalid("wrong issuer"));
        }
        if let (Some(audience), Some(found)) = (&self.policy.audience, all.get("aud")) {
            let matches = match found {
                Value::String(s) => s == audience,
                Value::Array(items) => items.iter().any(|v| v.as_str() == Some(audience)),
                _ => false,
            };
            if !matches {
                return Err(invalid("wrong audience"));
            }
        }
        Ok(all)
    }

    /// A JWT: signature against the provider's keys (or the shared secret), then the
    /// time, issuer and audience rules of the policy.
    async fn verify_jwt(
        &self,
        token: &str,
        header: jsonwebtoken::Header,
    ) -> Result<Map<String, Value>, AuthError> {
        let invalid = AuthError::invalid;
        let key = match header.alg {
            Algorithm::HS256 => match &self.hmac_secret {
                Some(secret) => DecodingKey::from_secret(secret),
                None => return Err(invalid("HS256 is not accepted without a shared secret")),
            },
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA => {
                let Some(jwks) = &self.jwks else {
                    return Err(invalid("no key set configured"));
                };
                let kid = header.kid.as_deref();
                if kid.is_some_and(|k| k.len() > 256) {
                    return Err(invalid("kid too long"));
                }
                let keys = jwks.keys().await?;
                let jwk = match pick(&keys, kid, header.alg) {
                    Some(jwk) => jwk,
                    None => {
                        let fresh = jwks.refresh().await?;
                        fresh
                            .and_then(|keys| pick(&keys, kid, header.alg))
                            .ok_or_else(|| invalid("no key for this token"))?
                    }
                };
                DecodingKey::from_jwk(&jwk)
                    .map_err(|e| AuthError::invalid_jwt("unusable key", e))?
            }
            _ => return Err(invalid("algorithm not allowed")),
        };
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        if self.policy.require_exp {
            validation.required_spec_claims.insert("exp".into());
        }
        validation.validate_exp = true;
        validation.validate_nbf = self.policy.check_nbf;
        validation.leeway = self.policy.leeway.as_secs();
        validation.validate_aud = false;
        if let Some(issuer) = &self.policy.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        if let Some(audience) = &self.policy.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            validation.required_spec_claims.insert("aud".into());
        }
        let data = decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| AuthError::invalid_jwt("rejected by the JWT checks", e))?;
        // jsonwebtoken checked `exp` on the system clock; the same check on tokio's clock
        // (the same time, except where tests pause it) keeps expiry testable without
        // waiting, like the remembered tokens' lifetime.
        let leeway = i64::try_from(self.policy.leeway.as_secs()).unwrap_or(i64::MAX);
        if expiry(&data.claims).is_some_and(|exp| exp.saturating_add(leeway) < unix_now()) {
            return Err(invalid("token expired"));
        }
        Ok(data.claims)
    }

    /// The checks every token passes, whatever its kind: `sub`, scope, identity binding.
    fn authorize(&self, all: Map<String, Value>) -> Result<Claims, AuthError> {
        let invalid = AuthError::invalid;
        let subject = match all.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(invalid("sub missing")),
        };
        let mut granted = scopes(all.get("scope"));
        if granted.is_none() && self.policy.accept_scp {
            granted = scopes(all.get("scp"));
        }
        let granted = granted.unwrap_or_default();
        if let Some(required) = &self.policy.required_scope
            && !granted.iter().any(|s| s == required)
        {
            return Err(AuthError::InsufficientScope);
        }
        match all.get(&self.policy.custom_claim) {
            None | Some(Value::Null) => {
                let listed = self
                    .policy
                    .subject_map
                    .get(&self.manifest_id)
                    .is_some_and(|subs| subs.contains(&subject));
                if !listed && self.policy.strict_subjects {
                    return Err(AuthError::IdentityMismatch {
                        expected: self.manifest_id.clone(),
                    });
                }
                if !listed {
                    tracing::debug!(%subject, "token accepted without a verified agent identity");
                }
            }
            Some(value) => {
                let text = crate::model::pyrepr::python_str(value);
                if text.trim() != self.manifest_id {
                    return Err(AuthError::IdentityMismatch {
                        expected: self.manifest_id.clone(),
                    });
                }
            }
        }
        let expires_at = expiry(&all);
        Ok(Claims {
            subject,
            scopes: granted,
            expires_at,
            all,
        })
    }
}
