//! Models looked up by name, for tools that handle documents of any kind
//! (`asap validate --model`, conformance tests).

use serde_json::Value;

use super::{
    Agent, Artifact, AuthScheme, Capability, Conversation, DataPart, Endpoint, Envelope, FilePart,
    Manifest, Message, Model, Part, PayloadType, ResourcePart, Skill, StateSnapshot, Task,
    TemplatePart, TextPart, ValidationError,
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
