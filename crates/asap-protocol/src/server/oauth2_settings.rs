//! OAuth2 protection described as plain settings, from code or from `ASAP_AUTH_*`
//! environment variables, turned into an [`OAuth2`] layer (with OIDC discovery when an
//! issuer is given).

use std::sync::Arc;
use std::time::Duration;

use super::config::truthy;
use super::oauth2::OAuth2;
use crate::auth::{
    IntrospectionError, JwksCache, JwksError, JwtPolicy, JwtValidator, OidcDiscovery, OidcError,
    SubjectMapError, TokenIntrospector, parse_subject_map,
};

/// Where the keys and introspection endpoint are, and which checks to make.
///
/// ```
/// let settings = asap_protocol::server::OAuth2Settings::from_lookup(|name| match name {
///     "ASAP_AUTH_JWKS_URI" => Some("https://idp.example/jwks".into()),
///     "ASAP_AUTH_STRICT" => Some("true".into()),
///     _ => None,
/// });
/// assert!(settings.is_enabled() && settings.strict);
/// assert_eq!(settings.required_scope, None);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuth2Settings {
    /// The provider's issuer (`ASAP_AUTH_ISSUER`): keys and introspection endpoint come
    /// from its OIDC discovery document, whose `issuer` must match.
    pub issuer: Option<String>,
    /// The JWKS location (`ASAP_AUTH_JWKS_URI`), instead of the discovered one.
    pub jwks_uri: Option<String>,
    /// RFC 7662 introspection endpoint for opaque tokens (`ASAP_AUTH_INTROSPECTION_URL`);
    /// with an issuer and client credentials the discovered one is used when unset.
    pub introspection_url: Option<String>,
    /// This agent's client id at the provider, for introspection (`ASAP_AUTH_CLIENT_ID`).
    pub client_id: Option<String>,
    /// Its client secret (`ASAP_AUTH_CLIENT_SECRET`).
    pub client_secret: Option<String>,
    /// The scope every token needs (`ASAP_AUTH_SCOPE`; empty: none).
    pub required_scope: Option<String>,
    /// The required `aud` (`ASAP_AUTH_AUDIENCE`).
    pub audience: Option<String>,
    /// Require `exp`, check `nbf` with 30 s leeway, require the issuer, reject subjects
    /// the subject map does not list (`ASAP_AUTH_STRICT`).
    pub strict: bool,
    /// [`OAuth2::per_route_scopes`] (`ASAP_AUTH_PER_ROUTE_SCOPES`).
    pub per_route_scopes: bool,
    /// [`OAuth2::bind_sender`] (`ASAP_AUTH_BIND_SENDER`).
    pub bind_sender: bool,
    /// The JSON of `ASAP_AUTH_SUBJECT_MAP`.
    pub subject_map: Option<String>,
    /// The claim holding the caller's agent URN (`ASAP_AUTH_CUSTOM_CLAIM`; default
    /// [`JwtPolicy`]'s).
    pub custom_claim: Option<String>,
}

/// Hides the client secret.
impl std::fmt::Debug for OAuth2Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Settings")
            .field("issuer", &self.issuer)
            .field("jwks_uri", &self.jwks_uri)
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| crate::REDACTED),
            )
            .field("required_scope", &self.required_scope)
            .field("audience", &self.audience)
            .field("strict", &self.strict)
            .field("per_route_scopes", &self.per_route_scopes)
            .field("bind_sender", &self.bind_sender)
            .field("subject_map", &self.subject_map)
            .field("custom_claim", &self.custom_claim)
            .finish()
    }
}

/// Why the OAuth2 settings cannot protect a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OAuth2SetupError {
    /// The issuer's discovery document could not be used.
    #[error(transparent)]
    Discovery(#[from] OidcError),
    /// The key set's client could not be built.
    #[error(transparent)]
    Jwks(#[from] JwksError),
    /// The introspection client could not be built.
    #[error(transparent)]
    Introspection(#[from] IntrospectionError),
    /// `ASAP_AUTH_SUBJECT_MAP` is malformed.
    #[error("{0}")]
    SubjectMap(#[from] SubjectMapError),
    /// Introspection is configured without client credentials.
    #[error(
        "token introspection needs a client id and secret (ASAP_AUTH_CLIENT_ID, ASAP_AUTH_CLIENT_SECRET)"
    )]
    MissingClientCredentials,
}

fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|s| !s.trim().is_empty())
}

