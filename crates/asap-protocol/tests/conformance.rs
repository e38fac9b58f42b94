//! Cross-implementation conformance of the wire model against the reference.
//!
//! The reference implementation (asap-protocol 1.1.0 from PyPI, in a Python 3.13
//! virtualenv that `scripts/ref-venv.sh` creates on first use) generates a corpus of
//! documents for every model, valid and invalid, and records what it does with each:
//! the exact bytes of `model_dump_json()` for those it accepts, the error list for
//! those it rejects. Our model must accept exactly what the reference accepts, reject
//! exactly what it rejects (with the same error types, locations and messages), and
//! re-serialize to the same bytes, except for the deliberate differences listed in
//! `CONFORMANCE.md` and in [`deliberate_difference`] below.
//!
//! The second test validates every document the reference accepted against the JSON
//! Schemas this crate exports.

use std::path::{Path, PathBuf};

use asap_test_support::process::{reference_python, reference25_python, workspace};
use std::process::Command;

use asap_protocol::json;
use asap_protocol::model::named::validate_named_in;
use asap_protocol::model::{Dialect, ErrorKind, ValidationError};
use serde_json::Value;

/// Runs the reference's corpus generator into `dir` and returns its cases.
fn reference_corpus(dir: &Path) -> (PathBuf, Vec<Value>) {
    corpus_of(&reference_python(), dir)
}

/// Runs the corpus generator with the reference installed for `python` (1.1.0, or
/// 2.5.10, which adds its new models and cases) into `dir` and returns its cases.
fn corpus_of(python: &Path, dir: &Path) -> (PathBuf, Vec<Value>) {
    let path = dir.join("corpus.jsonl");
    let out = Command::new(python)
        .arg(workspace().join("interop/conformance/gen_corpus.py"))
        .arg(&path)
        .output()
        .expect("the reference python runs");
    assert!(
        out.status.success(),
        "corpus generation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        cases.len() > 500,
        "corpus unexpectedly small: {}",
        cases.len()
    );
    (path, cases)
}

/// What our implementation did with one document.
enum Ours {
    Syntax(String),
    Valid(String),
    Invalid(ValidationError),
}

fn run_ours(model: &str, input: &str, dialect: Dialect) -> Ours {
    match json::parse(input.as_bytes()) {
        Err(e) => Ours::Syntax(e.to_string()),
        Ok(value) => {
            match validate_named_in(model, &value, dialect)
                .unwrap_or_else(|| panic!("unknown model {model}"))
            {
                Ok(dump) => Ours::Valid(dump),
                Err(e) => Ours::Invalid(e),
            }
        }
    }
}

/// The deliberate differences of `CONFORMANCE.md`, recognised per case; `None` when
/// the case must match the reference exactly.
fn deliberate_difference(input: &str, ours: &Ours) -> Option<&'static str> {
    match ours {
        Ours::Syntax(message) => {
            if message.contains("recursion limit") {
                Some("nesting deeper than 128 levels is refused")
            } else if input.contains("NaN") || input.contains("Infinity") {
                Some("NaN and Infinity literals are not JSON and are refused")
            } else if input.to_ascii_lowercase().contains("\\ud8")
                || input.to_ascii_lowercase().contains("\\udc")
                || input.to_ascii_lowercase().contains("\\udf")
            {
                Some("lone UTF-16 surrogates cannot be held in a string and are refused")
            } else {
                None
            }
        }
        Ours::Invalid(error) => error.errors.iter().find_map(|e| match (&e.kind, &e.input) {
            (ErrorKind::IntTooLarge, _) => {
                Some("integers beyond 64 bits are refused in typed integer fields")
            }
            (ErrorKind::ValueError { message }, Value::String(s))
                if message.starts_with("Agent ID") && s.ends_with('\n') =>
            {
                Some(
                    "an agent URN ending in a newline is refused (the spec's note on Python's `$`)",
                )
            }
            _ => None,
        }),
        Ours::Valid(_) => None,
    }
}

/// Replaces the members the reference generated (new ids, the current time) with a
/// placeholder after checking their form, so the rest can be compared byte for byte.
fn mask_generated(dump: &str, generated: &[Value]) -> String {
    let mut value = json::parse(dump.as_bytes()).unwrap();
    for member in generated {
        let member = member.as_str().unwrap();
        let found = value[member].as_str().unwrap_or_default().to_owned();
        match member {
            "id" => assert!(
                found.len() == 26 && ulid::Ulid::from_string(&found).is_ok(),
                "generated id {found:?}"
            ),
            "timestamp" => assert!(
                found.ends_with('Z') && found.len() >= 20,
                "generated timestamp {found:?}"
            ),
            other => panic!("unexpected generated member {other}"),
        }
        value[member] = Value::String("<generated>".into());
    }
    json::to_model_json(&value)
}

