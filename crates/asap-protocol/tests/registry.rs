//! The Lite Registry against a local HTTP server serving registry files, valid and
//! invalid, with and without HTTP caching headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use asap_protocol::discovery::{
    InvalidRegistry, LiteRegistry, RegistryClient, RegistryEntry, RegistryError,
};
use serde_json::{Value, json};

fn document() -> Value {
    json!({"version": "1.0", "updated_at": "2026-02-07T00:00:00Z", "agents": [
        {"id": "urn:asap:agent:research-v1", "name": "Research Agent", "description": "Web research",
         "endpoints": {"http": "https://api.example.com/asap", "ws": "wss://api.example.com/asap/ws"},
         "skills": ["web_research"], "asap_version": "0.1"},
        {"id": "urn:asap:agent:example", "name": "Example Agent", "description": "Code review",
         "endpoints": {"http": "https://agent.example.com/asap"}, "skills": ["code_review", "summarization"],
         "asap_version": "1.1.0", "future_member": "ignored"}
    ]})
}

/// Serves `/registry.json` (with `cache`-control if given), `/bad.json`, `/missing.json` (404),
/// counting requests.
async fn serve(cache: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/registry.json",
            axum::routing::get(move || {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let mut response = axum::Json(document()).into_response();
                    if let Some(value) = cache {
                        response.headers_mut().insert("cache-control", value.parse().unwrap());
                    }
                    response
                }
            }),
        )
        .route(
            "/bad.json",
            axum::routing::get(|| async {
                axum::Json(json!({"version": "1.0", "updated_at": "2026-02-07T00:00:00Z",
                    "agents": [{"id": "not-a-urn", "name": "x", "description": "x", "endpoints": {}, "asap_version": "0.1"}]}))
            }),
        )
        .route(
            "/no-version.json",
            axum::routing::get(|| async { axum::Json(json!({"updated_at": "2026-02-07T00:00:00Z"})) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

use axum::response::IntoResponse;

/// Paused time: the cache's TTL is on tokio's clock, advanced by the test.
#[tokio::test(start_paused = true)]
async fn fetch_search_and_cache() {
    let (base, hits) = serve(None).await;
    let client = RegistryClient::new().unwrap();
    let url = format!("{base}/registry.json");
    let registry = client.fetch(&url).await.unwrap();
    assert_eq!(registry.agents.len(), 2);
    assert_eq!(
        registry.find_by_skill("code_review")[0].id,
        "urn:asap:agent:example"
    );
    assert!(
        registry.find_by_skill("Code_Review").is_empty(),
        "case-sensitive"
    );
    assert_eq!(
        registry
            .find_by_id("urn:asap:agent:research-v1")
            .unwrap()
            .endpoints["ws"],
        "wss://api.example.com/asap/ws"
    );
    assert!(registry.find_by_id("urn:asap:agent:nobody").is_none());
    client.fetch(&url).await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "cached for the default 15 minutes"
    );
    // A short TTL expires.
    let short = RegistryClient::new()
        .unwrap()
        .ttl(Duration::from_millis(50));
    short.fetch(&url).await.unwrap();
    tokio::time::advance(Duration::from_millis(49)).await;
    short.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2, "still fresh");
    tokio::time::advance(Duration::from_millis(2)).await;
    short.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // Concurrent first fetches of one source share one request.
    let fresh = RegistryClient::new().unwrap();
    let (a, b, c) = tokio::join!(fresh.fetch(&url), fresh.fetch(&url), fresh.fetch(&url));
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert_eq!(hits.load(Ordering::SeqCst), 4);
}

/// Paused time: the cache's TTL is on tokio's clock, advanced by the test.
#[tokio::test(start_paused = true)]
async fn http_caching_headers_win_over_the_default_ttl() {
    let (base, hits) = serve(Some("no-cache")).await;
    let url = format!("{base}/registry.json");
    let client = RegistryClient::new().unwrap();
    client.fetch(&url).await.unwrap();
    client.fetch(&url).await.unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "no-cache: fetched every time"
    );
    let (base, hits) = serve(Some("public, max-age=1")).await;
    let url = format!("{base}/registry.json");
    let client = RegistryClient::new().unwrap();
    client.fetch(&url).await.unwrap();
    client.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_millis(990)).await;
    client.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "max-age=1 still fresh");
    tokio::time::advance(Duration::from_millis(20)).await;
    client.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2, "max-age=1 expired");
}

