//! The `asap` binary, run as a user runs it.

use asap_test_support::idp;
mod support;
use asap_test_support::tls;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use idp::MockIdp;

fn asap(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("asap runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        // The command may exit before reading its input (a usage error); that is not our failure.
        let _ = input.write_all(text.as_bytes());
    }
    drop(input);
    child.wait_with_output().unwrap()
}

const VALID: &str = r#"{"asap_version":"0.1","sender":"urn:asap:agent:a","recipient":"urn:asap:agent:b","payload_type":"task.request","payload":{"conversation_id":"c","skill_id":"echo","input":{}}}"#;

#[test]
fn validate_reports_ok_and_errors_per_file_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    let bad = dir.path().join("bad.json");
    std::fs::write(&good, VALID).unwrap();
    std::fs::write(
        &bad,
        VALID
            .replace("urn:asap:agent:a", "urn:asap:agent:A")
            .replace(r#""asap_version":"0.1","#, ""),
    )
    .unwrap();
    let out = asap(
        &["validate", good.to_str().unwrap(), bad.to_str().unwrap()],
        None,
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].ends_with("good.json: ok"), "{stdout}");
    assert!(
        lines[1].ends_with("bad.json: 2 validation errors for Envelope"),
        "{stdout}"
    );
    assert_eq!(lines[2], "  asap_version: Field required [type=missing]");
    assert_eq!(
        lines[3],
        "  sender: Value error, Agent ID must follow URN format 'urn:asap:agent:{name}', got: urn:asap:agent:A [type=value_error]"
    );
}

#[test]
fn validate_reads_stdin_and_other_models() {
    let out = asap(&["validate", "-"], Some(VALID));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "<stdin>: ok\n");
    let out = asap(
        &["validate", "--model", "task_cancel", "-"],
        Some(r#"{"task_id": 1}"#),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("task_id: Input should be a valid string [type=string_type]")
    );
    let out = asap(&["validate", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("<stdin>: not valid JSON")
    );
    let out = asap(&["validate", "--model", "nothing", "-"], Some("{}"));
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown model")
    );
    let out = asap(&["validate", "/nonexistent/file.json"], None);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("cannot read")
    );
}

#[test]
fn schemas_export_writes_one_file_per_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = asap(
        &["schemas", "export", "--out", dir.path().to_str().unwrap()],
        None,
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("wrote 31 schemas")
    );
    let envelope: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("envelope.schema.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        envelope["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(envelope["title"], "Envelope");
    for path in [
        "payloads/message_ack.schema.json",
        "parts/part.schema.json",
        "entities/manifest.schema.json",
    ] {
        assert!(dir.path().join(path).is_file(), "{path}");
    }
}

/// `asap serve` with a manifest file, driven by `asap send`/`discover`/`health`,
/// then stopped with SIGTERM.
#[test]
fn serve_with_a_manifest_file_answers_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"id":"urn:asap:agent:from-file","name":"From File","version":"2.0.0","description":"d",
            "capabilities":{"skills":[{"id":"echo","description":"Echo"}]},"endpoints":{"asap":"http://127.0.0.1:1/asap"}}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args([
            "serve",
            "--port",
            "0",
            "--manifest",
            manifest.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // One line: the agent, its manifest URL, its storage, where it listens (last).
    assert!(
        line.starts_with("asap: From File (urn:asap:agent:from-file) manifest http://127.0.0.1:"),
        "{line}"
    );
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        line.contains(&format!(
            "{url}/.well-known/asap/manifest.json, state sqlite "
        )),
        "{line}"
    );
    assert!(line.contains(" listening on http://127.0.0.1:"), "{line}");

    let discovered = asap(&["discover", &url], None);
    let m: serde_json::Value = serde_json::from_slice(&discovered.stdout).unwrap();
    assert_eq!(
        (m["id"].as_str(), m["version"].as_str()),
        (Some("urn:asap:agent:from-file"), Some("2.0.0"))
    );
    let health = asap(&["health", &url], None);
    assert!(health.status.success());

    let envelope = dir.path().join("envelope.json");
    std::fs::write(
        &envelope,
        VALID.replace("urn:asap:agent:b", "urn:asap:agent:from-file"),
    )
    .unwrap();
    let sent = asap(
        &["send", &url, "--envelope", envelope.to_str().unwrap()],
        None,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    let reply: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(reply["payload"]["status"], "completed");
    let failed = asap(&["send", &url, "--skill", "no-such-skill"], None);
    assert_eq!(failed.status.code(), Some(5));
    let error: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(error["error"]["code"], -32602);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("asap: stopped"), "{rest}");
    assert!(dir.path().join("data/asap_state.db").is_file());
}

