//! The client against agents that publish a 2.x manifest: discovery reads it, and the
//! sends that follow offer `ASAP-Version` with the 2.x versions it lists
//! (docs/asap-2.md section 10, rule 2); a 1.1 manifest keeps the 1.1 request.

use asap_protocol::client::Client;
use asap_protocol::model::{Envelope, TaskRequest, TaskResponse, TaskStatus};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn manifest(server: &MockServer, supported_versions: Option<&[&str]>) -> Value {
    let mut manifest = json!({
        "id": "urn:asap:agent:server", "name": "S", "version": "1.0.0", "description": "d",
        "capabilities": {"skills": [{"id": "echo", "description": "Echo"}]},
        "endpoints": {"asap": format!("{}/asap", server.uri())},
    });
    if let Some(versions) = supported_versions {
        manifest["supported_versions"] = json!(versions);
        manifest["capabilities"]["hardware"] = json!({"class_": "cloud"});
        manifest["sla"] = json!({"availability": "99.9%"});
    }
    manifest
}

/// An agent serving `manifest` and answering every `POST /asap` with a completed task.
async fn agent(supported_versions: Option<&[&str]>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/manifest.json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(manifest(&server, supported_versions)),
        )
        .mount(&server)
        .await;
    let reply = Envelope::new(
        "urn:asap:agent:server",
        "urn:asap:agent:client",
        TaskResponse::new("t1", TaskStatus::Completed),
    )
    .with_correlation_id("x");
    Mock::given(method("POST"))
        .and(path("/asap"))
        .respond_with(move |request: &wiremock::Request| {
            let id: Value = serde_json::from_slice::<Value>(&request.body).unwrap()["id"].clone();
            ResponseTemplate::new(200).set_body_json(
                json!({"jsonrpc": "2.0", "result": {"envelope": reply.clone()}, "id": id}),
            )
        })
        .mount(&server)
        .await;
    server
}

fn request() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        "urn:asap:agent:server",
        TaskRequest::new("c", "echo", json!({"x": 1})),
    )
}

/// The `ASAP-Version` header of each `POST /asap` the server received, in order.
async fn offers(server: &MockServer) -> Vec<Option<String>> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/asap")
        .map(|r| {
            r.headers
                .get("asap-version")
                .map(|v| v.to_str().unwrap().to_owned())
        })
        .collect()
}

/// Sends once before and once after discovery; returns the two offers.
async fn offers_around_discovery(supported_versions: Option<&[&str]>) -> Vec<Option<String>> {
    let server = agent(supported_versions).await;
    let client = Client::builder().build().unwrap();
    client.send(&server.uri(), &request()).await.unwrap();
    let manifest = client.discover(&server.uri()).await.unwrap();
    assert_eq!(
        manifest.supported_versions.as_deref(),
        supported_versions
            .map(|v| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            .as_deref()
    );
    client.send(&server.uri(), &request()).await.unwrap();
    offers(&server).await
}

#[tokio::test]
async fn a_two_x_manifest_turns_on_the_version_offer() {
    assert_eq!(
        offers_around_discovery(Some(&["2.1", "2.2"])).await,
        [None, Some("2.2, 2.1".to_owned())]
    );
    assert_eq!(
        offers_around_discovery(Some(&["2.2"])).await,
        [None, Some("2.2".to_owned())]
    );
}

#[tokio::test]
async fn a_one_one_manifest_or_no_common_version_keeps_the_one_one_request() {
    assert_eq!(offers_around_discovery(None).await, [None, None]);
    assert_eq!(offers_around_discovery(Some(&["3.0"])).await, [None, None]);
}

#[tokio::test]
async fn an_explicit_offer_wins_over_the_manifest() {
    let server = agent(Some(&["2.1", "2.2"])).await;
    let client = Client::builder()
        .asap_versions(&[asap_protocol::model::Dialect::V2_1])
        .build()
        .unwrap();
    client.discover(&server.uri()).await.unwrap();
    client.send(&server.uri(), &request()).await.unwrap();
    assert_eq!(offers(&server).await, [Some("2.1".to_owned())]);
}
