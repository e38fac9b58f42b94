//! `/asap/metrics` across implementations: the reference echo agents (asap-protocol
//! 1.1.0 and 2.5.10) and `asap serve` get the same requests (two echoes, one payload
//! type without a handler, one parse error); each exposition is parsed, and every
//! family of each reference must exist in ours with the same type, label names and help
//! text.
//! The comparison is printed family by family.

mod support;

use std::collections::BTreeMap;

use asap_test_support::exposition::{Family, families, helps};
use asap_test_support::process::{reference_echo_agent, reference25_echo_agent};
use serde_json::{Value, json};
use support::asap_serve;

fn post(base: &str, body: Vec<u8>) {
    let response = reqwest::blocking::Client::new()
        .post(format!("{base}/asap"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{base}");
}

fn request(payload_type: &str, payload: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"jsonrpc": "2.0", "method": "asap.send", "id": "m-1",
        "params": {"envelope": {
            "asap_version": "0.1", "sender": "urn:asap:agent:interop",
            "recipient": "urn:asap:agent:echo", "payload_type": payload_type, "payload": payload,
        }}}),
    )
    .unwrap()
}

/// What one exposition says: its families and their help texts.
struct Exposition {
    families: BTreeMap<String, Family>,
    helps: BTreeMap<String, String>,
}

/// The same requests to `base`, then its exposition.
fn exercised(base: &str) -> Exposition {
    let echo = json!({"conversation_id": "c1", "skill_id": "echo", "input": {"n": 1}});
    post(base, request("task.request", echo.clone()));
    post(base, request("task.request", echo));
    post(base, request("bogus.xyz", json!({})));
    post(base, b"{not json".to_vec());
    let text = reqwest::blocking::get(format!("{base}/asap/metrics"))
        .unwrap()
        .text()
        .unwrap();
    Exposition {
        families: families(&text),
        helps: helps(&text),
    }
}

/// Every family of `reference` exists in `ours` with its type and, where the
/// reference's series carry labels, the same label names, and with its help text;
/// prints the comparison.
fn compare(version: &str, reference: &Exposition, ours: &Exposition) {
    let (reference_helps, ours_helps) = (&reference.helps, &ours.helps);
    let (reference, ours) = (&reference.families, &ours.families);
    assert_eq!(reference.len(), 20, "{version}: {reference:?}");
    let mut mismatches = Vec::new();
    for (name, theirs) in reference {
        let found = ours.get(name);
        let same = found.is_some_and(|mine| {
            mine.kind == theirs.kind && (theirs.labels.is_empty() || mine.labels == theirs.labels)
        }) && ours_helps.get(name) == reference_helps.get(name);
        println!(
            "{version} {name}: {} {:?} | ours {}",
            theirs.kind,
            theirs.labels,
            found.map_or("missing".to_owned(), |f| format!(
                "{} {:?}",
                f.kind, f.labels
            )),
        );
        if !same {
            mismatches.push(name.clone());
        }
    }
    assert!(mismatches.is_empty(), "{version}: differ: {mismatches:?}");
}

#[test]
fn every_reference_family_is_served_with_its_type_and_labels() {
    let data = tempfile::tempdir().unwrap();
    let (_ours, url) = asap_serve(&["--rate-limit", "off"], data.path());
    let ours = exercised(&url);
    let (_ref11, url11) = reference_echo_agent();
    compare("1.1.0", &exercised(&url11), &ours);
    let (_ref25, url25) = reference25_echo_agent();
    compare("2.5.10", &exercised(&url25), &ours);
}
