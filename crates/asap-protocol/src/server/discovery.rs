//! Discovery routes: the well-known manifest with ETag caching (wire spec section
//! 9.9), the health document (9.10) and the liveness and readiness probes.

use std::sync::Arc;
use tokio::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::AppState;
use super::response::json_response;
use crate::json;
use crate::model::{Manifest, Model};

/// `Cache-Control` of the manifest.
const MANIFEST_CACHE_CONTROL: &str = "public, max-age=300";

/// The manifest as served: its S1 bytes and its strong ETag.
#[derive(Debug, Clone)]
pub struct ServedManifest {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// Body bytes (S1).
    pub body: bytes::Bytes,
    /// `"<sha256 hex>"` of `json.dumps(manifest, sort_keys=True)`, as the reference computes it.
    pub etag: String,
}

impl ServedManifest {
    /// Prepares a manifest for serving.
    pub fn new(manifest: Manifest) -> Self {
        let digest = Sha256::digest(json::to_python_sorted(&manifest.to_value()).as_bytes());
        let etag = format!("\"{}\"", hex::encode(digest));
        let body = bytes::Bytes::from(json::to_compact(&manifest));
        Self {
            manifest: Arc::new(manifest),
            body,
            etag,
        }
    }

    /// Whether `If-None-Match` names this ETag exactly (no weak or `*` match, as the reference).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|candidate| candidate.trim() == self.etag)
    }
}

pub(crate) async fn manifest(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let served = &state.manifest;
    let etag = HeaderValue::from_str(&served.etag).expect("hex ETag is a valid header");
    let cache = HeaderValue::from_static(MANIFEST_CACHE_CONTROL);
    let builder = Response::builder()
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache);
    if served.matches(&headers) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(served.body.clone()))
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
}
