//! OAuth2 across implementations, against the Python reference (asap-protocol 1.1.0),
//! with the in-process identity provider of the test suite:
//!
//! - the reference's `OAuth2ClientCredentials` obtains a token from our provider;
//! - the reference client calls `asap serve` with OAuth2 on (401, 403, success);
//! - `asap send` and the library client call the reference server with its OAuth2
//!   middleware on.

use asap_test_support::idp;
mod support;

use std::process::Command;
use std::sync::Arc;

use asap_protocol::auth::{ClientCredentials, JwksCache, JwtPolicy, JwtValidator};
use asap_protocol::client::{Client, ClientError};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_test_support::process::{Guard, reference_script, reference_server};
use idp::{ClientAuthUsed, MockIdp};
use serde_json::{Value, json};
use support::asap_serve;

/// Runs `interop/oauth2_interop.py ARGS` with the reference and parses its JSON line.
fn reference(args: &[&str]) -> Value {
    let out = reference_script("oauth2_interop.py")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn reference_client_credentials_against_our_provider() {
    let idp = MockIdp::start();
    // The reference authenticates with HTTP Basic of the raw strings; a secret with
    // characters that form-encoding would change shows it is accepted as sent.
    idp.register("ref-client", "s3cr3t:with/special");
    let token_url = idp.token_url();
    let answer = reference(&[
        "token",
        "--token-url",
        &token_url,
        "--client-id",
        "ref-client",
        "--client-secret",
        "s3cr3t:with/special",
        "--scope",
        "asap:execute asap:read",
    ]);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["cached"], true);
    assert_eq!(idp.token_requests(), 1, "the second call used the cache");
    assert_eq!(idp.last_client_auth(), Some(ClientAuthUsed::Basic));
    let form = idp.last_token_form();
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "asap:execute asap:read");
    // The token it got is one our validator accepts under the strict policy.
    let validator = JwtValidator::new(
        Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()),
        "urn:asap:agent:any",
        JwtPolicy::strict(idp.issuer(), idp::AUDIENCE),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let claims = runtime
        .block_on(validator.validate(answer["access_token"].as_str().unwrap()))
        .unwrap();
    assert_eq!(claims.subject, "ref-client");
    assert_eq!(claims.scopes, ["asap:execute", "asap:read"]);
}

#[test]
fn reference_client_against_asap_serve_with_oauth2() {
    let idp = MockIdp::start();
    let data = tempfile::tempdir().unwrap();
    let (_agent, url) = asap_serve(
        &[
            "--storage",
            "memory",
            "--rate-limit",
            "off",
            "--oauth2-issuer",
            &idp.issuer(),
            "--oauth2-scope",
            "asap:execute",
        ],
        data.path(),
    );
    let call = |token: Option<&str>| {
        let mut args = vec![
            "call",
            "--url",
            &url,
            "--agent-id",
            "urn:asap:agent:asap-rs",
        ];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        reference(&args)
    };
    let none = call(None);
    assert_eq!(none["outcome"], "error", "{none}");
    assert!(none["message"].as_str().unwrap().contains("401"), "{none}");
    let read_only = call(Some(&idp.issue("ref-client", "asap:read")));
    assert_eq!(read_only["outcome"], "error", "{read_only}");
    assert!(
        read_only["message"].as_str().unwrap().contains("403"),
        "{read_only}"
    );
    let forged = call(Some(
        &idp.issue("ref-client", "asap:execute").replace('.', ".x"),
    ));
    assert!(
        forged["message"].as_str().unwrap_or("").contains("401"),
        "{forged}"
    );
    let good = call(Some(&idp.issue("ref-client", "asap:execute")));
    assert_eq!(good["outcome"], "ok", "{good}");
    assert_eq!(good["payload_type"], "task.response");
}

/// The reference echo agent with its OAuth2 middleware trusting our provider.
fn reference_oauth2_agent(idp: &MockIdp) -> (Guard, String) {
    reference_server(
        "oauth2_interop.py",
        &["serve", "--jwks-uri", &idp.jwks_uri()],
    )
}

#[test]
fn asap_send_against_the_reference_server_with_oauth2() {
    let idp = MockIdp::start();
    let (_agent, url) = reference_oauth2_agent(&idp);
    let token_url = idp.token_url();
    let send = |extra: &[&str]| {
        let mut args = vec![
            "send",
            &url,
            "--skill",
            "echo",
            "--input",
            r#"{"n": 1}"#,
            "--recipient",
            "urn:asap:agent:echo-agent",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_asap"))
            .args(&args)
            .output()
            .unwrap()
    };
    let anonymous = send(&[]);
    assert_eq!(anonymous.status.code(), Some(5));
    let body: Value = serde_json::from_slice(&anonymous.stdout).unwrap();
    assert_eq!(body["error"]["data"]["http_status"], 401, "{body}");

    let credentials = [
        "--token-url",
        &token_url,
        "--client-id",
        "asap-client",
        "--client-secret",
        "asap-secret",
    ];
    let mut with_scope = credentials.to_vec();
    with_scope.extend(["--scope", "asap:read"]);
    let refused = send(&with_scope);
    let body: Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(body["error"]["data"]["http_status"], 403, "{body}");

    let mut with_scope = credentials.to_vec();
    with_scope.extend(["--scope", "asap:execute"]);
    let sent = send(&with_scope);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    let reply: Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(reply["payload_type"], "task.response", "{reply}");
}

#[test]
fn library_client_against_the_reference_server_with_oauth2() {
    let idp = MockIdp::start();
    let (_agent, url) = reference_oauth2_agent(&idp);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let request = Envelope::new(
            "urn:asap:agent:asap-rs-client",
            "urn:asap:agent:echo-agent",
            TaskRequest::new("c1", "echo", json!({"n": 2})),
        );
        let source = Arc::new(
            ClientCredentials::new(idp.token_url(), "asap-client", "asap-secret")
                .unwrap()
                .scopes(["asap:execute"]),
        );
        let client = Client::builder().token_source(source).build().unwrap();
        for _ in 0..3 {
            let reply = client.send(&url, &request).await.unwrap();
            assert_eq!(reply.payload_type, "task.response");
        }
        assert_eq!(idp.token_requests(), 1, "one token for three calls");
        // After a key rotation the reference refetches its JWKS and accepts new tokens.
        idp.rotate();
        let fresh = Client::builder()
            .bearer_token(idp.issue("asap-client", "asap:execute"))
            .build()
            .unwrap();
        fresh.send(&url, &request).await.unwrap();
        let anonymous = Client::builder().build().unwrap();
        match anonymous.send(&url, &request).await.unwrap_err() {
            ClientError::Http { status, body } => {
                assert_eq!(status, 401);
                assert!(body.contains("Authentication required"), "{body}");
            }
            other => panic!("{other:?}"),
        }
    });
}
