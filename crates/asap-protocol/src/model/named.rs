//! Models looked up by name, for tools that handle documents of any kind
//! (`asap validate --model`, conformance tests).

use serde_json::Value;

use super::{
    Agent, Artifact, ArtifactNotify, AuthScheme, Capability, Conversation, DataPart, Endpoint,
    Envelope, FilePart, Manifest, McpResourceData, McpResourceFetch, McpToolCall, McpToolResult,
    Message, MessageAck, MessageSend, Model, Part, ResourcePart, Skill, StateQuery, StateRestore,
    StateSnapshot, Task, TaskCancel, TaskRequest, TaskResponse, TaskUpdate, TemplatePart, TextPart,
    ValidationError,
};

macro_rules! named_models {
    ($($model:ident),+ $(,)?) => {
        /// The name of every model, as the reference's classes are named.
        pub const MODEL_NAMES: &[&str] = &[$(stringify!($model)),+];

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
            $(
                if wanted == normalize(stringify!($model)) {
                    return Some($model::from_value(value).map(|m| m.to_json()));
                }
            )+
            None
        }
    };
}

fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

named_models!(
    Envelope,
    TaskRequest,
    TaskResponse,
    TaskUpdate,
    TaskCancel,
    MessageSend,
    StateQuery,
    StateRestore,
    ArtifactNotify,
    McpToolCall,
    McpToolResult,
    McpResourceFetch,
    McpResourceData,
    MessageAck,
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
