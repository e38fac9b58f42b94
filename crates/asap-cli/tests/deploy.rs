//! `asap` as it is deployed: configured from the environment alone, behind a reverse
//! proxy, with its own TLS, logging for operators, and the documents generated from
//! its definitions (completions, man page, docs/configuration.md).

use asap_test_support::tls;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use asap_test_support::process::Guard;

fn asap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("asap runs")
}

/// Starts `asap` with `args` and `env` only (no inherited `ASAP_*`), and returns it
/// with its start line once it listens.
fn start(args: &[&str], env: &[(&str, &str)]) -> (Guard, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asap"));
    for (name, _) in std::env::vars() {
        if name.starts_with("ASAP_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    assert!(line.contains("listening on"), "asap said {line:?}: {}", {
        let mut e = String::new();
        let _ = stderr.read_to_string(&mut e);
        e
    });
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (Guard(child), line)
}

fn listening_url(line: &str) -> String {
    line.trim().rsplit(' ').next().unwrap().to_owned()
}

fn post(url: &str, headers: &[(&str, &str)]) -> u16 {
    let client = reqwest::blocking::Client::new();
    let mut request = client
        .post(format!("{url}/asap"))
        .header("content-type", "application/json")
        .body("{}");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().unwrap().status().as_u16()
}

/// A container runs `asap serve` with no command line: every option from `ASAP_*`,
/// booleans as 1/yes/on/true, `ASAP_RATE_LIMIT=off`, the public URL in the manifest.
#[test]
fn serve_is_configured_from_the_environment_alone() {
    let data = tempfile::tempdir().unwrap();
    let (_agent, line) = start(
        &["serve"],
        &[
            ("ASAP_PORT", "0"),
            ("ASAP_DATA_DIR", data.path().to_str().unwrap()),
            ("ASAP_AGENT_NAME", "Env Agent"),
            ("ASAP_AGENT_ID", "urn:asap:agent:from-env"),
            ("ASAP_PUBLIC_URL", "https://agents.example/env/"),
            ("ASAP_RATE_LIMIT", "off"),
            ("ASAP_AUTH_STRICT", "1"),
            ("ASAP_REQUIRE_NONCE", "yes"),
            ("ASAP_COMPRESS_RESPONSES", "on"),
            ("ASAP_WS_RECEIVED_ACKS_ONLY", "true"),
            ("ASAP_ECHO_ONLY", "0"),
        ],
    );
    assert!(
        line.starts_with("asap: Env Agent (urn:asap:agent:from-env) manifest https://agents.example/env/.well-known/asap/manifest.json, state sqlite "),
        "{line}"
    );
    let url = listening_url(&line);
    let manifest: serde_json::Value =
        reqwest::blocking::get(format!("{url}/.well-known/asap/manifest.json"))
            .unwrap()
            .json()
            .unwrap();
    assert_eq!(
        manifest["endpoints"]["asap"],
        "https://agents.example/env/asap"
    );
    // Rate limiting off: far beyond the default 10/second without a 429.
    for _ in 0..25 {
        assert_ne!(post(&url, &[]), 429);
    }
    // ASAP_REQUIRE_NONCE=yes: a replayed nonce is refused.
    let envelope = data.path().join("envelope.json");
    std::fs::write(
        &envelope,
        r#"{"asap_version":"0.1","sender":"urn:asap:agent:a","recipient":"urn:asap:agent:from-env","payload_type":"task.request","payload":{"conversation_id":"c","skill_id":"echo","input":{}},"extensions":{"nonce":"n-1"}}"#,
    )
    .unwrap();
    let send = || {
        asap(&[
            "send",
            &url,
            "--insecure-http",
            "--envelope",
            envelope.to_str().unwrap(),
        ])
    };
    assert_eq!(send().status.code(), Some(0));
    let replay = send();
    assert_eq!(
        replay.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&replay.stdout)
    );
}

