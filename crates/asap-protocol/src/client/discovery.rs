//! Manifest discovery and health checks with HTTP caching (wire spec section 13.3).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, ETAG, HeaderValue, IF_NONE_MATCH};

use super::{ClientError, ResponseError, ResponseLimits};
use crate::model::{Dialect, HealthStatus, Manifest, Model, SignedManifest};

/// Freshness when a manifest response has no `Cache-Control: max-age`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
struct CachedManifest {
    manifest: Manifest,
    etag: Option<String>,
    fresh_until: Instant,
}

#[derive(Debug, Clone)]
struct CachedHealth {
    health: HealthStatus,
    fresh_until: Instant,
}

/// Manifests and health documents by base URL.
#[derive(Debug, Default)]
pub struct DiscoveryCache {
    manifests: Mutex<HashMap<String, CachedManifest>>,
    health: Mutex<HashMap<String, CachedHealth>>,
    limits: ResponseLimits,
    #[cfg(feature = "signing")]
    trust: ManifestTrust,
}

/// The path of the manifest under an agent's base URL.
const MANIFEST_PATH: &str = "/.well-known/asap/manifest.json";

/// Which signed manifests discovery accepts (docs/asap-2.md section 5): the 2.5.10
/// client's `verify_signatures` and `trusted_manifest_keys`, and a CA key list.
#[cfg(feature = "signing")]
#[derive(Debug, Clone, Default)]
pub struct ManifestTrust {
    /// Verify signed documents (off: read them without checking).
    pub verify: bool,
    /// The key pinned per agent, by base URL (without a trailing `/`).
    pub keys: HashMap<String, crate::signing::VerifyingKey>,
    /// CA keys: a document with trust level `verified` signed by one is accepted.
    pub cas: Vec<crate::signing::VerifyingKey>,
}

#[cfg(feature = "signing")]
impl ManifestTrust {
    /// Pins `key` for the agent at `url`, its base URL or its manifest URL.
    pub fn pin(&mut self, url: &str, key: crate::signing::VerifyingKey) {
        let url = url.trim_end_matches('/');
        let base = url.strip_suffix(MANIFEST_PATH).unwrap_or(url);
        self.keys.insert(base.to_owned(), key);
    }

    /// Checks the manifest document served at `base`: a signed document against the
    /// pinned key or a CA key; an unsigned one is refused only when a key is pinned.
    fn check(
        &self,
        base: &str,
        signed: Option<&crate::model::SignedManifest>,
    ) -> Result<(), ManifestSignatureError> {
        use crate::signing::{verify_ca_signature, verify_manifest};
        if !self.verify {
            return Ok(());
        }
        let pinned = self.keys.get(base);
        let Some(signed) = signed else {
            return match pinned {
                Some(_) => Err(ManifestSignatureError::Unsigned(base.to_owned())),
                None => Ok(()),
            };
        };
        let verified = match pinned {
            Some(key) => verify_manifest(signed, Some(key)),
            None if signed.signature.trust_level == crate::model::TrustLevel::Verified
                && !self.cas.is_empty() =>
            {
                verify_ca_signature(signed, &self.cas)
            }
            None => return Err(ManifestSignatureError::NoTrustedKey(base.to_owned())),
        };
        verified.map_err(|source| ManifestSignatureError::Invalid {
            url: base.to_owned(),
            source,
        })
    }
}

/// Why discovery refused a manifest's signature
/// ([`ResponseError::ManifestSignature`](super::ResponseError::ManifestSignature)).
#[cfg(feature = "signing")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestSignatureError {
    /// A signed manifest, but no key pinned for the agent and no CA key that applies.
    #[error(
        "cannot verify the signed manifest of {0}: no trusted public key for it \
         (pin one, or trust the CA that signed it)"
    )]
    NoTrustedKey(String),
    /// A key is pinned for the agent but its manifest is not signed.
    #[error("the manifest of {0} is not signed, but a key is pinned for it")]
    Unsigned(String),
    /// The signature does not verify.
    #[error("the signed manifest of {url} did not verify: {source}")]
    Invalid {
        /// The agent's base URL.
        url: String,
        /// Why.
        #[source]
        source: crate::signing::VerificationError,
    },
}

