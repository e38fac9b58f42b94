//! `GET /.well-known/asap/manifest.json` in both shapes (docs/asap-2.md section 4):
//! the 1.1 shape unless the request names a 2.x version the server speaks or the
//! operator chose 2.x; the 2.x shape lists the served 2.x dialects; one ETag per
//! shape; and the signed 2.x document (section 5) with the client verifying it.

mod common;

use asap_protocol::client::{Client, ClientError, ManifestSignatureError, ResponseError};
use asap_protocol::model::{Dialect, Manifest, Model, SignedManifest, TrustLevel};
use asap_protocol::server::{ManifestDialect, Server, ServerConfig};
use asap_protocol::signing::{self, SigningKey, VerificationError};
use serde_json::{Value, json};

const PATH: &str = "/.well-known/asap/manifest.json";

struct Agent {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// A server with `config`, a manifest with an SLA (a 2.x member), optionally signing.
async fn agent(config: ServerConfig, key: Option<SigningKey>) -> Agent {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut manifest = common::manifest(&base);
    manifest.sla = Some(
        asap_protocol::model::SlaDefinition::from_value(&json!({"availability": "99.9%"})).unwrap(),
    );
    let mut builder = Server::builder().manifest(manifest).config(config);
    if let Some(key) = key {
        builder = builder.manifest_signing_key(key);
    }
    let server = builder.build().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Agent { base, stop }
}

fn config(dialects: &[Dialect], default: ManifestDialect) -> ServerConfig {
    let mut config = ServerConfig::default();
    config.dialects = dialects.to_vec();
    config.manifest_dialect = default;
    config
}

fn header(reply: &common::Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_one_one_shape_is_served_unless_a_two_x_version_is_asked_for() {
    let agent = agent(ServerConfig::default(), None).await;
    let one = common::get(&agent.base, PATH, &[]).await;
    assert_eq!(one.status, 200);
    assert_eq!(header(&one, "asap-version"), None);
    assert_eq!(header(&one, "vary"), None);
    let mut expected = common::manifest(&agent.base);
    expected.supported_versions = None;
    assert_eq!(one.text, expected.to_json(), "today's 1.1 bytes, no sla");
    for asked in ["1.1", "9.9", "2.2.0", ""] {
        let reply = common::get(&agent.base, PATH, &[("ASAP-Version", asked)]).await;
        assert_eq!(reply.text, one.text, "{asked:?}");
        assert_eq!(header(&reply, "etag"), header(&one, "etag"));
    }

    let two = common::get(&agent.base, PATH, &[("ASAP-Version", "9.9, 2.1, 2.2")]).await;
    assert_eq!(two.status, 200);
    assert_eq!(header(&two, "asap-version").as_deref(), Some("2.1"));
    assert_eq!(header(&two, "vary").as_deref(), Some("ASAP-Version"));
    let served: Value = two.json();
    let keys: Vec<&str> = served
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "version",
            "description",
            "capabilities",
            "endpoints",
            "supported_versions",
            "auth",
            "signature",
            "sla",
            "verification",
            "ttl_seconds"
        ]
    );
    assert_eq!(served["supported_versions"], json!(["2.1", "2.2"]));
    assert_eq!(served["sla"]["availability"], "99.9%");
    assert_eq!(served["verification"], Value::Null);
    assert_eq!(served["capabilities"]["hardware"], Value::Null);
    let manifest = Manifest::from_wire(&served).unwrap();
    assert_eq!(two.text, manifest.to_wire_json());
    assert_ne!(
        header(&two, "etag"),
        header(&one, "etag"),
        "one ETag per shape"
    );
    let _ = agent.stop.send(());
}

#[tokio::test]
async fn each_shape_answers_304_to_its_own_etag_only() {
    let agent = agent(ServerConfig::default(), None).await;
    let one = common::get(&agent.base, PATH, &[]).await;
    let two = common::get(&agent.base, PATH, &[("ASAP-Version", "2.2")]).await;
    let (etag_1, etag_2) = (header(&one, "etag").unwrap(), header(&two, "etag").unwrap());
    let cached = |etag: String, version: Option<&'static str>| {
        let base = agent.base.clone();
        async move {
            let mut headers = vec![("If-None-Match", etag.as_str())];
            headers.extend(version.map(|v| ("ASAP-Version", v)));
            common::get(&base, PATH, &headers).await
        }
    };
    let not_modified = cached(etag_2.clone(), Some("2.2")).await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(
        header(&not_modified, "asap-version").as_deref(),
        Some("2.2")
    );
    assert_eq!(cached(etag_1.clone(), None).await.status, 304);
    assert_eq!(cached(etag_1, Some("2.2")).await.status, 200);
    assert_eq!(cached(etag_2, None).await.status, 200);
    let _ = agent.stop.send(());
}

