//! JSON encoding exactly as the reference writes and reads it (wire spec section 1).
//!
//! The reference emits JSON through different Python encoders whose bytes differ. Each
//! has a function here:
//!
//! | function | reference encoder | used for |
//! |---|---|---|
//! | [`to_compact`] | S1: `json.dumps(ensure_ascii=False, separators=(",", ":"))` | HTTP response bodies |
//! | [`to_model_json`] | pydantic `model_dump_json()` | golden vectors, stored snapshots |
//! | [`to_python_default`] | S2: `json.dumps(obj)` | client request bodies, non-response WebSocket frames |
//! | [`to_canonical`] | S3: `json.dumps(sort_keys=True, separators=(",", ":"))` | webhook bodies (signed) |
//!
//! Numbers are kept exactly: integers of any size pass through unchanged, floats are
//! written with Python's float layout (see [`format_float`]).
//!
//! Parsing ([`parse`]) follows Python's `json.loads` where it is observable on the
//! wire: the last of duplicate keys wins (at the position of the first), integers keep
//! arbitrary precision. Deliberate differences: the non-standard literals `NaN` and
//! `Infinity`, lone UTF-16 surrogates and nesting deeper than 128 levels are rejected
//! (see `CONFORMANCE.md`).

mod float;
mod formatter;

use serde::Serialize;
use serde_json::{Map, Value};

pub use float::{FloatStyle, format_float};
use formatter::{PyFormatter, Style, number_text};

/// A free-form JSON object (`payload`, `input`, `config`, `extensions`, ...).
pub type JsonObject = Map<String, Value>;

/// Parses JSON text the way the reference's server does (`json.loads`).
///
/// Numbers in the result are normalized as Python would hold them (see
/// [`normalize_numbers`]).
///
/// ```
/// let value = asap_protocol::json::parse(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
/// assert_eq!(value.to_string(), r#"{"a":3,"b":2}"#);
/// ```
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(bytes)?;
    normalize_numbers(&mut value);
    Ok(value)
}

/// Rewrites every number in `value` to the form Python would hold after `json.loads`:
/// integers exact (`-0` becomes `0`), floats as their shortest round-trip text, and
/// floats beyond the `f64` range as `null` (pydantic writes infinities as `null`).
pub fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            let raw = number.to_string();
            let text = number_text(&raw, FloatStyle::Pydantic);
            if text == "null" {
                *value = Value::Null;
            } else if text != raw {
                *number = serde_json::from_str(&text).expect("canonical number text parses");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(map) => map.values_mut().for_each(normalize_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn encode<T: Serialize + ?Sized>(value: &T, style: Style) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PyFormatter::new(style));
    value
        .serialize(&mut serializer)
        .expect("ASAP models and JSON values always serialize");
    out
}

/// S1: compact separators, raw UTF-8, Python `repr` floats: the bytes of the
/// reference server's HTTP responses.
///
/// ```
/// let v = serde_json::json!({"msg": "héllo", "x": 1e-7});
/// assert_eq!(asap_protocol::json::to_compact(&v), "{\"msg\":\"héllo\",\"x\":1e-07}");
/// ```
pub fn to_compact<T: Serialize + ?Sized>(value: &T) -> String {
    into_string(encode(
        value,
        Style {
            spaced: false,
            ascii: false,
            floats: FloatStyle::PythonRepr,
        },
    ))
}

/// pydantic's `model_dump_json()`: compact, raw UTF-8, pydantic floats.
///
/// ```
/// let v = serde_json::json!({"x": 1e-7});
/// assert_eq!(asap_protocol::json::to_model_json(&v), r#"{"x":1e-7}"#);
/// ```
pub fn to_model_json<T: Serialize + ?Sized>(value: &T) -> String {
    into_string(encode(
        value,
        Style {
            spaced: false,
            ascii: false,
            floats: FloatStyle::Pydantic,
        },
    ))
}

/// S2: Python's default `json.dumps`: `", "` and `": "`, `\uXXXX` escapes, `repr` floats.
///
/// ```
/// let v = serde_json::json!({"msg": "é", "n": [1, 2]});
/// assert_eq!(asap_protocol::json::to_python_default(&v), r#"{"msg": "\u00e9", "n": [1, 2]}"#);
/// ```
pub fn to_python_default<T: Serialize + ?Sized>(value: &T) -> String {
    into_string(encode(
        value,
        Style {
            spaced: true,
            ascii: true,
            floats: FloatStyle::PythonRepr,
        },
    ))
}

