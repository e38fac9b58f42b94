//! Discovery routes: the well-known manifest with ETag caching (wire spec section
//! 9.9), the health document (9.10) and the liveness and readiness probes.

use std::sync::Arc;
use tokio::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::response::json_response;
use crate::json;
use crate::model::{ASAP_VERSION_HEADER, Dialect, Manifest, Model};

/// `Cache-Control` of the manifest.
const MANIFEST_CACHE_CONTROL: &str = "public, max-age=300";

/// Which manifest shape a server serves when the request does not ask for one
/// (`ServerConfig::manifest_dialect`, `asap serve --manifest-dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ManifestDialect {
    /// The 1.1 shape (9 members): what 1.1 clients can read. The default.
    #[default]
    V1_1,
    /// The 2.x shape (every 2.x member, `null` where absent), as 2.5.10 serves it.
    V2,
}

impl ManifestDialect {
    /// `1.1` or `2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_1 => "1.1",
            Self::V2 => "2",
        }
    }
}

impl std::str::FromStr for ManifestDialect {
    type Err = String;

    /// `1.1`, or `2` (also `2.x`, `2.1`, `2.2`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "1.1" => Ok(Self::V1_1),
            "2" | "2.x" | "2.1" | "2.2" => Ok(Self::V2),
            other => Err(format!(
                "unknown manifest dialect {other:?} (expected 1.1 or 2)"
            )),
        }
    }
}

/// One served shape of the manifest: its bytes and strong ETag.
#[derive(Debug, Clone)]
struct Shape {
    body: bytes::Bytes,
    etag: String,
}

impl Shape {
    /// The S1 bytes of `value` and `"<sha256 hex>"` of `json.dumps(value,
    /// sort_keys=True)`, as the reference computes the ETag.
    fn of(value: &Value) -> Self {
        let digest = Sha256::digest(json::to_python_sorted(value).as_bytes());
        Self {
            body: bytes::Bytes::from(json::to_compact(value)),
            etag: format!("\"{}\"", hex::encode(digest)),
        }
    }

    /// Whether `If-None-Match` names this ETag exactly (no weak or `*` match, as the
    /// reference).
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|candidate| candidate.trim() == self.etag)
    }
}

/// The manifest as served, in each shape: the 1.1 shape (the 2.x members left out)
/// and, when the server speaks a 2.x dialect, the 2.x shape with `supported_versions`
/// naming those dialects (or, with a signing key, the signed document around it).
#[derive(Debug, Clone)]
pub struct ServedManifest {
    /// The manifest as configured.
    pub manifest: Arc<Manifest>,
    /// Body bytes of the 1.1 shape (S1).
    pub body: bytes::Bytes,
    /// `"<sha256 hex>"` of `json.dumps(manifest, sort_keys=True)` of the 1.1 shape.
    pub etag: String,
    /// The 2.x shape, when the server speaks a 2.x dialect.
    two: Option<Shape>,
    /// The 2.x manifest of that shape (what is signed).
    #[cfg(feature = "signing")]
    two_manifest: Option<Manifest>,
    /// The 2.x dialects served, oldest first.
    dialects_2x: Vec<Dialect>,
    /// The shape served to requests that do not ask for one.
    default: ManifestDialect,
}

impl ServedManifest {
    /// Prepares a manifest for serving with every dialect and the 1.1 shape by default.
    pub fn new(manifest: Manifest) -> Self {
        Self::for_dialects(manifest, &Dialect::ALL, ManifestDialect::V1_1)
    }

    /// Prepares a manifest for a server that speaks `dialects`, serving `default` to
    /// requests without a 2.x `ASAP-Version` header. With no 2.x dialect there is no
    /// 2.x shape and every request gets the 1.1 shape.
    pub fn for_dialects(
        manifest: Manifest,
        dialects: &[Dialect],
        default: ManifestDialect,
    ) -> Self {
        let mut one = manifest.clone();
        one.supported_versions = None;
        one.sla = None;
        one.verification = None;
        one.capabilities.hardware = None;
        one.capabilities.inference = None;
        let served_1_1 = Shape::of(&one.to_value());
        let mut dialects_2x: Vec<Dialect> = Dialect::ALL
            .into_iter()
            .filter(|d| d.is_2x() && dialects.contains(d))
            .collect();
        dialects_2x.dedup();
        let two_manifest = (!dialects_2x.is_empty()).then(|| {
            let mut two = manifest.clone();
            two.supported_versions =
                Some(dialects_2x.iter().map(|d| d.as_str().to_owned()).collect());
            two
        });
        Self {
            manifest: Arc::new(manifest),
            body: served_1_1.body,
            etag: served_1_1.etag,
            two: two_manifest.as_ref().map(|m| Shape::of(&m.to_wire_value())),
            #[cfg(feature = "signing")]
            two_manifest,
            dialects_2x,
            default,
        }
    }

