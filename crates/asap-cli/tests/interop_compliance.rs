//! The ASAP 2.x reference's own harness, `asap compliance-check` (asap-protocol 2.5.10
//! from PyPI, in the virtualenv `scripts/ref-venv.sh 2.5.10` creates), against
//! `asap serve` as it starts by default.
//!
//! Every check passes except the two of the 2.2 identity system (agent registration and
//! the capability list), which this implementation does not have. The harness sends its
//! batch without `ASAP-Version`, which we answer as 1.1 (a request without the header
//! gets 1.1 bytes): its batch check passes with `--asap-version 2.2` and fails without.

mod support;

use std::process::Command;

use asap_test_support::process::reference25_python;
use serde_json::Value;
use support::asap_serve;

/// Runs the harness against `url` with `extra` arguments; its checks in its order, each
/// `(name, category, passed, message)`.
fn compliance_check(url: &str, extra: &[&str]) -> Vec<(String, String, bool, String)> {
    let python = reference25_python();
    let harness = python.with_file_name("asap");
    let out = Command::new(harness)
        .args(["compliance-check", "--url", url, "--output", "json"])
        .args(extra)
        .output()
        .expect("the harness runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Its HTTP client logs each request on stdout before the report.
    let start = stdout
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| stdout.starts_with('{').then_some(0))
        .unwrap_or_else(|| {
            panic!(
                "no JSON report from the harness:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let report: Value = serde_json::from_str(&stdout[start..]).expect("a JSON report");
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| {
            (
                check["name"].as_str().unwrap().to_owned(),
                check["category"].as_str().unwrap().to_owned(),
                check["passed"].as_bool().unwrap(),
                check["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn failed(checks: &[(String, String, bool, String)]) -> Vec<&str> {
    checks
        .iter()
        .filter(|(_, _, passed, _)| !passed)
        .map(|(name, ..)| name.as_str())
        .collect()
}

#[test]
fn the_reference_harness_passes_everything_but_the_identity_system() {
    let data = tempfile::tempdir().unwrap();
    let (_server, url) = asap_serve(&["--rate-limit", "off"], data.path());

    let checks = compliance_check(&url, &["--asap-version", "2.2"]);
    for (name, category, passed, message) in &checks {
        eprintln!("{category}.{name}: {passed} — {message}");
    }
    assert_eq!(checks.len(), 11, "{checks:?}");
    assert_eq!(
        failed(&checks),
        ["identity_register_endpoint", "identity_capability_list"],
        "{checks:?}"
    );

    // Without a version header the batch is answered as 1.1 (refused as an array).
    let headerless = compliance_check(&url, &[]);
    assert_eq!(
        failed(&headerless),
        [
            "identity_register_endpoint",
            "identity_capability_list",
            "batch_array_response"
        ],
        "{headerless:?}"
    );
}