/// `json.dumps(value, sort_keys=True)`: S2 with keys sorted recursively. The
/// reference hashes these bytes for the manifest's ETag.
///
/// ```
/// let v = serde_json::json!({"b": 1, "a": "é"});
/// assert_eq!(asap_protocol::json::to_python_sorted(&v), r#"{"a": "\u00e9", "b": 1}"#);
/// ```
pub fn to_python_sorted<T: Serialize + ?Sized>(value: &T) -> String {
    encode_sorted(value, true)
}

/// S3: the canonical webhook form: keys sorted recursively by code point, compact,
/// `\uXXXX` escapes, `repr` floats. Signatures cover exactly these bytes.
///
/// ```
/// let v = serde_json::json!({"b": 1, "a": {"d": "✓", "c": null}});
/// assert_eq!(asap_protocol::json::to_canonical(&v), r#"{"a":{"c":null,"d":"\u2713"},"b":1}"#);
/// ```
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> String {
    encode_sorted(value, false)
}

/// Python's `json.dumps(sort_keys=True)` with ASCII escapes, spaced or compact.
fn encode_sorted<T: Serialize + ?Sized>(value: &T, spaced: bool) -> String {
    let mut tree =
        serde_json::to_value(value).expect("ASAP models and JSON values always serialize");
    sort_keys(&mut tree);
    into_string(encode(
        &tree,
        Style {
            spaced,
            ascii: true,
            floats: FloatStyle::PythonRepr,
        },
    ))
}

fn sort_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, mut item) in entries {
                sort_keys(&mut item);
                map.insert(key, item);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("serde_json writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn big_integers_and_negative_zero() {
        let v = parse(br#"{"a": 12345678901234567890123, "b": -0, "c": -170141183460469231731687303715884105728}"#).unwrap();
        assert_eq!(
            to_compact(&v),
            r#"{"a":12345678901234567890123,"b":0,"c":-170141183460469231731687303715884105728}"#
        );
    }

    #[test]
    fn floats_are_normalized_on_parse() {
        let v = parse(br#"[1E5, 1e400, -1e400, 1.50, 1e-7, 0.1]"#).unwrap();
        assert_eq!(to_model_json(&v), "[100000.0,null,null,1.5,1e-7,0.1]");
        assert_eq!(
            to_python_default(&v),
            "[100000.0, null, null, 1.5, 1e-07, 0.1]"
        );
    }

    #[test]
    fn duplicate_keys_last_wins_in_first_position() {
        let v = parse(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap();
        assert_eq!(to_compact(&v), r#"{"a":3,"b":2}"#);
    }

    #[test]
    fn escapes_match_python() {
        let v = json!({"s": "\u{0}\u{1f}\"\\/\n\r\t\u{8}\u{c}\u{7f}é😀"});
        assert_eq!(
            to_compact(&v),
            "{\"s\":\"\\u0000\\u001f\\\"\\\\/\\n\\r\\t\\b\\f\u{7f}é😀\"}"
        );
        assert_eq!(
            to_canonical(&v),
            r#"{"s":"\u0000\u001f\"\\/\n\r\t\b\f\u007f\u00e9\ud83d\ude00"}"#
        );
    }

    #[test]
    fn canonical_sorts_by_code_point_recursively() {
        let v = json!({"é": 1, "Z": [ {"b": 1, "a": 2} ], "a": 0});
        assert_eq!(
            to_canonical(&v),
            r#"{"Z":[{"a":2,"b":1}],"a":0,"\u00e9":1}"#
        );
    }

    #[test]
    fn rejects_non_json_literals_and_bom() {
        assert!(parse(b"{\"a\": NaN}").is_err());
        assert!(parse(b"{\"a\": Infinity}").is_err());
        assert!(parse(b"\xef\xbb\xbf{}").is_err());
        assert!(parse(b"{\"a\": \"\\ud800\"}").is_err());
    }

    #[test]
    fn empty_containers_and_spacing() {
        let v = json!({"a": [], "b": {}, "c": [1, {"d": true}]});
        assert_eq!(
            to_python_default(&v),
            r#"{"a": [], "b": {}, "c": [1, {"d": true}]}"#
        );
    }
}
