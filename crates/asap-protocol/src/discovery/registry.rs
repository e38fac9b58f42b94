//! The Lite Registry (wire spec section 13.1): a published JSON file listing agents,
//! their endpoints and skills; fetched from a URL or a file, cached, searched.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

// tokio's clock (std's outside a runtime), so tests can pause and advance it.
use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Manifest, Timestamp, validate_agent_urn};

/// An agent's base URL from any of its conventional URLs: its `/asap` endpoint, its
/// `/asap/ws` endpoint or its well-known manifest URL (anything else is the base).
///
/// ```
/// use asap_protocol::discovery::agent_base_url;
/// assert_eq!(agent_base_url("http://a:8000/asap"), "http://a:8000");
/// assert_eq!(agent_base_url("http://a:8000/x/.well-known/asap/manifest.json"), "http://a:8000/x");
/// assert_eq!(agent_base_url("ws://a:8000/asap/ws"), "ws://a:8000");
/// assert_eq!(agent_base_url("http://a:8000/asap/asap/"), "http://a:8000/asap");
/// ```
pub fn agent_base_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    ["/.well-known/asap/manifest.json", "/asap/ws", "/asap"]
        .iter()
        .find_map(|suffix| url.strip_suffix(suffix))
        .unwrap_or(url)
        .to_owned()
}

/// Where the reference looks by default.
pub const DEFAULT_REGISTRY_URL: &str = "https://asap-protocol.github.io/registry/registry.json";

/// One agent in a registry. Unknown members are ignored when reading (the reference
/// rejects them, so never publish any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// The agent's URN.
    pub id: String,
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// Endpoint type (conventionally `http`, `ws`, `manifest`) to URL, in document order.
    pub endpoints: Map<String, Value>,
    /// Skill ids.
    #[serde(default)]
    pub skills: Vec<String>,
    /// The protocol version the agent speaks.
    pub asap_version: String,
}

/// A registry document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiteRegistry {
    /// The document's format version, e.g. `"1.0"`.
    pub version: String,
    /// When it was last updated (an ISO 8601 datetime).
    pub updated_at: Timestamp,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<RegistryEntry>,
}

/// Why a registry could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The HTTP client could not be built.
    #[error("the registry's HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// It could not be read.
    #[error("registry {source_name}: {source}")]
    Fetch {
        /// The URL or file.
        source_name: String,
        /// Why: the I/O, HTTP or body error.
        source: crate::store::BoxError,
    },
    /// It is not a valid registry document.
    #[error("registry {source_name} is invalid: {reason}")]
    Invalid {
        /// The URL or file.
        source_name: String,
        /// What is wrong.
        #[source]
        reason: InvalidRegistry,
    },
}

/// What is wrong with a registry document ([`RegistryError::Invalid`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRegistry {
    /// It is not JSON, or not the shape of a registry document.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// An agent's id is not an agent URN.
    #[error("agent {id:?}: {reason}")]
    AgentId {
        /// The id.
        id: String,
        /// Why it is not an agent URN.
        reason: String,
    },
    /// An agent's endpoint is not a string.
    #[error("agent {id}: endpoint {endpoint:?} is not a string")]
    Endpoint {
        /// The agent's id.
        id: String,
        /// The endpoint's name.
        endpoint: String,
    },
}

impl RegistryEntry {
    /// The entry for an agent from its manifest and public URLs, as the reference's
    /// `generate_registry_entry`: skills are the manifest's skill ids, `asap_version` its
    /// `capabilities.asap_version`.
    ///
    /// ```
    /// use asap_protocol::discovery::RegistryEntry;
    /// use asap_protocol::model::Manifest;
    /// let manifest = Manifest::new("urn:asap:agent:demo", "Demo", "1.0.0", "A demo", "https://demo.example/asap");
    /// let entry = RegistryEntry::from_manifest(&manifest, [("http", "https://demo.example/asap")]);
    /// assert_eq!(entry.endpoints["http"], "https://demo.example/asap");
    /// ```
    pub fn from_manifest<K: Into<String>, V: Into<String>>(
        manifest: &Manifest,
        endpoints: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            id: manifest.id.clone(),
            name: manifest.name.clone(),
            description: manifest.description.clone(),
            endpoints: endpoints
                .into_iter()
                .map(|(k, v)| (k.into(), Value::String(v.into())))
                .collect(),
            skills: manifest
                .capabilities
                .skills
                .iter()
                .map(|s| s.id.clone())
                .collect(),
            asap_version: manifest.capabilities.asap_version.clone(),
        }
    }

    /// The agent's base URL: from its `http` endpoint, else its `manifest` endpoint
    /// (the inverse of [`endpoints_for`](Self::endpoints_for)).
    pub fn base_url(&self) -> Option<String> {
        let endpoint = |name: &str| self.endpoints.get(name).and_then(|v| v.as_str());
        endpoint("http")
            .or_else(|| endpoint("manifest"))
            .map(agent_base_url)
    }

    /// The conventional endpoints of an agent at `base_url`: `http` (its `/asap`), `ws`
    /// and `manifest` (the well-known document).
    pub fn endpoints_for(base_url: &str) -> Vec<(String, String)> {
        let base = base_url.trim_end_matches('/');
        vec![
            ("http".into(), format!("{base}/asap")),
            ("ws".into(), crate::client::websocket_url(base)),
            (
                "manifest".into(),
                format!("{base}/.well-known/asap/manifest.json"),
            ),
        ]
    }

    fn check(&self) -> Result<(), InvalidRegistry> {
        validate_agent_urn(&self.id).map_err(|reason| InvalidRegistry::AgentId {
            id: self.id.clone(),
            reason,
        })?;
        if let Some((key, _)) = self.endpoints.iter().find(|(_, v)| !v.is_string()) {
            return Err(InvalidRegistry::Endpoint {
                id: self.id.clone(),
                endpoint: key.clone(),
            });
        }
        Ok(())
    }
}

