//! `asap registry` as a user runs it, and registry entries checked with the reference's
//! own models.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

fn asap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn entries_from_manifests_validate_with_the_reference_and_search_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    std::fs::write(
        &manifest,
        r#"{"id": "urn:asap:agent:demo", "name": "Démo Agent", "version": "1.2.0", "description": "Echoes",
            "capabilities": {"asap_version": "0.1", "skills": [{"id": "echo", "description": "Echo"}, {"id": "shout", "description": "Shout"}]},
            "endpoints": {"asap": "https://demo.example/asap"}}"#,
    )
    .unwrap();
    let entry = asap(&[
        "registry",
        "entry",
        "--manifest",
        manifest.to_str().unwrap(),
    ]);
    assert!(
        entry.status.success(),
        "{}",
        String::from_utf8_lossy(&entry.stderr)
    );
    let ours = String::from_utf8(entry.stdout).unwrap();
    let mut check = asap_test_support::process::reference_script("registry_check.py")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(ours.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2);
    let theirs: Value = serde_json::from_str(&lines[0]).unwrap();
    assert!(theirs.get("error").is_none(), "{theirs}");
    assert_eq!(
        theirs,
        serde_json::from_str::<Value>(&ours).unwrap(),
        "the reference reads it as written"
    );

    // The reference's registry document, read and searched by us.
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, &lines[1]).unwrap();
    let registry = registry.to_str().unwrap();
    let found = asap(&[
        "registry",
        "search",
        "--skill",
        "shout",
        "--registry",
        registry,
    ]);
    assert!(found.status.success());
    let hit: Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(hit["id"], "urn:asap:agent:demo");
    assert_eq!(
        hit["endpoints"]["manifest"],
        "https://demo.example/.well-known/asap/manifest.json"
    );
    let by_id = asap(&[
        "registry",
        "search",
        "--id",
        "urn:asap:agent:demo",
        "--registry",
        registry,
    ]);
    assert!(by_id.status.success());
    assert_eq!(
        asap(&[
            "registry",
            "search",
            "--skill",
            "nothing",
            "--registry",
            registry
        ])
        .status
        .code(),
        Some(1)
    );
    assert_eq!(
        asap(&[
            "registry",
            "search",
            "--skill",
            "x",
            "--registry",
            "/no/such/file"
        ])
        .status
        .code(),
        Some(4)
    );
}