#[tokio::test]
async fn supported_versions_are_the_served_two_x_dialects() {
    let only_2_2 = agent(
        config(&[Dialect::V1_1, Dialect::V2_2], ManifestDialect::V1_1),
        None,
    )
    .await;
    let reply = common::get(&only_2_2.base, PATH, &[("ASAP-Version", "2.1, 2.2")]).await;
    assert_eq!(reply.json()["supported_versions"], json!(["2.2"]));
    assert_eq!(header(&reply, "asap-version").as_deref(), Some("2.2"));
    let _ = only_2_2.stop.send(());

    let one_one_only = agent(config(&[Dialect::V1_1], ManifestDialect::V2), None).await;
    let reply = common::get(&one_one_only.base, PATH, &[("ASAP-Version", "2.2")]).await;
    assert!(reply.json().get("supported_versions").is_none());
    assert_eq!(header(&reply, "asap-version"), None);
    let _ = one_one_only.stop.send(());
}

#[tokio::test]
async fn the_operator_can_serve_the_two_x_shape_by_default() {
    let agent = agent(config(&Dialect::ALL, ManifestDialect::V2), None).await;
    let reply = common::get(&agent.base, PATH, &[]).await;
    assert_eq!(header(&reply, "asap-version").as_deref(), Some("2.2"));
    assert_eq!(reply.json()["supported_versions"], json!(["2.1", "2.2"]));
    let _ = agent.stop.send(());
}

#[tokio::test]
async fn a_signing_server_serves_the_signed_document_in_the_two_x_shape_only() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let agent = agent(ServerConfig::default(), Some(key.clone())).await;
    let one = common::get(&agent.base, PATH, &[]).await;
    assert!(
        Manifest::from_value(&one.json()).is_ok(),
        "1.1 stays unsigned"
    );
    let two = common::get(&agent.base, PATH, &[("ASAP-Version", "2.2")]).await;
    let signed = SignedManifest::from_value(&two.json()).unwrap();
    assert_eq!(two.text, signed.to_wire_json());
    assert_eq!(signed.signature.trust_level, TrustLevel::SelfSigned);
    assert_eq!(
        signing::verify_manifest(&signed, Some(&key.verifying_key())),
        Ok(())
    );
    assert_eq!(
        signed.manifest.supported_versions.as_deref(),
        Some(&["2.1".to_owned(), "2.2".to_owned()][..])
    );
    let _ = agent.stop.send(());
}

fn discovery_error(result: Result<Manifest, ClientError>) -> ManifestSignatureError {
    match result {
        Err(ClientError::InvalidResponse(ResponseError::ManifestSignature(e))) => e,
        other => panic!("expected a signature error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_client_verifies_a_signed_manifest_against_the_pinned_key() {
    let key = SigningKey::from_bytes(&[3; 32]);
    let agent = agent(
        config(&Dialect::ALL, ManifestDialect::V2),
        Some(key.clone()),
    )
    .await;
    let build = |builder: asap_protocol::client::ClientBuilder| {
        builder.require_https(false).build().unwrap()
    };
    // Unverified (the default, as the reference): the document's manifest is read.
    let manifest = build(Client::builder())
        .discover(&agent.base)
        .await
        .unwrap();
    assert!(manifest.is_2x());
    let pinned = build(
        Client::builder()
            .trusted_manifest_key(&format!("{}{PATH}", agent.base), key.verifying_key()),
    );
    assert_eq!(pinned.discover(&agent.base).await.unwrap(), manifest);

    let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
    let wrong = build(Client::builder().trusted_manifest_key(&agent.base, other));
    assert!(matches!(
        discovery_error(wrong.discover(&agent.base).await),
        ManifestSignatureError::Invalid {
            source: VerificationError::BadSignature,
            ..
        }
    ));
    let unpinned = build(Client::builder().verify_manifest_signatures(true));
    assert!(matches!(
        discovery_error(unpinned.discover(&agent.base).await),
        ManifestSignatureError::NoTrustedKey(_)
    ));
    let _ = agent.stop.send(());
}

#[tokio::test]
async fn a_pinned_agent_serving_an_unsigned_manifest_is_refused() {
    let agent = agent(config(&Dialect::ALL, ManifestDialect::V2), None).await;
    let key = SigningKey::from_bytes(&[3; 32]).verifying_key();
    let client = Client::builder()
        .require_https(false)
        .trusted_manifest_key(&agent.base, key)
        .build()
        .unwrap();
    assert!(matches!(
        discovery_error(client.discover(&agent.base).await),
        ManifestSignatureError::Unsigned(_)
    ));
    // Verification on without a pinned key: unsigned manifests are read (the reference).
    let open = Client::builder()
        .require_https(false)
        .verify_manifest_signatures(true)
        .build()
        .unwrap();
    assert!(open.discover(&agent.base).await.is_ok());
    let _ = agent.stop.send(());
}
