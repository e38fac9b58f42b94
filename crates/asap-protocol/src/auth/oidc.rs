//! OpenID Connect discovery (wire spec section 10.5): the provider's token endpoint and
//! JWKS location from `{issuer}/.well-known/openid-configuration`, cached.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::document::{DocumentError, fetch_json, identity_http};

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
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The HTTP client could not be built ([`OidcDiscovery::new`]).
    #[error("OIDC discovery: the HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// The document could not be fetched.
    #[error("OIDC discovery at {url} failed")]
    Fetch {
        /// The document's URL.
        url: String,
        /// Why.
        #[source]
        source: DocumentError,
    },
    /// The document lacks `jwks_uri` or `token_endpoint`.
    #[error("OIDC discovery at {url}: jwks_uri and token_endpoint must be non-empty")]
    Incomplete {
        /// The document's URL.
        url: String,
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
    max_document: usize,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(OidcConfig, Instant)>>,
}

impl OidcDiscovery {
    /// Discovery for `issuer` (a trailing `/` is ignored), fetching with a client that
    /// times out after 10 s; fails when that client cannot be built.
    pub fn new(issuer: impl Into<String>) -> Result<Self, OidcError> {
        let http = identity_http().map_err(OidcError::ClientBuild)?;
        Ok(Self {
            issuer: issuer.into().trim_end_matches('/').to_owned(),
            http,
            max_document: crate::client::MAX_IDENTITY_DOCUMENT,
            ttl: Duration::from_secs(3600),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The largest document read (default
    /// [`MAX_IDENTITY_DOCUMENT`](crate::client::MAX_IDENTITY_DOCUMENT), 1 MiB); a larger
    /// answer is refused while it streams.
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_document = bytes;
        self
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
        let request = self.http.get(&url).header("accept", "application/json");
        let config: OidcConfig = fetch_json(request, "OIDC discovery document", self.max_document)
            .await
            .map_err(|source| OidcError::Fetch {
                url: url.clone(),
                source,
            })?;
        if config.issuer.trim_end_matches('/') != self.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: config.issuer,
            });
        }
        if config.jwks_uri.is_empty() || config.token_endpoint.is_empty() {
            return Err(OidcError::Incomplete { url });
        }
        *cached = Some((config.clone(), Instant::now()));
        Ok(config)
    }
}
