//! `https://` and `wss://` to an agent behind a TLS terminator with a certificate from a
//! private CA: trusted when the client is given the CA's root, refused (with the reason)
//! when it is not, on both transports alike.

mod common;
use asap_test_support::tls;

use std::time::Duration;

use asap_protocol::client::{Client, ClientError, RetryPolicy, TlsError, WebSocketError};
use asap_protocol::model::{Envelope, TaskRequest};
use common::{AGENT, Options, start};
use serde_json::json;
use tls::{Pki, TlsTerminator};

fn request(marker: &str) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({"message": marker})),
    )
}

fn client(ca_pem: Option<&str>) -> Client {
    let mut builder = Client::builder().timeout(Duration::from_secs(10)).retry({
        let mut value = RetryPolicy::default();
        value.max_attempts = 1;
        value
    });
    if let Some(pem) = ca_pem {
        builder = builder.root_certificates_pem(pem);
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn agents_behind_a_private_ca_are_reached_over_https_and_wss_with_its_root() {
    let server = start(Options::default()).await;
    let pki = Pki::new();
    let port = TlsTerminator::start(&pki, server.addr).port;

    let trusting = client(Some(&pki.ca_pem));
    for (url, marker) in [
        (format!("https://localhost:{port}"), "over https"),
        (format!("wss://localhost:{port}/asap/ws"), "over wss"),
        (format!("wss://127.0.0.1:{port}"), "over wss by address"),
    ] {
        let reply = trusting.send(&url, &request(marker)).await;
        let reply = reply.unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(reply.payload_type, "task.response", "{url}");
        assert!(
            serde_json::to_string(&reply.payload)
                .unwrap()
                .contains(marker),
            "{url}: the echo carries the input: {:?}",
            reply.payload
        );
    }
    assert_eq!(trusting.websocket_connections(), 2);
    drop(trusting); // closes its WebSocket connections, so the server stops at once

    // Without the root, both transports refuse the certificate.
    let stranger = client(None);
    match stranger
        .send(&format!("https://localhost:{port}"), &request("x"))
        .await
    {
        Err(ClientError::Transport(e)) => {
            let chain = format!("{e:?}");
            assert!(chain.contains("UnknownIssuer"), "{chain}");
        }
        other => panic!("https must fail the certificate check: {other:?}"),
    }
    match stranger
        .send(&format!("wss://localhost:{port}/asap/ws"), &request("x"))
        .await
    {
        Err(ClientError::WebSocket(WebSocketError::Connect { source, .. })) => {
            let why = format!("{source:?}");
            assert!(why.contains("UnknownIssuer"), "{why}");
        }
        other => panic!("wss must fail the certificate check: {other:?}"),
    }
    server.stop().await;
}

#[test]
fn malformed_root_certificates_fail_the_build() {
    type Expect = fn(&TlsError) -> bool;
    let cases: [(&str, &str, Expect); 3] = [
        ("", "no CERTIFICATE block", |e| {
            matches!(e, TlsError::NoCertificate)
        }),
        (
            "-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n",
            "root certificates",
            |e| matches!(e, TlsError::Pem(_)),
        ),
        // Well-formed PEM and base64, but not a certificate: refused as a root.
        (
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
            "trust store",
            |e| matches!(e, TlsError::TrustStore(_)),
        ),
    ];
    for (pem, why, expected) in cases {
        match Client::builder().root_certificates_pem(pem).build() {
            Err(ClientError::Tls(error)) => {
                let message = error.to_string();
                assert!(message.contains(why), "{message}");
                assert!(expected(&error), "{pem:?}: {error:?}");
            }
            Err(other) => panic!("{pem:?}: expected a TLS error, got {other}"),
            Ok(_) => panic!("{pem:?}: expected a TLS error, got a client"),
        }
    }
}
