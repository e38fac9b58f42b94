//! `asap discover`, `asap send` and `asap health` against the ASAP 2.x reference's echo
//! agent (asap-protocol 2.5.10 from PyPI, in the virtualenv `scripts/ref25-venv.sh`
//! creates), whose manifest is in the 2.x shape (`supported_versions`, `sla`,
//! `verification`, `capabilities.hardware`/`inference`) that the 1.1 model refuses.

use std::process::{Command, Output, Stdio};

use asap_test_support::process::reference25_echo_agent;
use serde_json::{Value, json};

/// Runs `asap ARGS`, asserting success; its standard output as JSON.
fn asap_json(args: &[&str]) -> Value {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("asap runs");
    assert!(
        out.status.success(),
        "asap {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("asap prints JSON")
}

#[test]
fn the_cli_discovers_sends_to_and_checks_a_two_x_agent() {
    let (_agent, url) = reference25_echo_agent();

    let manifest = asap_json(&["discover", &url]);
    assert_eq!(manifest["id"], "urn:asap:agent:echo-agent");
    assert_eq!(manifest["supported_versions"], json!(["2.2"]));
    // Printed in the 2.x shape, as the agent serves it: the new members kept as null.
    for member in ["sla", "verification"] {
        assert_eq!(manifest[member], Value::Null, "{member}");
        assert!(manifest.get(member).is_some(), "{member}");
    }
    assert!(manifest["capabilities"].get("hardware").is_some());
    assert_eq!(manifest["capabilities"]["skills"][0]["id"], "echo");

    let input = r#"{"text": "h\u00e9llo", "n": [1, 2]}"#;
    let reply = asap_json(&["send", &url, "--skill", "echo", "--input", input]);
    assert_eq!(reply["payload_type"], "task.response", "{reply}");
    assert_eq!(reply["sender"], "urn:asap:agent:echo-agent");
    assert_eq!(reply["payload"]["status"], "completed");
    assert_eq!(
        reply["payload"]["result"]["echoed"],
        json!({"text": "h\u{e9}llo", "n": [1, 2]}),
        "{reply}"
    );

    let health = asap_json(&["health", &url]);
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["agent_id"], "urn:asap:agent:echo-agent");
}