impl LiteRegistry {
    /// Reads a registry document (unknown members ignored; ids checked as agent URNs).
    pub fn parse(text: &[u8], source_name: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: InvalidRegistry| RegistryError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let registry: Self = serde_json::from_slice(text).map_err(|e| invalid(e.into()))?;
        for entry in &registry.agents {
            entry.check().map_err(invalid)?;
        }
        Ok(registry)
    }

    /// Agents offering `skill` (exact, case-sensitive, as the reference).
    pub fn find_by_skill(&self, skill: &str) -> Vec<&RegistryEntry> {
        self.agents
            .iter()
            .filter(|a| a.skills.iter().any(|s| s == skill))
            .collect()
    }

    /// The agent with this URN.
    pub fn find_by_id(&self, id: &str) -> Option<&RegistryEntry> {
        self.agents.iter().find(|a| a.id == id)
    }
}

/// Fetches registries from URLs (or files) and caches them: for the HTTP `max-age`
/// when the server sends one, else for `ttl` (15 minutes, as the reference).
/// Concurrent fetches of one source share one request.
pub struct RegistryClient {
    http: reqwest::Client,
    max_document: usize,
    ttl: Duration,
    /// One slot per source: fetches of one source wait for each other (and share the
    /// answer), fetches of different sources do not.
    cache: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

/// A registry and until when it is fresh.
type Cached = (Arc<LiteRegistry>, Instant);

impl RegistryClient {
    /// A client with the default TTL (900 s) and a 30 s timeout; fails when that HTTP
    /// client cannot be built (it used to fall back to one without a timeout).
    pub fn new() -> Result<Self, RegistryError> {
        let http = crate::client::tls::http_builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(RegistryError::ClientBuild)?;
        Ok(Self {
            http,
            max_document: crate::client::MAX_REGISTRY_DOCUMENT,
            ttl: Duration::from_secs(900),
            cache: std::sync::Mutex::default(),
        })
    }

    /// The largest registry document read (default
    /// [`MAX_REGISTRY_DOCUMENT`](crate::client::MAX_REGISTRY_DOCUMENT), 16 MiB); a larger
    /// answer is refused while it streams.
    pub fn max_document_size(mut self, bytes: usize) -> Self {
        self.max_document = bytes;
        self
    }

    /// How long a registry without HTTP caching headers is kept.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The registry at `source`: an `http(s)://` URL, or a file path (read every time).
    pub async fn fetch(&self, source: &str) -> Result<Arc<LiteRegistry>, RegistryError> {
        let fetch_error = |why: crate::store::BoxError| RegistryError::Fetch {
            source_name: source.to_owned(),
            source: why,
        };
        if !(source.starts_with("http://") || source.starts_with("https://")) {
            let text = tokio::fs::read(source)
                .await
                .map_err(|e| fetch_error(e.into()))?;
            return LiteRegistry::parse(&text, source).map(Arc::new);
        }
        let slot = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(source.to_owned())
            .or_default()
            .clone();
        let mut cached = slot.lock().await;
        if let Some((registry, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(registry.clone());
        }
        let response = self
            .http
            .get(source)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| fetch_error(e.into()))?;
        if !response.status().is_success() {
            return Err(fetch_error(format!("HTTP {}", response.status()).into()));
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok());
        let ttl = crate::client::max_age(cache_control).unwrap_or(self.ttl);
        let text = crate::client::body::read_capped(response, self.max_document, "registry")
            .await
            .map_err(|e| fetch_error(e.into()))?;
        let registry = Arc::new(LiteRegistry::parse(&text, source)?);
        *cached = (!ttl.is_zero()).then(|| (registry.clone(), Instant::now() + ttl));
        Ok(registry)
    }
}
