//! Signed manifests and the 2.x manifest shape against the ASAP 2.x reference
//! (asap-protocol 2.5.10, `interop/ref25_signed.py` and its own `asap` CLI):
//!
//! - a manifest signed by the reference is verified by `asap manifest verify` and by
//!   our client (`asap discover --public-key`), a tampered one refused by both;
//! - a manifest signed by `asap manifest sign` (key from `asap keys generate`) is
//!   verified by the reference's `verify_manifest`, a tampered one refused;
//! - the reference client discovers `asap serve`'s 2.x shape, and its signed document
//!   with the key pinned for the manifest URL.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use asap_test_support::process::{Guard, reference25_python, reference25_script, spawn_announced};
use serde_json::{Value, json};
use support::asap_serve;

/// A 2.x manifest with every kind of 2.x member (`throughput` an integer, a float to
/// the reference).
fn manifest_2x() -> Value {
    json!({
        "id": "urn:asap:agent:edge", "name": "Edge", "version": "1.0.0", "description": "d",
        "capabilities": {
            "streaming": true,
            "skills": [{"id": "echo", "description": "Echo back the input"}],
            "hardware": {"class": "sbc", "model": "rpi5", "io": ["gpio", "i2c"]},
            "inference": {"modes": ["local_cpu"], "local_models": [
                {"id": "llama", "quantization": "Q4_K_M", "throughput_tokens_per_second": 12}
            ]}
        },
        "endpoints": {"asap": "https://edge.example/asap"},
        "sla": {"availability": "99.5%", "max_latency_p95_ms": 500},
        "verification": {"status": "pending"}
    })
}

fn run(mut command: Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .expect("the command runs")
}