impl OAuth2Settings {
    /// The settings from the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The settings from any variable lookup (for tests and other configuration sources).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let flag = |name: &str| get(name).is_some_and(|v| truthy(&v));
        Self {
            issuer: get("ASAP_AUTH_ISSUER"),
            jwks_uri: get("ASAP_AUTH_JWKS_URI"),
            introspection_url: get("ASAP_AUTH_INTROSPECTION_URL"),
            client_id: get("ASAP_AUTH_CLIENT_ID"),
            client_secret: get("ASAP_AUTH_CLIENT_SECRET"),
            required_scope: get("ASAP_AUTH_SCOPE"),
            audience: get("ASAP_AUTH_AUDIENCE"),
            strict: flag("ASAP_AUTH_STRICT"),
            per_route_scopes: flag("ASAP_AUTH_PER_ROUTE_SCOPES"),
            bind_sender: flag("ASAP_AUTH_BIND_SENDER"),
            subject_map: get("ASAP_AUTH_SUBJECT_MAP"),
            custom_claim: get("ASAP_AUTH_CUSTOM_CLAIM"),
        }
    }

    /// Whether any token source (issuer, JWKS or introspection) is configured.
    pub fn is_enabled(&self) -> bool {
        given(&self.issuer).is_some()
            || given(&self.jwks_uri).is_some()
            || given(&self.introspection_url).is_some()
    }

    /// The policy these settings describe.
    pub fn policy(&self) -> Result<JwtPolicy, OAuth2SetupError> {
        let mut policy = JwtPolicy {
            required_scope: given(&self.required_scope).map(|s| s.trim().to_owned()),
            audience: given(&self.audience),
            ..JwtPolicy::default()
        };
        if let Some(claim) = given(&self.custom_claim) {
            policy.custom_claim = claim.trim().to_owned();
        }
        if let Some(text) = given(&self.subject_map) {
            policy.subject_map = parse_subject_map(&text)?;
        }
        if self.strict {
            policy.strict_subjects = !policy.subject_map.is_empty();
            policy.require_exp = true;
            policy.check_nbf = true;
            policy.leeway = Duration::from_secs(30);
            policy.issuer = given(&self.issuer);
        }
        Ok(policy)
    }

    /// The protection for the agent `agent_id`, or `None` when nothing is configured.
    /// Fetches the issuer's discovery document when the keys or the introspection
    /// endpoint must come from it.
    pub async fn build(&self, agent_id: &str) -> Result<Option<OAuth2>, OAuth2SetupError> {
        self.build_metered(agent_id, None).await
    }

    /// [`build`](Self::build), the JWKS fetches and introspection requests counted in
    /// `metrics` when given.
    pub async fn build_metered(
        &self,
        agent_id: &str,
        metrics: Option<&super::Metrics>,
    ) -> Result<Option<OAuth2>, OAuth2SetupError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let policy = self.policy()?;
        let credentials = given(&self.client_id).zip(given(&self.client_secret));
        let needs_discovery = given(&self.jwks_uri).is_none()
            || (given(&self.introspection_url).is_none() && credentials.is_some());
        let discovered = match given(&self.issuer) {
            Some(issuer) if needs_discovery => Some(OidcDiscovery::new(issuer)?.config().await?),
            _ => None,
        };
        let jwks_uri = given(&self.jwks_uri).or(discovered.as_ref().map(|c| c.jwks_uri.clone()));
        let introspection_url = given(&self.introspection_url).or(discovered
            .as_ref()
            .and_then(|c| c.introspection_endpoint.clone())
            .filter(|_| credentials.is_some()));
        let introspector = match introspection_url {
            None => None,
            Some(url) => {
                let (id, secret) = credentials.ok_or(OAuth2SetupError::MissingClientCredentials)?;
                let introspector = TokenIntrospector::new(url, id, secret)?;
                Some(Arc::new(match metrics {
                    Some(metrics) => introspector.metrics(metrics),
                    None => introspector,
                }))
            }
        };
        let validator = match (jwks_uri, introspector) {
            (Some(uri), introspector) => {
                let keys = JwksCache::new(uri)?;
                let keys = match metrics {
                    Some(metrics) => keys.metrics(metrics),
                    None => keys,
                };
                let validator = JwtValidator::new(Arc::new(keys), agent_id, policy);
                match introspector {
                    Some(introspector) => validator.with_introspection(introspector),
                    None => validator,
                }
            }
            (None, Some(introspector)) => {
                JwtValidator::introspecting(introspector, agent_id, policy)
            }
            (None, None) => return Ok(None),
        };
        let mut oauth = OAuth2::new(validator);
        if self.per_route_scopes {
            oauth = oauth.per_route_scopes();
        }
        if self.bind_sender {
            oauth = oauth.bind_sender();
        }
        Ok(Some(oauth))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_custom_claim_comes_from_the_settings_not_the_environment() {
        let settings = OAuth2Settings::from_lookup(|name| {
            (name == "ASAP_AUTH_CUSTOM_CLAIM").then(|| " agent_urn ".to_owned())
        });
        assert_eq!(settings.policy().unwrap().custom_claim, "agent_urn");
        let unset = OAuth2Settings::from_lookup(|_| None);
        assert_eq!(
            unset.policy().unwrap().custom_claim,
            crate::auth::DEFAULT_CUSTOM_CLAIM
        );
    }
}