/// `asap serve --oauth2-jwks-uri`: tokens required on /asap, `asap send --token` works.
#[test]
fn serve_with_oauth2_requires_a_token() {
    let idp = MockIdp::start();
    let token = idp.issue("cli", "asap:execute");
    let dir = tempfile::tempdir().unwrap();
    let (_agent, url) = serve_with_oauth2(&["--oauth2-jwks-uri", &idp.jwks_uri()], dir.path());
    let send = |extra: &[&str]| {
        let mut args = vec![
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
        ];
        args.extend_from_slice(extra);
        asap(&args, None)
    };
    let unauthenticated = send(&[]);
    assert_eq!(unauthenticated.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&unauthenticated.stdout).contains("Authentication required"));
    let sent = send(&["--token", &token]);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    // The manifest stays public.
    assert!(asap(&["discover", &url], None).status.success());
}

/// `asap serve` with OAuth2 flags and memory storage.
fn serve_with_oauth2(
    flags: &[&str],
    data: &std::path::Path,
) -> (asap_test_support::process::Guard, String) {
    let mut all = vec!["--storage", "memory"];
    all.extend_from_slice(flags);
    support::asap_serve(&all, data)
}

#[test]
fn token_command_and_client_credentials_against_an_oauth2_agent() {
    let idp = MockIdp::start();
    let token_url = idp.token_url();
    let credentials = [
        "--token-url",
        &token_url,
        "--client-id",
        "asap-client",
        "--client-secret",
        "asap-secret",
    ];
    let token = |extra: &[&str]| {
        let mut args = vec!["token"];
        args.extend_from_slice(&credentials);
        args.extend_from_slice(extra);
        asap(&args, None)
    };
    let printed = token(&["--scope", "asap:execute"]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout)
            .trim()
            .split('.')
            .count(),
        3,
        "a JWT"
    );
    let decoded = token(&[
        "--claims",
        "--scope",
        "asap:read asap:execute",
        "--client-secret-post",
    ]);
    let claims: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["scope"].as_str()),
        (Some("asap-client"), Some("asap:read asap:execute"))
    );
    assert_eq!(idp.last_client_auth(), Some(idp::ClientAuthUsed::Post));
    assert_eq!(
        asap(&["token", "--token-url", &token_url], None)
            .status
            .code(),
        Some(2),
        "client id and secret are required"
    );

    // Discovery finds the keys; the agent refuses a token without its scope.
    let dir = tempfile::tempdir().unwrap();
    let (_agent, url) = serve_with_oauth2(&["--oauth2-issuer", &idp.issuer()], dir.path());
    let send = |scope: &str| {
        let mut args = vec![
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
        ];
        args.extend_from_slice(&credentials);
        args.extend_from_slice(&["--scope", scope]);
        asap(&args, None)
    };
    let flow = send("asap:execute");
    assert!(
        flow.status.success(),
        "{}",
        String::from_utf8_lossy(&flow.stdout)
    );
    let refused = send("asap:read");
    assert_eq!(refused.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("Insufficient scope"));
}