/// `max-age` of a `Cache-Control` value; zero for `no-store`/`no-cache`; `None` when
/// absent.
pub(crate) fn max_age(value: Option<&str>) -> Option<Duration> {
    let value = value?;
    let directives: Vec<String> = value
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if directives
        .iter()
        .any(|d| d == "no-store" || d == "no-cache")
    {
        return Some(Duration::ZERO);
    }
    directives
        .iter()
        .find_map(|d| {
            d.strip_prefix("max-age=")?
                .trim_matches('"')
                .parse::<u64>()
                .ok()
        })
        .map(Duration::from_secs)
}

/// Protocol versions this client understands ([`super::SUPPORTED_ASAP_VERSIONS`]):
/// release 1.1 advertises "0.1"; "1.x" is accepted for forward compatibility.
fn compatible(asap_version: &str) -> bool {
    matches!(asap_version.split('.').next(), Some("0" | "1"))
}

/// Our 2.x versions, most preferred first.
const OFFERED_2X: [Dialect; 2] = [Dialect::V2_2, Dialect::V2_1];

/// `ASAP-Version` listing the versions of [`OFFERED_2X`] found in `listed`, if any.
fn version_offer(listed: &[String]) -> Option<HeaderValue> {
    let common: Vec<&str> = OFFERED_2X
        .iter()
        .map(|d| d.as_str())
        .filter(|v| listed.iter().any(|l| l.trim() == *v))
        .collect();
    (!common.is_empty()).then(|| {
        HeaderValue::from_str(&common.join(", ")).expect("version tokens are valid headers")
    })
}

/// The agent's health document, fetched now (a document with a non-2xx status is
/// still returned: an unhealthy agent answers 503 with one).
pub(crate) async fn fetch_health(
    http: &reqwest::Client,
    base: &str,
    limit: usize,
) -> Result<HealthStatus, ClientError> {
    let response = http
        .get(format!("{base}/.well-known/asap/health"))
        .send()
        .await?;
    let status = response.status();
    let text = super::body::read_capped_text(response, limit, "health document").await?;
    let parsed = HealthStatus::from_json(text.as_bytes());
    match parsed {
        Ok(h) => Ok(h),
        Err(_) if !status.is_success() => Err(ClientError::Http { status, body: text }),
        Err(e) => Err(ResponseError::HealthDocument(e).into()),
    }
}

