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