/// `asap serve` accepting opaque tokens through the provider's introspection endpoint.
#[test]
fn serve_accepts_opaque_tokens_through_introspection() {
    let idp = MockIdp::start();
    idp.set_opaque(true);
    let dir = tempfile::tempdir().unwrap();
    let issuer = idp.issuer();
    let (_agent, url) = serve_with_oauth2(
        &[
            "--oauth2-issuer",
            &issuer,
            "--oauth2-client-id",
            "asap-client",
            "--oauth2-client-secret",
            "asap-secret",
        ],
        dir.path(),
    );
    let opaque = idp.issue("asap-client", "asap:execute");
    let sent = asap(
        &[
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
            "--token",
            &opaque,
        ],
        None,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    assert_eq!(idp.introspections(), 1);
    let refused = asap(
        &[
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
            "--token",
            "opaque-forged",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&refused.stdout).contains("Invalid authentication token"));
}

/// `asap login`: prints the URL, receives the redirect, prints the tokens; a saved
/// refresh token gets a new access token without a browser.
#[test]
fn login_with_the_authorization_code_and_pkce() {
    use std::io::{BufRead, BufReader};
    let idp = MockIdp::start();
    let issuer = idp.issuer();
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args([
            "login",
            "--issuer",
            &issuer,
            "--client-id",
            "asap-cli",
            "--scope",
            "asap:execute",
            "--json",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let url = stderr
        .lines()
        .map(Result::unwrap)
        .find_map(|line| {
            line.trim()
                .starts_with("http")
                .then(|| line.trim().to_owned())
        })
        .expect("asap login prints the authorization URL");
    assert!(url.starts_with(&idp.authorize_url()), "{url}");
    // The browser: follows the provider's redirect to the loopback listener.
    let page = reqwest::blocking::get(&url).unwrap();
    assert!(page.status().is_success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let set: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(set["token_type"], "Bearer");
    assert!(set["expires_in"].as_u64().unwrap() > 3000);
    let access = set["access_token"].as_str().unwrap();
    let refresh = set["refresh_token"].as_str().unwrap();
    assert_eq!(idp.last_token_form()["grant_type"], "authorization_code");

    let renewed = asap(
        &[
            "login",
            "--issuer",
            &issuer,
            "--client-id",
            "asap-cli",
            "--refresh-token",
            refresh,
        ],
        None,
    );
    assert!(
        renewed.status.success(),
        "{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    let new_access = String::from_utf8_lossy(&renewed.stdout).trim().to_owned();
    assert_eq!(new_access.split('.').count(), 3);
    assert_ne!(new_access, access);
    assert_eq!(idp.last_token_form()["grant_type"], "refresh_token");
    // Spent by rotation.
    let again = asap(
        &[
            "login",
            "--issuer",
            &issuer,
            "--client-id",
            "asap-cli",
            "--refresh-token",
            refresh,
        ],
        None,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("invalid_grant"));
}

/// `asap send ws://…` goes over the WebSocket; `asap listen` prints pushes and, with
/// `--skill`, the reply of a task started on the same connection.
#[test]
fn send_and_listen_over_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, url) = support::asap_serve(&["--storage", "memory"], dir.path());
    let ws = url.replace("http://", "ws://");
    let sent = asap(
        &[
            "send",
            &ws,
            "--skill",
            "echo",
            "--input",
            r#"{"via": "ws"}"#,
        ],
        None,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    let reply: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(reply["payload"]["result"]["echoed"]["via"], "ws");
    let listened = asap(
        &["listen", &ws, "--skill", "echo", "--input", r#"{"n": 1}"#],
        None,
    );
    assert!(
        listened.status.success(),
        "{}",
        String::from_utf8_lossy(&listened.stderr)
    );
    let last = String::from_utf8_lossy(&listened.stdout)
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let reply: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(reply["payload_type"], "task.response");
    let quiet = asap(&["listen", &ws, "--duration", "0.3"], None);
    assert!(quiet.status.success());
    assert!(quiet.stdout.is_empty());
    let nowhere = asap(&["listen", "ws://127.0.0.1:9", "--duration", "1"], None);
    assert_eq!(nowhere.status.code(), Some(4));
}

/// `asap send --stream` prints each envelope `asap serve` streams (the reference
/// example's word-by-word echo), one JSON line each; a payload type nothing streams is
/// the agent's `-32012`, printed as a send's error (exit 5).
#[test]
fn send_stream_prints_each_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, url) = support::asap_serve(&["--storage", "memory"], dir.path());
    let input = r#"{"message": "one two three"}"#;
    let sent = asap(&["send", &url, "--stream", "--input", input], None);
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(sent.status.success(), "{stdout}");
    let chunks: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .map(|envelope| {
            assert_eq!(envelope["payload_type"], "TaskStream");
            envelope["payload"].clone()
        })
        .collect();
    let texts: Vec<&str> = chunks
        .iter()
        .map(|c| c["chunk"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one ", "two ", "three\n"]);
    assert_eq!(chunks[2]["final"], true);
    assert_eq!(chunks[2]["status"], "completed");
    let cancel = [
        "send",
        &url,
        "--stream",
        "--payload-type",
        "task.cancel",
        "--payload",
        r#"{"task_id": "t"}"#,
    ];
    let refused = asap(&cancel, None);
    assert_eq!(refused.status.code(), Some(5));
    let error: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(error["error"]["code"], -32012);
}

/// Start-up refusals name what is wrong: nothing to advertise, and webhooks without the
/// SQLite file their queue lives in.
#[test]
fn serve_refuses_inconsistent_discovery_and_webhook_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let unspecified = asap(
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            data,
            "--mdns",
            "--mdns-address",
            "0.0.0.0",
        ],
        None,
    );
    assert_eq!(unspecified.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unspecified.stderr).contains("--mdns-address"));
    let memory = asap(
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            data,
            "--storage",
            "memory",
            "--webhook",
            "https://hooks.example/asap=s",
        ],
        None,
    );
    assert_eq!(memory.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&memory.stderr).contains("needs durable storage"));
}