    /// Serves the 2.x shape as a signed document (`SignedManifest`, self-signed with
    /// `key`); the 1.1 shape stays unsigned, since a 1.1 client cannot read the wrapper.
    /// Without a 2.x dialect there is nothing to sign and nothing changes.
    #[cfg(feature = "signing")]
    pub fn signed(
        mut self,
        key: &crate::signing::SigningKey,
    ) -> Result<Self, crate::signing::SigningError> {
        if let Some(two) = &self.two_manifest {
            let document = crate::signing::sign_manifest(two, key)?;
            self.two = Some(Shape::of(&document.to_wire_value()));
        }
        Ok(self)
    }

    /// Whether `If-None-Match` names the ETag of the shape `headers` get.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.choose(headers).0.matches(headers)
    }

    /// The shape a request gets, and the 2.x version to echo in `ASAP-Version`: the
    /// first token of the request's header, in its order, naming a 2.x dialect served;
    /// else the configured default (echoing the newest 2.x dialect served).
    fn choose(&self, headers: &HeaderMap) -> (Shape, Option<Dialect>) {
        let one = || Shape {
            body: self.body.clone(),
            etag: self.etag.clone(),
        };
        let Some(two) = &self.two else {
            return (one(), None);
        };
        let asked = headers
            .get_all(ASAP_VERSION_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| Dialect::from_token(token.trim()))
            .find(|d| self.dialects_2x.contains(d));
        match (asked, self.default) {
            (Some(dialect), _) => (two.clone(), Some(dialect)),
            (None, ManifestDialect::V2) => (two.clone(), self.dialects_2x.last().copied()),
            (None, ManifestDialect::V1_1) => (one(), None),
        }
    }
}

pub(crate) async fn manifest(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (shape, version) = state.manifest.choose(&headers);
    let etag = HeaderValue::from_str(&shape.etag).expect("hex ETag is a valid header");
    let cache = HeaderValue::from_static(MANIFEST_CACHE_CONTROL);
    let mut builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache);
    if let Some(version) = version {
        builder = builder
            .header(ASAP_VERSION_HEADER, version.as_str())
            .header(header::VARY, ASAP_VERSION_HEADER);
    }
    if shape.matches(&headers) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(shape.body))
        .expect("valid response")
}

fn uptime(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 100.0).round() / 100.0
}

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let healthy = state.dependencies_up().await;
    let m = &state.manifest.manifest;
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "agent_id": m.id,
        "version": m.version,
        "asap_version": m.capabilities.asap_version,
        "uptime_seconds": uptime(state.started),
        "load": {"active_tasks": state.in_flight(), "queue_depth": 0},
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &body)
}

pub(crate) async fn liveness() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(crate) async fn readiness(State(state): State<AppState>) -> Response {
    if !state.shutting_down() && state.dependencies_up().await {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "unavailable"}),
        )
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, super::metrics::METRICS_CONTENT_TYPE)
        .body(Body::from(state.metrics.render()))
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_sha256_of_the_sorted_python_dump() {
        let m = Manifest::from_value(&serde_json::json!({
            "id": "urn:asap:agent:echo-agent", "name": "Echo Agent", "version": "0.3.0",
            "description": "Echoes task input as output",
            "capabilities": {"skills": [{"id": "echo", "description": "Echo back the input"}]},
            "endpoints": {"asap": "http://127.0.0.1:18001/asap"}
        }))
        .unwrap();
        let served = ServedManifest::new(m);
        assert_eq!(
            served.etag,
            "\"e2c8240389825008f4b5dbeb89f0cfa7cd13ce91f9d297c91f450070a342b485\""
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", {}", served.etag)).unwrap(),
        );
        assert!(served.matches(&h));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(!served.matches(&h));
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&format!("W/{}", served.etag)).unwrap(),
        );
        assert!(!served.matches(&h));
    }

    #[test]
    fn the_two_x_shape_has_the_reference_etag() {
        // Served by the 2.5.10 echo agent (docs/asap-2.md section 4), with its ETag.
        let captured = r#"{"id":"urn:asap:agent:echo-agent","name":"Echo Agent","version":"0.3.0","description":"Echoes task input as output","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo back the input","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false,"mcp_tools":[],"hardware":null,"inference":null},"endpoints":{"asap":"http://127.0.0.1:18251/asap","events":null},"supported_versions":["2.2"],"auth":null,"signature":null,"sla":null,"verification":null,"ttl_seconds":300}"#;
        let manifest = Manifest::from_wire_json(captured.as_bytes()).unwrap();
        let served = ServedManifest::for_dialects(
            manifest,
            &[Dialect::V1_1, Dialect::V2_2],
            ManifestDialect::V2,
        );
        let (shape, version) = served.choose(&HeaderMap::new());
        assert_eq!(version, Some(Dialect::V2_2));
        assert_eq!(shape.body, captured.as_bytes());
        assert_eq!(
            shape.etag,
            "\"62c3224c2e1a06f295d539cd79a805ab99c0c9a281fb42a80c86c0974f4e099b\""
        );
    }

    #[test]
    fn manifest_dialects_parse() {
        for (text, dialect) in [("1.1", ManifestDialect::V1_1), ("2", ManifestDialect::V2)] {
            assert_eq!(text.parse::<ManifestDialect>(), Ok(dialect));
            assert_eq!(dialect.as_str(), text);
        }
        assert!("3".parse::<ManifestDialect>().is_err());
    }
}
