//! Models looked up by name, for tools that handle documents of any kind
//! (`asap validate --model`, conformance tests).

use serde_json::Value;

use super::payloads2::{model_title, typed_reader};
use super::{
    Agent, Artifact, AuthScheme, Capability, Conversation, DataPart, Endpoint, Envelope, FilePart,
    Manifest, Message, Model, Part, PayloadType, ResourcePart, Skill, StateSnapshot, Task,
    TemplatePart, TextPart, ValidationError,
};
use super::{
    Dialect, HardwareCapability, InferenceCapability, Loc, LocalModelInfo, SlaDefinition,
    TaskMetrics, TaskRequestConfig, VerificationStatus,
};

/// The name of every model, as the reference's classes are named: `Envelope`, the
/// payload models (from the payload table), then parts and entities.
pub const MODEL_NAMES: &[&str] = &ALL_NAMES;

const ALL_NAMES: [&str; 1 + PayloadType::COUNT + OTHER_MODELS.len()] = {
    let mut names = [""; 1 + PayloadType::COUNT + OTHER_MODELS.len()];
    names[0] = Envelope::NAME;
    let mut i = 0;
    while i < PayloadType::COUNT {
        names[1 + i] = PayloadType::ALL[i].model_name();
        i += 1;
    }
    let mut j = 0;
    while j < OTHER_MODELS.len() {
        names[1 + PayloadType::COUNT + j] = OTHER_MODELS[j];
        j += 1;
    }
    names
};

macro_rules! other_models {
    ($($model:ident),+ $(,)?) => {
        /// The models that are neither the envelope nor a payload.
        const OTHER_MODELS: &[&str] = &[$(stringify!($model)),+];

        fn validate_other(wanted: &str, value: &Value) -> Option<Result<String, ValidationError>> {
            $(
                if wanted == normalize(stringify!($model)) {
                    return Some($model::from_value(value).map(|m| m.to_json()));
                }
            )+
            None
        }
    };
}

other_models!(
    TextPart,
    DataPart,
    FilePart,
    ResourcePart,
    TemplatePart,
    Part,
    Manifest,
    Skill,
    Capability,
    Endpoint,
    AuthScheme,
    Agent,
    Conversation,
    Task,
    Message,
    Artifact,
    StateSnapshot,
);

/// Validates `value` as the model called `name` (case-insensitive, `_` ignored:
/// `"task_request"` finds `TaskRequest`) and returns its `model_dump_json()`
/// bytes. `None` when no model has that name.
///
/// ```
/// use asap_protocol::model::named::validate_named;
/// let out = validate_named("task_cancel", &serde_json::json!({"task_id": "t"}));
/// assert_eq!(out.unwrap().unwrap(), r#"{"task_id":"t","reason":null}"#);
/// assert!(validate_named("nope", &serde_json::json!({})).is_none());
/// ```
pub fn validate_named(name: &str, value: &Value) -> Option<Result<String, ValidationError>> {
    let wanted = normalize(name);
    if wanted == normalize(Envelope::NAME) {
        return Some(Envelope::from_value(value).map(|e| e.to_json()));
    }
    if let Some(payload_type) = PayloadType::ALL
        .into_iter()
        .find(|t| normalize(t.model_name()) == wanted)
    {
        return Some(payload_type.validate(value).map(|p| p.to_json()));
    }
    validate_other(&wanted, value)
}

/// As [`validate_named`], with the models of `dialect`. 1.1: [`validate_named`]. 2.x, as
/// asap-protocol 2.5.10 reads and writes them: the envelope types its payload
/// ([`Envelope::from_value_in`]) and is written with it typed; the payload models
/// `TaskRequest` and `TaskResponse` type `config` and `metrics`; `Manifest` and
/// `Capability` take their 2.x members and are written in the 2.x shape; and the 2.x
/// models are known: `TaskStream`, `TaskRequestConfig`, `TaskMetrics`,
/// `SLADefinition`, `VerificationStatus`, `HardwareCapability`, `InferenceCapability`,
/// `LocalModelInfo`. (One difference: a hardware class is written `class`, where
/// `model_dump_json()` writes `class_`.)
///
/// ```
/// use asap_protocol::model::Dialect;
/// use asap_protocol::model::named::validate_named_in;
/// let config = serde_json::json!({"foo": 1});
/// assert!(validate_named_in("TaskRequestConfig", &config, Dialect::V2_2).unwrap().is_err());
/// assert!(validate_named_in("TaskRequestConfig", &config, Dialect::V1_1).is_none());
/// ```
pub fn validate_named_in(
    name: &str,
    value: &Value,
    dialect: Dialect,
) -> Option<Result<String, ValidationError>> {
    if !dialect.is_2x() {
        return validate_named(name, value);
    }
    let wanted = normalize(name);
    let root = &Loc::Root;
    let invalid = |title: &'static str| move |errors| ValidationError { title, errors };
    let dumped = |dump: Value| crate::json::to_model_json(&dump);
    Some(match wanted.as_str() {
        "envelope" => Envelope::from_value_in(value, dialect).and_then(|mut envelope| {
            envelope.type_payload_2x()?;
            Ok(envelope.to_json())
        }),
        "manifest" => Manifest::validate_in(value, root, dialect)
            .map(|m| dumped(m.to_wire_value()))
            .map_err(invalid(Manifest::NAME)),
        "capability" => Capability::validate_in(value, root, dialect)
            .map(|c| dumped(c.to_wire_value_2x()))
            .map_err(invalid(Capability::NAME)),
        "taskrequestconfig" => TaskRequestConfig::from_value(value).map(|m| m.to_json()),
        "taskmetrics" => TaskMetrics::from_value(value).map(|m| m.to_json()),
        "sladefinition" => SlaDefinition::from_value(value).map(|m| m.to_json()),
        "verificationstatus" => VerificationStatus::from_value(value).map(|m| m.to_json()),
        "hardwarecapability" => HardwareCapability::from_value(value).map(|m| m.to_json()),
        "inferencecapability" => InferenceCapability::from_value(value).map(|m| m.to_json()),
        "localmodelinfo" => LocalModelInfo::from_value(value).map(|m| m.to_json()),
        key => match typed_reader(key) {
            Some(read) => read(value, root)
                .map(dumped)
                .map_err(invalid(model_title(key))),
            None => return validate_named(name, value),
        },
    })
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_resolves_and_rejects_a_non_object() {
        for name in MODEL_NAMES {
            let result =
                validate_named(name, &Value::Null).unwrap_or_else(|| panic!("{name} not found"));
            assert!(result.is_err(), "{name} accepted null");
        }
        assert_eq!(MODEL_NAMES.len(), 31);
        assert_eq!(MODEL_NAMES[0], "Envelope");
        assert_eq!(
            MODEL_NAMES[1..=PayloadType::COUNT],
            PayloadType::ALL.map(PayloadType::model_name)
        );
        assert!(
            validate_named(
                "MESSAGE-ACK",
                &serde_json::json!({"original_envelope_id": "e", "status": "processed"})
            )
            .unwrap()
            .is_ok()
        );
    }
}