fn error_triples(errors: &[Value]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            format!(
                "{} at {} : {}",
                e["type"].as_str().unwrap(),
                e["loc"],
                e["msg"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn model_matches_the_reference_on_its_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cases) = reference_corpus(dir.path());
    compare(&cases, Dialect::V1_1, "conformance-summary.txt");
}

/// The 2.x dialect against asap-protocol 2.5.10 on the same generator's corpus, with
/// the 2.x models and cases it adds (docs/asap-2.md sections 2 to 4).
#[test]
fn two_x_model_matches_the_2_5_10_reference_on_its_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cases) = corpus_of(&reference25_python(), dir.path());
    // 2.5.10 types `Conversation.metadata` (`CommonMetadata`); no ASAP message carries
    // a Conversation, and our 2.x dialect does not model it (CONFORMANCE.md).
    let on_the_wire: Vec<Value> = cases
        .into_iter()
        .filter(|case| case["model"] != "Conversation")
        .collect();
    compare(&on_the_wire, Dialect::V2_2, "conformance-summary-2x.txt");
}

/// Compares our reading of every case in `dialect` with the reference's; writes the
/// summary to `target/{report}` and fails on any mismatch.
fn compare(cases: &[Value], dialect: Dialect, report: &str) {
    let (mut identical, mut rejected_alike, mut deliberate, mut ours_valid) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut differences: Vec<String> = Vec::new();
    for case in cases {
        let id = case["case"].as_str().unwrap();
        let model = case["model"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let reference = &case["ref"];
        let ours = run_ours(model, input, dialect);
        if let Ours::Valid(_) = ours {
            ours_valid += 1;
        }
        let describe = |what: &str| {
            format!(
                "{id} [{model}] {what}\n    input: {}",
                input.chars().take(300).collect::<String>()
            )
        };
        match (reference["ok"].as_bool().unwrap(), &ours) {
            (true, Ours::Valid(dump)) if reference["dump"].is_null() => {
                failures.push(describe(&format!(
                    "accepted, but the reference cannot even write it back ({}); ours: {dump}",
                    reference["dump_error"]
                )));
            }
            (true, Ours::Valid(dump)) => {
                let generated = reference["generated"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                // `model_dump_json()` writes the hardware class `class_`; we write the
                // wire name `class` (CONFORMANCE.md).
                let their_dump = reference["dump"]
                    .as_str()
                    .unwrap()
                    .replace("\"class_\":", "\"class\":");
                let (theirs, mine) = if generated.is_empty() {
                    (their_dump, dump.clone())
                } else {
                    (
                        mask_generated(&their_dump, &generated),
                        mask_generated(dump, &generated),
                    )
                };
                if theirs == mine {
                    identical += 1;
                } else {
                    failures.push(describe(&format!(
                        "bytes differ\n    reference: {theirs}\n    ours:      {mine}"
                    )));
                }
            }
            (false, Ours::Syntax(_)) | (false, Ours::Invalid(_)) => {
                rejected_alike += 1;
                let exception = reference["exception"].as_str().unwrap_or_default();
                if let (Ours::Invalid(error), "ValidationError") = (&ours, exception) {
                    let theirs = error_triples(reference["errors"].as_array().unwrap());
                    let mine = error_triples(error.to_json().as_array().unwrap());
                    if theirs != mine {
                        failures.push(describe(&format!(
                            "errors differ\n    reference: {theirs:#?}\n    ours:      {mine:#?}"
                        )));
                    }
                }
            }
            (true, _) | (false, Ours::Valid(_)) => match deliberate_difference(input, &ours) {
                Some(reason) => {
                    deliberate += 1;
                    differences.push(format!("{id}: {reason}"));
                }
                None => {
                    let mine = match &ours {
                        Ours::Syntax(e) => format!("refused as JSON: {e}"),
                        Ours::Invalid(e) => format!("rejected: {e}"),
                        Ours::Valid(dump) => format!("accepted: {dump}"),
                    };
                    failures.push(describe(&format!(
                        "verdicts differ\n    reference: {reference}\n    ours: {mine}"
                    )));
                }
            },
        }
    }
    let summary = format!(
        "conformance: {} documents compared, {identical} accepted by both with identical bytes, {rejected_alike} rejected by both, {deliberate} deliberate differences, {} mismatches ({ours_valid} accepted by us)",
        cases.len(),
        failures.len()
    );
    println!("{summary}");
    for d in &differences {
        println!("  deliberate: {d}");
    }
    let report = workspace().join("target").join(report);
    std::fs::write(&report, format!("{summary}\n{}\n", differences.join("\n"))).ok();
    assert!(
        failures.is_empty(),
        "{summary}\n\n{}",
        failures.join("\n\n")
    );
}

#[test]
fn exported_schemas_accept_every_document_the_reference_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, _) = reference_corpus(dir.path());
    let schemas = dir.path().join("schemas");
    for (relative, schema) in asap_protocol::model::schema::all_schemas() {
        let path = schemas.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    }
    let out = Command::new(reference_python())
        .arg(workspace().join("interop/conformance/check_schemas.py"))
        .arg(&schemas)
        .arg(&corpus)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}
