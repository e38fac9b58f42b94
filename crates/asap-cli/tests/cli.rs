//! The `asap` binary, run as a user runs it.

use std::io::Write;
use std::process::{Command, Output, Stdio};

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
fn validate_reports_ok_and_errors_per_file_and_exits_1() {
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
    assert_eq!(out.status.code(), Some(1), "{stdout}");
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
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("task_id: Input should be a valid string [type=string_type]")
    );
    let out = asap(&["validate", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("<stdin>: not valid JSON")
    );
    let out = asap(&["validate", "--model", "nothing", "-"], Some("{}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("unknown model")
    );
    let out = asap(&["validate", "/nonexistent/file.json"], None);
    assert_eq!(out.status.code(), Some(1));
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
    assert!(
        line.starts_with(
            "asap: From File (urn:asap:agent:from-file) listening on http://127.0.0.1:"
        ),
        "{line}"
    );
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();

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
    assert_eq!(failed.status.code(), Some(1));
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
    let (provider, token) = local_provider();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_with_oauth2(&provider, dir.path());

    let unauthenticated = asap(
        &[
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
        ],
        None,
    );
    assert_eq!(unauthenticated.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unauthenticated.stdout).contains("Authentication required"));
    let sent = asap(
        &[
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
            "--token",
            &token,
        ],
        None,
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    // The manifest stays public.
    assert!(asap(&["discover", &url], None).status.success());
    let _ = child.kill();
    let _ = child.wait();
}

/// `asap serve` protected by the provider's keys; returns the process and its URL.
fn serve_with_oauth2(provider: &str, data: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let jwks_uri = format!("{provider}/jwks");
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args([
            "serve",
            "--port",
            "0",
            "--storage",
            "memory",
            "--oauth2-jwks-uri",
            &jwks_uri,
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    (child, url)
}

/// A local provider answering `POST /token` with a signed JWT and anything else with
/// the JWKS; returns its base URL and the token it hands out.
fn local_provider() -> (String, String) {
    use std::io::{Read as _, Write as _};
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../asap-protocol/tests/fixtures"
    );
    let jwks = std::fs::read(format!("{fixtures}/jwks.json")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"sub": "cli", "scope": "asap:execute", "exp": now + 600});
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(
        &std::fs::read(format!("{fixtures}/test-rsa-1.pem")).unwrap(),
    )
    .unwrap();
    let header = jsonwebtoken::Header {
        kid: Some("test-rsa-1".into()),
        ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256)
    };
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let token_body =
        serde_json::json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600})
            .to_string()
            .into_bytes();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let n = stream.read(&mut buf).unwrap_or(0);
            let body = if buf[..n].starts_with(b"POST /token") {
                &token_body
            } else {
                &jwks
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    (base, token)
}

#[test]
fn token_command_and_client_credentials_against_an_oauth2_agent() {
    let (provider, token) = local_provider();
    let token_url = format!("{provider}/token");
    let printed = asap(
        &[
            "token",
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--scope",
            "asap:execute",
        ],
        None,
    );
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&printed.stdout).trim(), token);
    let decoded = asap(
        &[
            "token",
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--client-secret",
            "s",
            "--claims",
        ],
        None,
    );
    let claims: serde_json::Value = serde_json::from_slice(&decoded.stdout).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["scope"].as_str()),
        (Some("cli"), Some("asap:execute"))
    );
    assert_eq!(
        asap(&["token", "--token-url", &token_url], None)
            .status
            .code(),
        Some(2),
        "client id and secret are required"
    );

    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = serve_with_oauth2(&provider, dir.path());
    let flow = asap(
        &[
            "send",
            &url,
            "--skill",
            "echo",
            "--recipient",
            "urn:asap:agent:asap-rs",
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--client-secret",
            "s",
        ],
        None,
    );
    assert!(
        flow.status.success(),
        "{}",
        String::from_utf8_lossy(&flow.stdout)
    );
    let _ = child.kill();
    let _ = child.wait();
}