#[tokio::test]
async fn invalid_and_unreachable_registries_are_clear_errors() {
    let (base, _) = serve(None).await;
    let client = RegistryClient::new().unwrap();
    match client.fetch(&format!("{base}/bad.json")).await.unwrap_err() {
        RegistryError::Invalid {
            reason: InvalidRegistry::AgentId { id, .. },
            ..
        } => assert_eq!(id, "not-a-urn"),
        other => panic!("{other:?}"),
    }
    match client
        .fetch(&format!("{base}/no-version.json"))
        .await
        .unwrap_err()
    {
        RegistryError::Invalid {
            reason: reason @ InvalidRegistry::Json(_),
            ..
        } => {
            assert!(reason.to_string().contains("version"), "{reason}");
            let source = std::error::Error::source(&reason);
            assert!(source.is_some_and(|e| e.is::<serde_json::Error>()));
        }
        other => panic!("{other:?}"),
    }
    match client
        .fetch(&format!("{base}/missing.json"))
        .await
        .unwrap_err()
    {
        RegistryError::Fetch { source, .. } => {
            assert!(source.to_string().contains("404"), "{source}")
        }
        other => panic!("{other:?}"),
    }
    // A missing file keeps the I/O error as the source.
    match client
        .fetch("/nonexistent/registry.json")
        .await
        .unwrap_err()
    {
        RegistryError::Fetch { source, .. } => {
            let io = source
                .downcast_ref::<std::io::Error>()
                .expect("an I/O error");
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    // A file works too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    std::fs::write(&path, document().to_string()).unwrap();
    let registry = client.fetch(path.to_str().unwrap()).await.unwrap();
    assert_eq!(registry.agents.len(), 2);
    // Written back, the ignored member is gone and the order of endpoints is kept.
    let written = serde_json::to_string(&registry.agents[0]).unwrap();
    assert!(
        written.starts_with(r#"{"id":"urn:asap:agent:research-v1","name":"Research Agent""#),
        "{written}"
    );
    assert!(
        !serde_json::to_string(&*registry)
            .unwrap()
            .contains("future_member")
    );
    let again = LiteRegistry::parse(
        serde_json::to_string(&*registry).unwrap().as_bytes(),
        "round trip",
    )
    .unwrap();
    assert_eq!(again, *registry);
}

#[test]
fn an_entry_from_a_manifest() {
    let mut manifest = asap_protocol::model::Manifest::new(
        "urn:asap:agent:demo",
        "Demo",
        "1.0.0",
        "A demo agent",
        "https://demo.example/asap",
    );
    manifest
        .capabilities
        .skills
        .push(asap_protocol::model::Skill::new("echo", "Echo"));
    let entry = RegistryEntry::from_manifest(
        &manifest,
        RegistryEntry::endpoints_for("https://demo.example/"),
    );
    assert_eq!(entry.skills, ["echo"]);
    assert_eq!(entry.asap_version, "0.1");
    assert_eq!(
        serde_json::to_value(&entry.endpoints).unwrap(),
        json!({"http": "https://demo.example/asap", "ws": "wss://demo.example/asap/ws", "manifest": "https://demo.example/.well-known/asap/manifest.json"})
    );
}

#[test]
fn an_entry_knows_its_base_url_and_endpoints_must_be_strings() {
    let entry = |endpoints: Value| {
        LiteRegistry::parse(
            json!({"version": "1.0", "updated_at": "2026-11-30T00:00:00Z", "agents": [
                {"id": "urn:asap:agent:a", "name": "A", "description": "a",
                 "asap_version": "0.1", "endpoints": endpoints}]})
            .to_string()
            .as_bytes(),
            "inline",
        )
        .map(|r| r.agents[0].clone())
    };
    let both = entry(
        json!({"manifest": "https://m.example/x/.well-known/asap/manifest.json",
        "http": "https://a.example/base/asap"}),
    )
    .unwrap();
    assert_eq!(both.base_url().as_deref(), Some("https://a.example/base"));
    let manifest_only =
        entry(json!({"manifest": "https://m.example/x/.well-known/asap/manifest.json"})).unwrap();
    assert_eq!(
        manifest_only.base_url().as_deref(),
        Some("https://m.example/x")
    );
    assert_eq!(
        entry(json!({"ws": "wss://a.example/asap/ws"}))
            .unwrap()
            .base_url(),
        None
    );
    // The base URL is the inverse of the conventional endpoints.
    let conventional = RegistryEntry {
        endpoints: RegistryEntry::endpoints_for("https://demo.example/")
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
        ..both
    };
    assert_eq!(
        conventional.base_url().as_deref(),
        Some("https://demo.example")
    );
    match entry(json!({"http": 8000})).unwrap_err() {
        RegistryError::Invalid {
            reason: InvalidRegistry::Endpoint { endpoint, .. },
            ..
        } => assert_eq!(endpoint, "http"),
        other => panic!("{other:?}"),
    }
}