/// A public URL that is not http(s) is refused at start with exit 3.
#[test]
fn a_public_url_must_be_http_or_https() {
    let out = asap(&[
        "serve",
        "--port",
        "0",
        "--storage",
        "memory",
        "--public-url",
        "ftp://agents.example",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--public-url must be an http"));
}

/// A boolean variable that is not a boolean word is a usage error naming the option.
#[test]
fn a_boolean_variable_takes_only_boolean_words() {
    // A command line that parses (the variable included) and then fails on a missing
    // file with 3; a variable clap refuses is a usage error, 2.
    let run = |word: &str| {
        Command::new(env!("CARGO_BIN_EXE_asap"))
            .args([
                "serve",
                "--port",
                "0",
                "--tls-cert",
                "/nonexistent",
                "--tls-key",
                "/nonexistent",
            ])
            .env("ASAP_AUTH_STRICT", word)
            .output()
            .unwrap()
    };
    for word in ["1", "0", "true", "FALSE", "yes", "no", "on", "off"] {
        assert_eq!(run(word).status.code(), Some(3), "{word}");
    }
    let out = run("maybe");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--oauth2-strict"));
}

/// Behind a trusted proxy each forwarded client has its own rate limit; from a peer
/// that is not trusted, the forwarding headers are ignored, so a client cannot escape
/// its limit by inventing addresses.
#[test]
fn forwarded_clients_are_believed_only_from_trusted_proxies() {
    let data = tempfile::tempdir().unwrap();
    let base = [
        "serve",
        "--port",
        "0",
        "--storage",
        "memory",
        "--rate-limit",
        "2/minute",
    ];
    let dir = data.path().to_str().unwrap();
    let mut trusted_args = base.to_vec();
    trusted_args.extend(["--data-dir", dir, "--trusted-proxy", "10.0.0.0/8,127.0.0.1"]);
    let (_trusted, line) = start(&trusted_args, &[]);
    let url = listening_url(&line);
    let from = |client: &str| post(&url, &[("x-forwarded-for", client)]);
    assert_ne!(from("203.0.113.1"), 429);
    assert_ne!(from("203.0.113.1"), 429);
    assert_eq!(from("203.0.113.1"), 429, "the third request of one client");
    assert_ne!(from("203.0.113.2"), 429, "another client has its own limit");
    // A spoofed entry prepended by the client: the nearest untrusted address counts;
    // a client's own Forwarded header is not read (the proxy maintains X-Forwarded-For
    // and would pass Forwarded through as the client wrote it).
    let spoofed = |xff: &str, forwarded: &str| {
        post(&url, &[("x-forwarded-for", xff), ("forwarded", forwarded)])
    };
    assert_ne!(spoofed("198.51.100.9", "for=1.1.1.1"), 429);
    assert_ne!(
        spoofed("192.0.2.77, 198.51.100.9, 10.1.2.3", "for=1.1.1.2"),
        429
    );
    assert_eq!(
        spoofed("198.51.100.9", "for=1.1.1.3"),
        429,
        "one client, whatever Forwarded says"
    );

    // The same headers from an untrusted peer: one limit for the peer, whatever it says.
    let mut untrusted_args = base.to_vec();
    untrusted_args.extend(["--data-dir", dir, "--trusted-proxy", "10.0.0.0/8"]);
    let (_untrusted, line) = start(&untrusted_args, &[]);
    let url = listening_url(&line);
    let from = |client: &str| post(&url, &[("x-forwarded-for", client)]);
    assert_ne!(from("203.0.113.1"), 429);
    assert_ne!(from("203.0.113.2"), 429);
    assert_eq!(
        from("203.0.113.3"),
        429,
        "spoofed addresses share the peer's limit"
    );
    let bad = asap(&["serve", "--port", "0", "--trusted-proxy", "10.0.0.0/33"]);
    assert_eq!(bad.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("10.0.0.0/33"));
}

/// The PKI's server certificate, key and CA root as files in `dir`: their paths.
fn pem_files(pki: &tls::Pki, dir: &Path) -> (String, String, String) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    (
        write("cert.pem", &pki.leaf_pem),
        write("key.pem", &pki.key_pem),
        write("ca.pem", &pki.ca_pem),
    )
}

/// `--tls-cert`/`--tls-key`: the agent itself serves HTTPS and WSS.
#[test]
fn serve_terminates_tls_itself() {
    let pki = tls::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca) = pem_files(&pki, dir.path());
    let data = dir.path().to_str().unwrap();
    let (_agent, line) = start(
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            data,
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &[],
    );
    let url = listening_url(&line);
    assert!(url.starts_with("https://127.0.0.1:"), "{line}");
    let url = url.replace("127.0.0.1", "localhost");
    let health = asap(&["health", &url, "--ca-cert", &ca]);
    assert_eq!(
        health.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    let ws = url.replace("https://", "wss://");
    for target in [&url, &ws] {
        let sent = asap(&[
            "send",
            target,
            "--skill",
            "echo",
            "--input",
            r#"{"tls": true}"#,
            "--ca-cert",
            &ca,
        ]);
        assert_eq!(
            sent.status.code(),
            Some(0),
            "{target}: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let reply: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
        assert_eq!(reply["payload"]["result"]["echoed"]["tls"], true);
    }
    // Plain HTTP to the TLS port is not served: no answer, exit 4.
    let plain = url.replace("https://localhost", "http://127.0.0.1");
    assert_eq!(
        asap(&["health", &plain, "--attempts", "1"]).status.code(),
        Some(4)
    );

    // A key that is not PEM, or a missing file: a clear error, exit 3.
    let bad_key = dir.path().join("bad.pem");
    std::fs::write(&bad_key, "not a key").unwrap();
    let bad_key = bad_key.to_str().unwrap();
    let refused = asap(&[
        "serve",
        "--port",
        "0",
        "--data-dir",
        data,
        "--tls-cert",
        &cert,
        "--tls-key",
        bad_key,
    ]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("TLS private key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let only_cert = asap(&["serve", "--tls-cert", &cert]);
    assert_eq!(
        only_cert.status.code(),
        Some(2),
        "--tls-cert needs --tls-key"
    );
}

/// Secrets come from files, so they appear in neither `ps` nor the environment.
#[test]
fn secrets_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        "# token=agent\ns3cret-from-file=urn:asap:agent:client\n",
    )
    .unwrap();
    let data = dir.path().to_str().unwrap();
    let (_agent, line) = start(
        &["serve", "--port", "0", "--data-dir", data],
        &[("ASAP_BEARER_TOKENS_FILE", tokens.to_str().unwrap())],
    );
    let url = listening_url(&line);
    let send = |token: &str| {
        asap(&[
            "send",
            &url,
            "--skill",
            "echo",
            "--sender",
            "urn:asap:agent:client",
            "--token",
            token,
        ])
    };
    assert_eq!(send("s3cret-from-file").status.code(), Some(0));
    assert_eq!(send("wrong").status.code(), Some(5));

    // asap webhook verify --secret-file: the file's trailing newline is not part of it.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "shh\n").unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, "{}").unwrap();
    let signature = format!("sha256={}", hmac_sha256(b"shh", b"{}"));
    let verify = |sig: &str| {
        asap(&[
            "webhook",
            "verify",
            "--secret-file",
            secret.to_str().unwrap(),
            "--signature",
            sig,
            body.to_str().unwrap(),
        ])
    };
    assert_eq!(verify(&signature).status.code(), Some(0));
    assert_eq!(verify("sha256=00").status.code(), Some(3));
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Operators' logs: JSON lines with --log-format json (the start event with its
/// fields), and no colour codes when standard error is not a terminal.
#[test]
fn logs_are_json_or_plain_text_without_colours() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    for (format, json) in [("json", true), ("text", false)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
            .args([
                "--log-format",
                format,
                "--log-level",
                "info",
                "serve",
                "--port",
                "0",
                "--storage",
                "memory",
                "--data-dir",
                dir,
            ])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut first = String::new();
        err.read_line(&mut first).unwrap();
        let guard = Guard(child);
        assert!(!first.contains('\u{1b}'), "no ANSI codes: {first:?}");
        if json {
            let event: serde_json::Value = serde_json::from_str(&first).unwrap();
            assert_eq!(event["level"], "INFO");
            assert_eq!(event["fields"]["message"], "serving");
            assert!(
                event["fields"]["listening"]
                    .as_str()
                    .unwrap()
                    .starts_with("http://127.0.0.1:")
            );
            assert_eq!(event["fields"]["state"], "memory");
        } else {
            assert!(
                first.contains("INFO") && first.contains("serving"),
                "{first}"
            );
        }
        drop(guard);
    }
    let bad = asap(&["--log-level", "loud", "validate", "-"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// `asap validate ... | head -1`: the closed pipe ends the command quietly.
#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("doc.json");
    std::fs::write(&file, "{}").unwrap();
    let files: Vec<String> = (0..5_000)
        .map(|_| file.to_str().unwrap().to_owned())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["validate", "--model", "Manifest"])
        .args(&files)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("validation error"), "{line}");
    drop(out);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    assert_eq!(output.status.code(), Some(141));
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = asap(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        for word in ["serve", "discover", "public-url"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert_eq!(asap(&["completions", "tcsh"]).status.code(), Some(2));
    let page = String::from_utf8(asap(&["man"]).stdout).unwrap();
    assert!(
        page.starts_with(".ie \\n(.g .ds Aq") || page.contains(".TH asap"),
        "{page:.200}"
    );
    assert!(page.contains("completions"));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        asap(&["man", "--out", dir.path().to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let serve = std::fs::read_to_string(dir.path().join("asap-serve.1")).unwrap();
    assert!(serve.contains("trusted\\-proxy"), "{serve:.300}");
}

/// docs/configuration.md is what `asap reference` prints: every flag, variable and
/// default, so the document cannot drift. `ASAP_UPDATE_DOCS=1` rewrites it.
#[test]
fn the_configuration_reference_matches_the_command() {
    let generated = String::from_utf8(asap(&["reference"]).stdout).unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    if std::env::var_os("ASAP_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let documented = std::fs::read_to_string(&path).unwrap();
    assert!(
        documented == generated,
        "docs/configuration.md is out of date: run ASAP_UPDATE_DOCS=1 cargo nextest run -p asap-cli --test deploy"
    );
    for needle in [
        "`--trusted-proxy CIDR`",
        "`ASAP_TLS_CERT`",
        "| 4 |",
        "`ASAP_LOG_FORMAT`",
    ] {
        assert!(documented.contains(needle), "{needle}");
    }
}

/// A system without CA certificates (a bare container; here `SSL_CERT_FILE` and
/// `SSL_CERT_DIR` naming empty ones): the agent starts and plain HTTP works; HTTPS fails
/// naming the unknown issuer unless `--ca-cert` gives the root. It used to panic at
/// start (building the webhook client) and every client refused to build.
#[test]
fn a_system_without_ca_certificates_still_works_over_http() {
    let pki = tls::Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let empty_file = dir.path().join("empty.pem");
    std::fs::write(&empty_file, "").unwrap();
    let empty_dir = dir.path().join("certs");
    std::fs::create_dir(&empty_dir).unwrap();
    let no_roots = [
        ("SSL_CERT_FILE", empty_file.to_str().unwrap()),
        ("SSL_CERT_DIR", empty_dir.to_str().unwrap()),
    ];
    let data = dir.path().to_str().unwrap();
    let (_plain, line) = start(&["serve", "--port", "0", "--data-dir", data], &no_roots);
    let url = listening_url(&line);
    let with_no_roots = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_asap"))
            .args(args)
            .envs(no_roots)
            .output()
            .unwrap()
    };
    let health = with_no_roots(&["health", &url]);
    assert_eq!(
        health.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );

    let (cert, key, ca) = pem_files(&pki, dir.path());
    let tls_data = dir.path().join("tls");
    let (_tls, line) = start(
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            tls_data.to_str().unwrap(),
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ],
        &no_roots,
    );
    let https = listening_url(&line).replace("127.0.0.1", "localhost");
    for target in [https.clone(), https.replace("https://", "wss://")] {
        let refused = with_no_roots(&["send", &target, "--skill", "echo", "--attempts", "1"]);
        assert_eq!(refused.status.code(), Some(4), "{target}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("UnknownIssuer"),
            "{target}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
        let trusted = with_no_roots(&["send", &target, "--skill", "echo", "--ca-cert", &ca]);
        assert_eq!(
            trusted.status.code(),
            Some(0),
            "{target}: {}",
            String::from_utf8_lossy(&trusted.stderr)
        );
    }
}

#[test]
fn replicas_share_their_replay_guard_through_redis() {
    let redis = asap_test_support::redis::RedisServer::start();
    let data = tempfile::tempdir().unwrap();
    let env = [
        ("ASAP_PORT", "0"),
        ("ASAP_STORAGE_BACKEND", "memory"),
        ("ASAP_REQUIRE_NONCE", "yes"),
        ("ASAP_REDIS_URL", &redis.url()),
    ];
    let (_first, first_line) = start(&["serve"], &env);
    let (_second, second_line) = start(&["serve"], &env);
    let envelope = data.path().join("envelope.json");
    std::fs::write(
        &envelope,
        r#"{"asap_version":"0.1","sender":"urn:asap:agent:a","recipient":"urn:asap:agent:asap-rs","payload_type":"task.request","payload":{"conversation_id":"c","skill_id":"echo","input":{}},"extensions":{"nonce":"shared-1"}}"#,
    )
    .unwrap();
    let send = |line: &str| {
        asap(&[
            "send",
            &listening_url(line),
            "--insecure-http",
            "--envelope",
            envelope.to_str().unwrap(),
        ])
    };
    assert_eq!(send(&first_line).status.code(), Some(0));
    // The replay through the other replica is refused.
    assert_eq!(send(&second_line).status.code(), Some(5));
    // A Redis that does not answer stops the start, naming the flag.
    let missing = format!("redis+unix://{}", data.path().join("none.sock").display());
    let refused = asap(&[
        "serve",
        "--port",
        "0",
        "--storage",
        "memory",
        "--redis-url",
        &missing,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--redis-url"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
