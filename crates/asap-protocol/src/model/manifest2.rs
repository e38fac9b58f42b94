//! The members a 2.x manifest adds (docs/asap-2.md section 4): `supported_versions`,
//! `sla`, `verification`, and `capabilities.hardware` / `capabilities.inference`.
//!
//! Mirrors `asap/models/entities.py` of the 2.5.10 reference: every model refuses
//! unknown members, `HardwareCapability` writes `class` and reads `class` or `class_`.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::Model;
use super::enums::{HardwareClass, HardwareIoType, InferenceMode, VerificationState};
use super::macros::model;
use super::pyrepr::python_repr;
use super::stream::lax_float;
use super::timestamp::Timestamp;
use super::validation::{
    Checked, ErrorKind, Loc, at_least, bounded_integer, fail, list, rule, string, string_list,
};

/// `supported_versions` of a 2.x manifest that does not name it (`["2.2"]`).
pub const DEFAULT_SUPPORTED_VERSIONS: &[&str] = &["2.2"];

/// Longest `HardwareCapability.model`, in characters.
pub const MAX_HARDWARE_MODEL_LENGTH: usize = 100;

/// The reference's `_PERCENTAGE_RE`, matched against the stripped string.
static PERCENTAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(-?[\d.]+)\s*%?\s*$").expect("a valid pattern"));

/// `supported_versions`: at least one string (the values themselves are not checked).
pub(crate) fn supported_versions(value: &Value, loc: &Loc<'_>) -> Checked<Vec<String>> {
    at_least(string_list(value, loc)?, 1, loc, value)
}

/// A percentage string such as `"99.5%"` (`validate_percentage_format`): kept as
/// written, checked once stripped.
fn percentage(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |text| {
        let stripped = text.trim();
        if PERCENTAGE.is_match(stripped) {
            Ok(())
        } else {
            Err(format!(
                "Invalid percentage string: {}",
                python_repr(stripped)
            ))
        }
    })
}

fn non_negative_integer(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(0), None)
}

model! {
    /// The service levels an agent promises (`SLADefinition`).
    pub struct SlaDefinition named "SLADefinition" {
        /// Target uptime as a percentage string (`"99.5%"`).
        #[serde(default)]
        pub availability: Option<String> = optional(percentage),
        /// Highest 95th-percentile latency, in milliseconds (at least 0).
        #[serde(default)]
        pub max_latency_p95_ms: Option<i64> = optional(non_negative_integer),
        /// Highest error rate as a percentage string (`"1%"`).
        #[serde(default)]
        pub max_error_rate: Option<String> = optional(percentage),
        /// Support coverage (`"24/7"`, `"business"`).
        #[serde(default)]
        pub support_hours: Option<String> = optional(string),
    }
}

model! {
    /// Whether a registry verified the agent (`VerificationStatus`).
    pub struct VerificationStatus {
        /// The state.
        pub status: VerificationState = required(VerificationState::validate),
        /// When it was verified.
        #[serde(default)]
        pub verified_at: Option<Timestamp> = optional(Timestamp::validate),
    }
}

fn hardware_model(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    let text = string(value, loc)?;
    if text.chars().count() > MAX_HARDWARE_MODEL_LENGTH {
        return fail(
            ErrorKind::StringTooLong {
                max_length: MAX_HARDWARE_MODEL_LENGTH,
            },
            loc,
            value,
        );
    }
    Ok(text)
}

fn io_types(value: &Value, loc: &Loc<'_>) -> Checked<Vec<HardwareIoType>> {
    list(value, loc, HardwareIoType::validate)
}

model! {
    /// The hardware hosting an agent (`HardwareCapability`; every member optional).
    pub struct HardwareCapability {
        /// Its class, written `class` (the reference's Python field is `class_`, also read).
        #[serde(default)]
        pub class: Option<HardwareClass> = optional(HardwareClass::validate),
        /// The board or SoC (at most 100 characters).
        #[serde(default)]
        pub model: Option<String> = optional(hardware_model),
        /// Its physical I/O interfaces.
        #[serde(default)]
        pub io: Vec<HardwareIoType> = defaulted(Vec::new, io_types),
    }
}

/// `capabilities.hardware`: reads the Python field name `class_` as `class` when `class`
/// is absent (`populate_by_name`); when both are given, `class_` is an unknown member.
pub(crate) fn hardware(value: &Value, loc: &Loc<'_>) -> Checked<HardwareCapability> {
    let Value::Object(map) = value else {
        return HardwareCapability::validate_at(value, loc);
    };
    if map.contains_key("class") || !map.contains_key("class_") {
        return HardwareCapability::validate_at(value, loc);
    }
    let renamed: Map<String, Value> = map
        .iter()
        .map(|(key, member)| {
            let key = if key == "class_" { "class" } else { key };
            (key.to_owned(), member.clone())
        })
        .collect();
    HardwareCapability::validate_at(&Value::Object(renamed), loc).map_err(|mut errors| {
        // Report an error in the renamed member where the input had it.
        for error in &mut errors {
            if let Some(item) = error.loc.get_mut(loc.to_vec().len())
                && *item == super::LocItem::Key("class".into())
            {
                *item = super::LocItem::Key("class_".into());
            }
        }
        errors
    })
}

