//! The entry points the `fuzzing` feature exposes to the fuzz targets in `fuzz/`, held
//! to what the server does with the same input, and (as they are found) one test per
//! input a fuzz target crashed on.
#![cfg(feature = "fuzzing")]

use std::io::Write;

use asap_protocol::fuzzing::{Coding, content_coding, decode_body, jwks_key, websocket_text_frame};
use asap_protocol::model::{Manifest, Skill};
use asap_protocol::server::{HandlerRegistry, Server, default_skills};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

fn server() -> Server {
    let mut manifest = Manifest::new(
        "urn:asap:agent:fuzz",
        "Fuzz",
        "1.0.0",
        "Regression tests",
        "http://127.0.0.1:8000/asap",
    );
    manifest
        .capabilities
        .skills
        .push(Skill::new("echo", "Echo back the input"));
    Server::builder()
        .manifest(manifest)
        .registry(HandlerRegistry::agent(default_skills()))
        .build()
        .expect("a server")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn websocket_frames_are_answered_as_a_connection_answers_them() {
    let server = server();
    assert!(websocket_text_frame(&server, "not json").await.is_empty());
    assert!(
        websocket_text_frame(&server, r#"{"type": "pong"}"#)
            .await
            .is_empty()
    );
    let request = json!({
        "jsonrpc": "2.0", "method": "asap.send", "id": "r-1",
        "params": {"envelope": {
            "asap_version": "0.1", "sender": "urn:asap:agent:client",
            "recipient": "urn:asap:agent:fuzz", "payload_type": "task.request",
            "requires_ack": true,
            "payload": {"conversation_id": "c", "skill_id": "echo", "input": {"m": 1}},
        }},
    });
    let sent = websocket_text_frame(&server, &request.to_string()).await;
    let frames: Vec<Value> = sent
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert_eq!(frames.len(), 3, "{sent:?}");
    assert_eq!(
        frames[0]["params"]["envelope"]["payload"]["status"],
        "received"
    );
    assert_eq!(frames[1]["id"], "r-1");
    assert_eq!(
        frames[1]["result"]["envelope"]["payload_type"],
        "task.response"
    );
    assert_eq!(
        frames[2]["params"]["envelope"]["payload"]["status"],
        "processed"
    );
}

#[test]
fn request_decoding_keeps_the_pipeline_limits() {
    assert_eq!(content_coding(b" GZIP ").unwrap(), Coding::Gzip);
    assert_eq!(content_coding(b"").unwrap(), Coding::Identity);
    assert_eq!(content_coding(b"zstd").unwrap_err().status, 415);
    let body = b"{\"a\": 1}".repeat(10);
    assert_eq!(decode_body(gzip(&body), Coding::Gzip, 80).unwrap(), body);
    assert_eq!(
        decode_body(gzip(&body), Coding::Gzip, 79)
            .unwrap_err()
            .status,
        413
    );
    assert_eq!(
        decode_body(b"not gzip".to_vec(), Coding::Gzip, 80)
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_algorithm() {
    let document = asap_test_support::fixture("jwks.json");
    let document = document.as_slice();
    let token = |header: Value| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(header.to_string()));
    let (jwk, _) = jwks_key(
        document,
        &token(json!({"alg": "RS256", "kid": "test-rsa-1"})),
    )
    .unwrap()
    .expect("the RSA key");
    assert_eq!(jwk.common.key_id.as_deref(), Some("test-rsa-1"));
    let (jwk, _) = jwks_key(document, &token(json!({"alg": "ES256"})))
        .unwrap()
        .expect("the first EC key");
    assert_eq!(jwk.common.key_id.as_deref(), Some("test-ec"));
    // A kid of the wrong family, an unknown kid, a disallowed algorithm, a broken set.
    let wrong_family = token(json!({"alg": "ES256", "kid": "test-rsa-1"}));
    assert!(jwks_key(document, &wrong_family).unwrap().is_none());
    let unknown = token(json!({"alg": "RS256", "kid": "nope"}));
    assert!(jwks_key(document, &unknown).unwrap().is_none());
    assert!(jwks_key(document, &token(json!({"alg": "HS256"}))).is_err());
    assert!(jwks_key(b"{", &token(json!({"alg": "RS256"}))).is_err());
}