impl DiscoveryCache {
    /// An empty cache that reads bodies up to `limits`.
    pub fn new(limits: ResponseLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Verifies signed manifests as `trust` says.
    #[cfg(feature = "signing")]
    pub fn with_trust(mut self, trust: ManifestTrust) -> Self {
        self.trust = trust;
        self
    }

    /// Reads the manifest document served at `base`: a manifest in either shape, or a
    /// signed document (`manifest` and `signature` members) whose manifest is taken,
    /// checked as the trust settings say.
    fn read_manifest(&self, base: &str, text: &str) -> Result<Manifest, ClientError> {
        let value =
            crate::json::parse(text.as_bytes()).map_err(|e| ResponseError::Manifest(e.into()))?;
        if SignedManifest::is_signed_document(&value) {
            let signed = SignedManifest::from_value(&value)
                .map_err(|e| ResponseError::Manifest(e.into()))?;
            #[cfg(feature = "signing")]
            self.trust
                .check(base, Some(&signed))
                .map_err(ResponseError::from)?;
            return Ok(signed.manifest);
        }
        #[cfg(feature = "signing")]
        self.trust.check(base, None).map_err(ResponseError::from)?;
        let _ = base;
        Ok(Manifest::from_wire(&value).map_err(|e| ResponseError::Manifest(e.into()))?)
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) async fn manifest(
        &self,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<Manifest, ClientError> {
        let cached = Self::lock(&self.manifests).get(base).cloned();
        if let Some(c) = &cached
            && Instant::now() < c.fresh_until
        {
            return Ok(c.manifest.clone());
        }
        let mut request = http.get(format!("{base}{MANIFEST_PATH}"));
        if let Some(etag) = cached.as_ref().and_then(|c| c.etag.clone()) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        let response = request.send().await?;
        let status = response.status();
        let ttl = max_age(
            response
                .headers()
                .get(CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        )
        .unwrap_or(DEFAULT_MAX_AGE);
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if status == StatusCode::NOT_MODIFIED
            && let Some(mut c) = cached
        {
            c.fresh_until = Instant::now() + ttl;
            c.etag = etag.or(c.etag);
            Self::lock(&self.manifests).insert(base.to_owned(), c.clone());
            return Ok(c.manifest);
        }
        let text =
            super::body::read_capped_text(response, self.limits.manifest, "manifest").await?;
        if !status.is_success() {
            return Err(ClientError::Http { status, body: text });
        }
        let manifest = self.read_manifest(base, &text)?;
        if !compatible(&manifest.capabilities.asap_version) {
            return Err(ClientError::Incompatible {
                agent: manifest.id,
                asap_version: manifest.capabilities.asap_version,
            });
        }
        Self::lock(&self.manifests).insert(
            base.to_owned(),
            CachedManifest {
                manifest: manifest.clone(),
                etag,
                fresh_until: Instant::now() + ttl,
            },
        );
        Ok(manifest)
    }

    pub(crate) async fn health(
        &self,
        http: &reqwest::Client,
        base: &str,
    ) -> Result<HealthStatus, ClientError> {
        if let Some(c) = Self::lock(&self.health).get(base)
            && Instant::now() < c.fresh_until
        {
            return Ok(c.health.clone());
        }
        let health = fetch_health(http, base, self.limits.health).await?;
        // Cache no longer than the agent's liveness TTL (its manifest's ttl_seconds).
        let ttl = Self::lock(&self.manifests).get(base).map_or(
            Duration::from_secs(crate::model::entities::DEFAULT_MANIFEST_TTL_SECONDS as u64),
            |c| Duration::from_secs(u64::try_from(c.manifest.ttl_seconds).unwrap_or(1)),
        );
        let ttl = if health.is_healthy() {
            ttl
        } else {
            Duration::ZERO
        };
        Self::lock(&self.health).insert(
            base.to_owned(),
            CachedHealth {
                health: health.clone(),
                fresh_until: Instant::now() + ttl,
            },
        );
        Ok(health)
    }

    /// The `ASAP-Version` offer for sends to `base`, from its cached manifest (fresh or
    /// not; docs/asap-2.md section 10, rule 2): the 2.x versions this client speaks
    /// that the manifest's `supported_versions` lists, in this client's preference
    /// (`2.2, 2.1`). `None` (a 1.1 request) when no manifest is cached, when it is a 1.1
    /// manifest, or when it lists none of them.
    pub(crate) fn version_offer(&self, base: &str) -> Option<HeaderValue> {
        let manifests = Self::lock(&self.manifests);
        let listed = manifests.get(base)?.manifest.supported_versions.as_ref()?;
        version_offer(listed)
    }

    /// Forgets everything cached for `base_url`.
    pub fn invalidate(&self, base_url: &str) {
        let base = base_url.trim_end_matches('/');
        Self::lock(&self.manifests).remove(base);
        Self::lock(&self.health).remove(base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(
            max_age(Some("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(Some("no-store")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(None), None);
    }

    #[test]
    fn version_offer_is_the_intersection_in_our_order() {
        let offer = |listed: &[&str]| {
            let listed: Vec<String> = listed.iter().map(|v| (*v).to_owned()).collect();
            version_offer(&listed).map(|h| h.to_str().unwrap().to_owned())
        };
        assert_eq!(offer(&["2.2"]).as_deref(), Some("2.2"));
        assert_eq!(offer(&["2.1", "2.2"]).as_deref(), Some("2.2, 2.1"));
        assert_eq!(offer(&["2.1", "9"]).as_deref(), Some("2.1"));
        assert_eq!(offer(&["1.1", "3.0"]), None);
    }

    #[test]
    fn versions() {
        assert!(compatible("0.1") && compatible("1.1") && compatible("1"));
        assert!(!compatible("2.0") && !compatible(""));
    }
}