fn throughput(value: &Value, loc: &Loc<'_>) -> Checked<f64> {
    let f = lax_float(value, loc)?;
    if f >= 0.0 {
        Ok(f)
    } else {
        fail(ErrorKind::GreaterThanEqualFloat { ge: 0 }, loc, value)
    }
}

model! {
    /// A model an agent runs locally (`LocalModelInfo`; every member optional).
    pub struct LocalModelInfo {
        /// Its identifier (a Hugging Face repository, a GGUF name).
        #[serde(default)]
        pub id: Option<String> = optional(string),
        /// Its quantization label (`Q4_K_M`).
        #[serde(default)]
        pub quantization: Option<String> = optional(string),
        /// Self-reported throughput in tokens per second (at least 0).
        #[serde(default)]
        pub throughput_tokens_per_second: Option<f64> = optional(throughput),
    }
}

fn inference_modes(value: &Value, loc: &Loc<'_>) -> Checked<Vec<InferenceMode>> {
    list(value, loc, InferenceMode::validate)
}

fn local_models(value: &Value, loc: &Loc<'_>) -> Checked<Vec<LocalModelInfo>> {
    list(value, loc, LocalModelInfo::validate_at)
}

model! {
    /// How an agent runs inference (`InferenceCapability`).
    pub struct InferenceCapability {
        /// Where it runs inference.
        #[serde(default)]
        pub modes: Vec<InferenceMode> = defaulted(Vec::new, inference_modes),
        /// The models it runs locally.
        #[serde(default)]
        pub local_models: Vec<LocalModelInfo> = defaulted(Vec::new, local_models),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Manifest, ValidationError};
    use serde_json::json;

    /// Served by the 2.5.10 echo agent (docs/asap-2.md section 4).
    const ECHO_25: &str = r#"{"id":"urn:asap:agent:echo-agent","name":"Echo Agent","version":"0.3.0","description":"Echoes task input as output","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo back the input","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false,"mcp_tools":[],"hardware":null,"inference":null},"endpoints":{"asap":"http://127.0.0.1:18251/asap","events":null},"supported_versions":["2.2"],"auth":null,"signature":null,"sla":null,"verification":null,"ttl_seconds":300}"#;

    /// Every 2.x member set, as 2.5.10 serves it (`by_alias=True`).
    const EDGE_25: &str = r#"{"id":"urn:asap:agent:edge","name":"Edge","version":"1.0.0","description":"d","capabilities":{"asap_version":"0.1","skills":[],"state_persistence":false,"streaming":true,"mcp_tools":[],"hardware":{"class":"sbc","model":"rpi5","io":["gpio","i2c"]},"inference":{"modes":["local_cpu"],"local_models":[{"id":"llama","quantization":"Q4_K_M","throughput_tokens_per_second":12.5}]}},"endpoints":{"asap":"https://edge.example/asap","events":"wss://edge.example/asap/ws"},"supported_versions":["2.1","2.2"],"auth":null,"signature":null,"sla":{"availability":"99.5%","max_latency_p95_ms":500,"max_error_rate":"1%","support_hours":"24/7"},"verification":{"status":"verified","verified_at":"2026-01-15T10:30:00Z"},"ttl_seconds":300}"#;

    fn wire(text: &str) -> Result<Manifest, ValidationError> {
        Manifest::from_wire(&crate::json::parse(text.as_bytes()).unwrap())
    }

    fn errors(result: Result<Manifest, ValidationError>) -> Vec<(String, String)> {
        result
            .unwrap_err()
            .errors
            .iter()
            .map(|e| {
                (
                    e.kind.type_name().to_owned(),
                    serde_json::to_string(&e.loc).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn captured_manifests_parse_and_serve_back_byte_for_byte() {
        for text in [ECHO_25, EDGE_25] {
            let manifest = wire(text).unwrap();
            assert!(manifest.is_2x());
            assert_eq!(crate::json::to_compact(&manifest.to_wire_value()), text);
        }
        let edge = wire(EDGE_25).unwrap();
        let hardware = edge.capabilities.hardware.as_ref().unwrap();
        assert_eq!(hardware.class, Some(HardwareClass::Sbc));
        assert_eq!(hardware.io, [HardwareIoType::Gpio, HardwareIoType::I2c]);
        let inference = edge.capabilities.inference.as_ref().unwrap();
        assert_eq!(
            inference.local_models[0].throughput_tokens_per_second,
            Some(12.5)
        );
        assert_eq!(edge.sla.unwrap().max_latency_p95_ms, Some(500));
        assert_eq!(
            edge.verification.unwrap().status,
            VerificationState::Verified
        );
    }

    #[test]
    fn the_one_one_model_refuses_the_two_x_members() {
        let value = crate::json::parse(ECHO_25.as_bytes()).unwrap();
        let refused = errors(Manifest::from_value(&value));
        assert_eq!(
            refused,
            [
                ("extra_forbidden", r#"["capabilities","hardware"]"#),
                ("extra_forbidden", r#"["capabilities","inference"]"#),
                ("extra_forbidden", r#"["supported_versions"]"#),
                ("extra_forbidden", r#"["sla"]"#),
                ("extra_forbidden", r#"["verification"]"#),
            ]
            .map(|(t, l)| (t.to_owned(), l.to_owned()))
        );
    }

    #[test]
    fn a_one_one_manifest_keeps_its_shape() {
        let text = r#"{"id":"urn:asap:agent:a","name":"A","version":"1.0","description":"d","capabilities":{"asap_version":"0.1","skills":[],"state_persistence":false,"streaming":false,"mcp_tools":[]},"endpoints":{"asap":"http://a/asap","events":null},"auth":null,"signature":null,"ttl_seconds":300}"#;
        let manifest = wire(text).unwrap();
        assert!(!manifest.is_2x());
        assert_eq!(manifest.to_json(), text);
        assert_eq!(crate::json::to_compact(&manifest.to_wire_value()), text);
    }

    #[test]
    fn the_two_x_model_refuses_unknown_members_at_every_level() {
        let mut value = crate::json::parse(EDGE_25.as_bytes()).unwrap();
        value["x"] = json!(1);
        value["sla"]["y"] = json!(1);
        value["capabilities"]["hardware"]["z"] = json!(1);
        value["capabilities"]["inference"]["local_models"][0]["w"] = json!(1);
        assert_eq!(
            errors(Manifest::from_wire(&value))
                .into_iter()
                .map(|(_, loc)| loc)
                .collect::<Vec<_>>(),
            [
                r#"["capabilities","hardware","z"]"#,
                r#"["capabilities","inference","local_models",0,"w"]"#,
                r#"["sla","y"]"#,
                r#"["x"]"#,
            ]
        );
        value = crate::json::parse(ECHO_25.as_bytes()).unwrap();
        value["supported_versions"] = json!([]);
        assert_eq!(
            errors(Manifest::from_wire(&value)),
            [(
                "too_short".to_owned(),
                r#"["supported_versions"]"#.to_owned()
            )]
        );
    }

    #[test]
    fn a_two_x_member_alone_selects_the_two_x_model() {
        let mut value = crate::json::parse(ECHO_25.as_bytes()).unwrap();
        let map = value.as_object_mut().unwrap();
        for name in ["supported_versions", "sla", "verification"] {
            map.remove(name);
        }
        map["capabilities"]
            .as_object_mut()
            .unwrap()
            .remove("inference");
        assert!(Manifest::declares_2x(&value));
        let manifest = Manifest::from_wire(&value).unwrap();
        assert_eq!(manifest.supported_versions.unwrap(), ["2.2"]);
    }

    #[test]
    fn hardware_class_is_read_as_class_or_class_underscore() {
        let read = |v: Value| hardware(&v, &Loc::Root);
        let by_alias = read(json!({"class": "sbc"})).unwrap();
        assert_eq!(read(json!({"class_": "sbc"})).unwrap(), by_alias);
        assert_eq!(
            serde_json::to_string(&by_alias).unwrap(),
            r#"{"class":"sbc","model":null,"io":[]}"#
        );
        let both = read(json!({"class": "sbc", "class_": "cloud"})).unwrap_err();
        assert_eq!(both[0].kind, ErrorKind::ExtraForbidden);
        assert_eq!(
            serde_json::to_string(&both[0].loc).unwrap(),
            r#"["class_"]"#
        );
        let bad = read(json!({"class_": "bad"})).unwrap_err();
        assert_eq!(bad[0].kind.type_name(), "enum");
        assert_eq!(serde_json::to_string(&bad[0].loc).unwrap(), r#"["class_"]"#);
        let long = read(json!({"model": "m".repeat(101)})).unwrap_err();
        assert_eq!(
            long[0].kind.message(),
            "String should have at most 100 characters"
        );
    }

    #[test]
    fn sla_percentages_follow_the_reference_pattern() {
        for good in ["99.5%", " 99 % ", "-5", "1.2.3%", "100"] {
            let sla = SlaDefinition::from_value(&json!({"availability": good})).unwrap();
            assert_eq!(sla.availability.as_deref(), Some(good), "kept as written");
        }
        for (bad, message) in [
            ("abc", "Value error, Invalid percentage string: 'abc'"),
            (" ", "Value error, Invalid percentage string: ''"),
            ("5%%", "Value error, Invalid percentage string: '5%%'"),
        ] {
            let error = SlaDefinition::from_value(&json!({"max_error_rate": bad})).unwrap_err();
            assert_eq!(error.errors[0].kind.message(), message, "{bad:?}");
        }
        let negative = SlaDefinition::from_value(&json!({"max_latency_p95_ms": -1})).unwrap_err();
        assert_eq!(negative.errors[0].kind.type_name(), "greater_than_equal");
    }
}
