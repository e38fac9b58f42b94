//! OpenID Connect discovery (wire spec section 10.5): the provider's token endpoint and
//! JWKS location from `{issuer}/.well-known/openid-configuration`, cached.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// The members of a discovery document ASAP uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OidcConfig {
    /// The issuer identifier.
    pub issuer: String,
    /// Where to obtain tokens.
    pub token_endpoint: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// Scopes the provider offers.
    #[serde(default)]
    pub scopes_supported: Option<Vec<String>>,
    /// RFC 7662 introspection endpoint, when offered.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// Authorization endpoint, for the authorization-code flow.
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The document could not be fetched.
    #[error("OIDC discovery at {url} failed: {reason}")]
    Fetch {
        /// The document's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The document names another issuer (a mix-up or a misconfiguration).
    #[error(
        "OIDC discovery: the document's issuer {found:?} is not the configured issuer {expected:?}"
    )]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The document's issuer.
        found: String,
    },
}

/// Discovery for one issuer, cached for `ttl` (default 3600 s, as the reference).
pub struct OidcDiscovery {
    issuer: String,
    http: reqwest::Client,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(OidcConfig, Instant)>>,
}

impl OidcDiscovery {
    /// Discovery for `issuer` (a trailing `/` is ignored).
    pub fn new(issuer: impl Into<String>) -> Self {
        let http = crate::client::tls::http_builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            http,
            ttl: Duration::from_secs(3600),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The discovery document's URL: the suffix is appended after any issuer path.
    pub fn url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// The provider's configuration, fetched or cached. The document's `issuer` must
    /// equal the configured one (ignoring a trailing `/`); the reference does not check.
    pub async fn config(&self) -> Result<OidcConfig, OidcError> {
        let mut cached = self.cached.lock().await;
        if let Some((config, at)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(config.clone());
        }
        let url = self.url();
        let fail = |reason: String| OidcError::Fetch {
            url: url.clone(),
            reason,
        };
        let response = self
            .http
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let config: OidcConfig =
            crate::client::body::read_identity_json(response, "OIDC discovery document")
                .await
                .map_err(fail)?;
        if config.issuer.trim_end_matches('/') != self.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: config.issuer,
            });
        }
        if config.jwks_uri.is_empty() || config.token_endpoint.is_empty() {
            return Err(fail("jwks_uri and token_endpoint must be non-empty".into()));
        }
        *cached = Some((config.clone(), Instant::now()));
        Ok(config)
    }
}