#[test]
fn send_trusts_a_private_ca_given_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, url) = support::asap_serve(&["--storage", "memory"], dir.path());
    let backend = url.trim_start_matches("http://").parse().unwrap();
    let pki = tls::Pki::new();
    let port = tls::TlsTerminator::start(&pki, backend).port;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    for url in [
        format!("https://localhost:{port}"),
        format!("wss://localhost:{port}"),
    ] {
        let send = |extra: &[&str]| {
            let mut args = vec![
                "send",
                &url,
                "--skill",
                "echo",
                "--input",
                r#"{"tls": true}"#,
            ];
            args.extend_from_slice(extra);
            asap(&args, None)
        };
        let sent = send(&["--ca-cert", ca.to_str().unwrap()]);
        assert!(
            sent.status.success(),
            "{url}: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
        assert_eq!(reply["payload"]["result"]["echoed"]["tls"], true, "{url}");

        let refused = send(&["--attempts", "1"]);
        assert!(!refused.status.success(), "{url}: no trust without the CA");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("UnknownIssuer"), "{url}: {stderr}");
        // Both transports use the platform's trust store: SSL_CERT_FILE replaces it.
        let platform = Command::new(env!("CARGO_BIN_EXE_asap"))
            .args(["send", &url, "--skill", "echo", "--input", "{}"])
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap();
        assert!(
            platform.status.success(),
            "{url} with SSL_CERT_FILE: {}",
            String::from_utf8_lossy(&platform.stderr)
        );
    }
    let empty = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["send", &url, "--skill", "echo", "--input", "{}"])
        .env("ASAP_CA_CERT", "")
        .output()
        .unwrap();
    assert!(
        empty.status.success(),
        "an empty ASAP_CA_CERT counts as unset: {}",
        String::from_utf8_lossy(&empty.stderr)
    );
    let missing = asap(&["send", &url, "--ca-cert", "no-such.pem"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--ca-cert no-such.pem"));
    std::fs::write(&ca, "not a certificate").unwrap();
    let malformed = asap(&["send", &url, "--ca-cert", ca.to_str().unwrap()], None);
    assert!(!malformed.status.success());
    assert!(
        String::from_utf8_lossy(&malformed.stderr).contains("no CERTIFICATE block"),
        "{}",
        String::from_utf8_lossy(&malformed.stderr)
    );
}