fn asap(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asap"));
    command.args(args);
    run(command)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn succeeds(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// The reference's own `asap` command, beside its interpreter.
fn reference_cli(args: &[&str]) -> Output {
    let mut command = Command::new(reference25_python().with_file_name("asap"));
    command.args(args);
    run(command)
}

fn ref_signed(args: &[&str]) -> Output {
    let mut command = reference25_script("ref25_signed.py");
    command.args(args);
    run(command)
}

fn write(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path
}

/// A new key from `asap keys generate`: its file and its base64 public key.
fn generate_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = succeeds(asap(&["keys", "generate", "--out", path.to_str().unwrap()]));
    let public = out
        .lines()
        .find_map(|line| line.strip_prefix("Public key: "))
        .expect("the public key is printed")
        .to_owned();
    (path, public)
}

fn tampered(dir: &Path, signed: &Path) -> PathBuf {
    let mut document: Value = serde_json::from_slice(&std::fs::read(signed).unwrap()).unwrap();
    document["manifest"]["name"] = json!("Evil Edge");
    write(dir, "tampered.json", &document)
}

/// Serves `document` at the manifest path from the reference's Python.
fn serve_document(document: &Path) -> (Guard, String) {
    let mut command = reference25_script("ref25_signed.py");
    command
        .args(["serve", document.to_str().unwrap()])
        .stderr(Stdio::null());
    spawn_announced(command, "ref25_signed.py serve")
}

#[test]
fn a_manifest_signed_by_the_reference_is_verified_by_asap() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = generate_key(dir.path(), "agent.pem");
    let manifest = write(dir.path(), "manifest.json", &manifest_2x());
    let signed = dir.path().join("signed.json");
    let key_arg = key.to_str().unwrap();
    succeeds(reference_cli(&[
        "manifest",
        "sign",
        "--key",
        key_arg,
        manifest.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let signed_arg = signed.to_str().unwrap();
    let out = succeeds(asap(&["manifest", "verify", signed_arg]));
    assert!(
        out.starts_with("Signature valid (trust: self-signed)"),
        "{out}"
    );
    succeeds(asap(&[
        "manifest",
        "verify",
        signed_arg,
        "--public-key",
        key_arg,
    ]));
    succeeds(asap(&["manifest", "verify", signed_arg, "-k", &public]));

    let bad = tampered(dir.path(), &signed);
    let refused = asap(&["manifest", "verify", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused));
    assert!(
        text(&refused).contains("Verification failed"),
        "{}",
        text(&refused)
    );

    // Our client at discovery, the document served at the manifest URL.
    let (_server, url) = serve_document(&signed);
    let found: Value = serde_json::from_str(&succeeds(asap(&[
        "discover",
        &url,
        "--public-key",
        &public,
    ])))
    .unwrap();
    assert_eq!(found["id"], "urn:asap:agent:edge");
    assert_eq!(found["capabilities"]["hardware"]["class"], "sbc");
    let (_other, other_public) = generate_key(dir.path(), "other.pem");
    let wrong = asap(&["discover", &url, "--public-key", &other_public]);
    assert_eq!(wrong.status.code(), Some(5), "{}", text(&wrong));
    assert!(text(&wrong).contains("did not verify"), "{}", text(&wrong));
    let (_tampered_server, tampered_url) = serve_document(&bad);
    let refused = asap(&["discover", &tampered_url, "--public-key", &public]);
    assert_eq!(refused.status.code(), Some(5), "{}", text(&refused));
}

#[test]
fn a_manifest_signed_by_asap_is_verified_by_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = generate_key(dir.path(), "agent.pem");
    let manifest = write(dir.path(), "manifest.json", &manifest_2x());
    let signed = dir.path().join("signed.json");
    succeeds(asap(&[
        "manifest",
        "sign",
        "--key",
        key.to_str().unwrap(),
        manifest.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let signed_arg = signed.to_str().unwrap();
    assert_eq!(succeeds(ref_signed(&["verify", signed_arg])).trim(), "ok");
    assert_eq!(
        succeeds(ref_signed(&["verify", signed_arg, &public])).trim(),
        "ok"
    );
    let out = succeeds(reference_cli(&["manifest", "verify", signed_arg]));
    assert!(
        out.contains("Signature valid (trust: self-signed)"),
        "{out}"
    );

    let bad = tampered(dir.path(), &signed);
    let refused = ref_signed(&["verify", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Signature verification failed"),
        "{}",
        text(&refused)
    );
}

#[test]
fn the_reference_client_discovers_the_two_x_shape_and_the_signed_document_of_asap_serve() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(dir.path(), "manifest.json", &manifest_2x());
    let (_plain, plain_url) = asap_serve(
        &[
            "--manifest-dialect",
            "2",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
        &dir.path().join("plain"),
    );
    let found: Value =
        serde_json::from_str(&succeeds(ref_signed(&["discover", &plain_url]))).unwrap();
    assert_eq!(found["id"], "urn:asap:agent:edge");
    assert_eq!(found["supported_versions"], json!(["2.1", "2.2"]));
    assert_eq!(found["sla"]["availability"], "99.5%");
    assert_eq!(found["verification"]["status"], "pending");
    assert_eq!(
        found["capabilities"]["inference"]["local_models"][0]["throughput_tokens_per_second"],
        json!(12.0)
    );

    let (key, public) = generate_key(dir.path(), "agent.pem");
    let (_signed, signed_url) = asap_serve(
        &[
            "--manifest-dialect",
            "2",
            "--manifest",
            manifest.to_str().unwrap(),
            "--manifest-signing-key",
            key.to_str().unwrap(),
        ],
        &dir.path().join("signed"),
    );
    let found: Value =
        serde_json::from_str(&succeeds(ref_signed(&["discover", &signed_url, &public]))).unwrap();
    assert_eq!(found["id"], "urn:asap:agent:edge");
    assert_eq!(found["supported_versions"], json!(["2.1", "2.2"]));
    let (_other, other_public) = generate_key(dir.path(), "other.pem");
    let refused = ref_signed(&["discover", &signed_url, &other_public]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("SignatureVerificationError"),
        "{}",
        text(&refused)
    );
}

#[test]
fn ca_signatures_and_info_match_the_reference_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_public) = generate_key(dir.path(), "ca.pem");
    let manifest = write(dir.path(), "manifest.json", &manifest_2x());
    let signed = dir.path().join("signed.json");
    succeeds(asap(&[
        "manifest",
        "sign",
        "--ca",
        "-k",
        ca.to_str().unwrap(),
        manifest.to_str().unwrap(),
        "-o",
        signed.to_str().unwrap(),
    ]));
    let signed_arg = signed.to_str().unwrap();
    let ours = succeeds(asap(&["manifest", "info", signed_arg]));
    assert_eq!(
        ours,
        "Manifest ID: urn:asap:agent:edge\nName: Edge\nTrust level: verified\nASAP version: 0.1\n"
    );
    assert_eq!(
        ours,
        succeeds(reference_cli(&["manifest", "info", signed_arg]))
    );
    let out = succeeds(asap(&[
        "manifest", "verify", signed_arg, "--ca-key", &ca_public,
    ]));
    assert!(
        out.starts_with("Signature valid (trust: verified)"),
        "{out}"
    );
    let (_other, other_public) = generate_key(dir.path(), "other.pem");
    let unknown = asap(&["manifest", "verify", signed_arg, "--ca-key", &other_public]);
    assert_eq!(unknown.status.code(), Some(3), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("not a known CA key"),
        "{}",
        text(&unknown)
    );
}
