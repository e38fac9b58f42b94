//! The payload models carried in [`Envelope::payload`](crate::model::Envelope)
//! (wire spec section 5).

use serde_json::Value;

use super::Model;
use super::enums::{AckStatus, MessageRole, TaskStatus, UpdateType};
use super::macros::{model, payload_types};
use super::validation::{
    Checked, ErrorKind, Loc, ValidationError, boolean, fail, integer, object, rule, string,
    string_list,
};
use crate::json::JsonObject;

impl PayloadType {
    /// The payload type a wire string names, in its canonical or an alias spelling
    /// (exact, case-sensitive match).
    ///
    /// ```
    /// use asap_protocol::model::PayloadType;
    /// assert_eq!(PayloadType::from_wire("TaskRequest"), Some(PayloadType::TaskRequest));
    /// assert_eq!(PayloadType::from_wire("state_restore"), Some(PayloadType::StateRestore));
    /// assert_eq!(PayloadType::from_wire("Task.Request"), None);
    /// ```
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == name || t.aliases().contains(&name))
    }
}

impl std::fmt::Display for PayloadType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model that travels as an envelope payload.
pub trait PayloadModel: Model {
    /// Its payload type.
    const TYPE: PayloadType;
}

fn check_progress(value: &Value, loc: &Loc<'_>) -> Checked<JsonObject> {
    let progress = object(value, loc)?;
    rule(progress, loc, value, |progress| {
        match progress.get("percent") {
            None => Ok(()),
            Some(Value::Bool(_)) => Ok(()),
            Some(Value::Number(n)) => {
                let percent: f64 = n.to_string().parse().unwrap_or(f64::NAN);
                if (0.0..=100.0).contains(&percent) {
                    Ok(())
                } else {
                    Err("progress.percent must be between 0 and 100".into())
                }
            }
            Some(_) => Err("progress.percent must be a number".into()),
        }
    })
}

fn check_tool_result(result: &McpToolResult, input: &Value, loc: &Loc<'_>) -> Checked<()> {
    let message = match (
        result.success,
        result.result.is_some(),
        result.error.is_some(),
    ) {
        (true, false, _) => "result must be provided when success=True",
        (true, true, true) => "error must be None when success=True",
        (false, _, false) => "error must be provided when success=False",
        (false, true, true) => "result must be None when success=False",
        _ => return Ok(()),
    };
    fail(
        ErrorKind::ValueError {
            message: message.into(),
        },
        loc,
        input,
    )
}

model! {
    /// Asks an agent to run one of its skills (`task.request`).
    pub struct TaskRequest {
        /// The conversation the task belongs to.
        pub conversation_id: String = required(string),
        /// The parent task, for sub-tasks.
        #[serde(default)]
        pub parent_task_id: Option<String> = optional(string),
        /// The skill to run.
        pub skill_id: String = required(string),
        /// The skill's input.
        pub input: JsonObject = required(object),
        /// Options such as `timeout_seconds`, `priority`, `streaming`.
        #[serde(default)]
        pub config: Option<JsonObject> = optional(object),
    }
}

impl TaskRequest {
    /// A request for `skill_id` with `input` (a JSON object; anything else becomes `{}`).
    pub fn new(
        conversation_id: impl Into<String>,
        skill_id: impl Into<String>,
        input: Value,
    ) -> Self {
        Self {
            conversation_id: conversation_id.into(),
            parent_task_id: None,
            skill_id: skill_id.into(),
            input: match input {
                Value::Object(map) => map,
                _ => JsonObject::new(),
            },
            config: None,
        }
    }
}

model! {
    /// The outcome of a task (`task.response`).
    pub struct TaskResponse {
        /// The task.
        pub task_id: String = required(string),
        /// Its status (any value is accepted, not only terminal ones).
        pub status: TaskStatus = required(TaskStatus::validate),
        /// The result.
        #[serde(default)]
        pub result: Option<JsonObject> = optional(object),
        /// The final state snapshot.
        #[serde(default)]
        pub final_state: Option<JsonObject> = optional(object),
        /// Execution metrics.
        #[serde(default)]
        pub metrics: Option<JsonObject> = optional(object),
    }
}

impl TaskResponse {
    /// A response with no result, state or metrics.
    pub fn new(task_id: impl Into<String>, status: TaskStatus) -> Self {
        Self {
            task_id: task_id.into(),
            status,
            result: None,
            final_state: None,
            metrics: None,
        }
    }

    /// Sets `result`.
    pub fn with_result(mut self, result: JsonObject) -> Self {
        self.result = Some(result);
        self
    }
}

model! {
    /// Progress or a status change of a running task (`task.update`).
    pub struct TaskUpdate {
        /// The task.
        pub task_id: String = required(string),
        /// What kind of update.
        pub update_type: UpdateType = required(UpdateType::validate),
        /// The task's current status.
        pub status: TaskStatus = required(TaskStatus::validate),
        /// Progress; a `percent` member must be a number from 0 to 100.
        #[serde(default)]
        pub progress: Option<JsonObject> = optional(check_progress),
        /// What input is needed.
        #[serde(default)]
        pub input_request: Option<JsonObject> = optional(object),
    }
}

model! {
    /// Asks to cancel a task (`task.cancel`).
    pub struct TaskCancel {
        /// The task.
        pub task_id: String = required(string),
        /// Why.
        #[serde(default)]
        pub reason: Option<String> = optional(string),
    }
}

model! {
    /// A message within a task (`message.send`).
    pub struct MessageSend {
        /// The task.
        pub task_id: String = required(string),
        /// The message id.
        pub message_id: String = required(string),
        /// Who wrote it (any string; not checked as a URN).
        pub sender: String = required(string),
        /// Their role.
        pub role: MessageRole = required(MessageRole::validate),
        /// Part ids (strings, not part objects).
        pub parts: Vec<String> = required(string_list),
    }
}

model! {
    /// Asks for a task's state snapshot (`state.query`).
    pub struct StateQuery {
        /// The task.
        pub task_id: String = required(string),
        /// The snapshot version; `null` for the latest.
        #[serde(default)]
        pub version: Option<i64> = optional(integer),
    }
}

model! {
    /// Asks to restore a task from a snapshot (`state.restore`).
    pub struct StateRestore {
        /// The task.
        pub task_id: String = required(string),
        /// The snapshot.
        pub snapshot_id: String = required(string),
    }
}

model! {
    /// Announces an artifact (`artifact.notify`).
    pub struct ArtifactNotify {
        /// The artifact.
        pub artifact_id: String = required(string),
        /// Its task.
        pub task_id: String = required(string),
        /// A readable name.
        #[serde(default)]
        pub name: Option<String> = optional(string),
    }
}

model! {
    /// Calls an MCP tool (`mcp.tool_call`).
    pub struct McpToolCall {
        /// The call's id.
        pub request_id: String = required(string),
        /// The tool.
        pub tool_name: String = required(string),
        /// Its arguments.
        pub arguments: JsonObject = required(object),
        /// MCP context (server, session, ...).
        #[serde(default)]
        pub mcp_context: Option<JsonObject> = optional(object),
    }
}

model! {
    /// The outcome of an MCP tool call (`mcp.tool_result`): a `result` on success,
    /// an `error` on failure, never both.
    pub struct McpToolResult check check_tool_result {
        /// The call's id.
        pub request_id: String = required(string),
        /// Whether it succeeded.
        pub success: bool = required(boolean),
        /// The result, when it succeeded.
        #[serde(default)]
        pub result: Option<JsonObject> = optional(object),
        /// The error, when it failed.
        #[serde(default)]
        pub error: Option<String> = optional(string),
    }
}

model! {
    /// Fetches an MCP resource (`mcp.resource_fetch`).
    pub struct McpResourceFetch {
        /// The resource.
        pub resource_uri: String = required(string),
    }
}

model! {
    /// An MCP resource's content (`mcp.resource_data`).
    pub struct McpResourceData {
        /// The resource.
        pub resource_uri: String = required(string),
        /// Its content.
        pub content: JsonObject = required(object),
    }
}

model! {
    /// Acknowledges an envelope over WebSocket (`MessageAck`, ADR-16).
    pub struct MessageAck {
        /// The acknowledged envelope's id.
        pub original_envelope_id: String = required(string),
        /// What happened to it.
        pub status: AckStatus = required(AckStatus::validate),
        /// Why it was rejected.
        #[serde(default)]
        pub error: Option<String> = optional(string),
    }
}

// The payload table: adding a payload type is one entry here (after its model above).
// `aliases` are the other spellings the reference accepts; `response` payloads need a
// `correlation_id` when sent; `acked` ones are sent with `requires_ack` over WebSocket
// (section 11.4, plus `state.restore`, which the reference's list misses).
payload_types! {
    TaskRequest { wire: "task.request", aliases: ["TaskRequest"], schema: "task_request", response: false, acked: true },
    TaskResponse { wire: "task.response", aliases: ["TaskResponse"], schema: "task_response", response: true, acked: false },
    TaskUpdate { wire: "task.update", aliases: ["TaskUpdate"], schema: "task_update", response: false, acked: false },
    TaskCancel { wire: "task.cancel", aliases: ["TaskCancel"], schema: "task_cancel", response: false, acked: true },
    MessageSend { wire: "message.send", aliases: ["MessageSend", "message_send"], schema: "message_send", response: false, acked: true },
    StateQuery { wire: "state.query", aliases: ["state_query"], schema: "state_query", response: false, acked: false },
    StateRestore { wire: "state.restore", aliases: ["StateRestore", "state_restore"], schema: "state_restore", response: false, acked: true },
    ArtifactNotify { wire: "artifact.notify", aliases: [], schema: "artifact_notify", response: false, acked: false },
    McpToolCall { wire: "mcp.tool_call", aliases: ["McpToolCall", "mcp_tool_call"], schema: "mcp_tool_call", response: false, acked: false },
    McpToolResult { wire: "mcp.tool_result", aliases: ["McpToolResult", "mcp_tool_result"], schema: "mcp_tool_result", response: true, acked: false },
    McpResourceFetch { wire: "mcp.resource_fetch", aliases: [], schema: "mcp_resource_fetch", response: false, acked: false },
    McpResourceData { wire: "mcp.resource_data", aliases: ["McpResourceData"], schema: "mcp_resource_data", response: true, acked: false },
    // The only spelling the reference uses.
    MessageAck { wire: "MessageAck", aliases: [], schema: "message_ack", response: false, acked: false },
}

impl Payload {
    /// The payload as the free-form object an envelope carries.
    pub fn to_object(&self) -> JsonObject {
        match self.to_value() {
            Value::Object(map) => map,
            _ => unreachable!("payload models serialize to objects"),
        }
    }

    /// Validates `payload` as the model `payload_type` names (either spelling).
    pub fn parse(payload_type: &str, payload: &JsonObject) -> Result<Self, PayloadError> {
        let kind = PayloadType::from_wire(payload_type)
            .ok_or_else(|| PayloadError::UnknownType(payload_type.to_owned()))?;
        Ok(kind.validate(&Value::Object(payload.clone()))?)
    }
}

/// Why an envelope's payload could not be typed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// `payload_type` names no payload model.
    #[error("unknown payload type: {0}")]
    UnknownType(String),
    /// The payload does not satisfy its model.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds<M: Model + std::fmt::Debug>(value: Value) -> Vec<(String, String)> {
        M::from_value(&value)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| (e.kind.type_name().to_owned(), e.kind.message()))
            .collect()
    }

    #[test]
    fn every_payload_round_trips_with_defaults_written() {
        let cases: Vec<(PayloadType, Value, &str)> = vec![
            (
                PayloadType::TaskRequest,
                json!({"conversation_id": "c", "skill_id": "s", "input": {}}),
                r#"{"conversation_id":"c","parent_task_id":null,"skill_id":"s","input":{},"config":null}"#,
            ),
            (
                PayloadType::TaskResponse,
                json!({"task_id": "t", "status": "failed"}),
                r#"{"task_id":"t","status":"failed","result":null,"final_state":null,"metrics":null}"#,
            ),
            (
                PayloadType::TaskUpdate,
                json!({"task_id": "t", "update_type": "progress", "status": "working", "progress": {"percent": 50.5}}),
                r#"{"task_id":"t","update_type":"progress","status":"working","progress":{"percent":50.5},"input_request":null}"#,
            ),
            (
                PayloadType::TaskCancel,
                json!({"task_id": "t"}),
                r#"{"task_id":"t","reason":null}"#,
            ),
            (
                PayloadType::MessageSend,
                json!({"task_id": "t", "message_id": "m", "sender": "anyone", "role": "user", "parts": []}),
                r#"{"task_id":"t","message_id":"m","sender":"anyone","role":"user","parts":[]}"#,
            ),
            (
                PayloadType::StateQuery,
                json!({"task_id": "t", "version": "5"}),
                r#"{"task_id":"t","version":5}"#,
            ),
            (
                PayloadType::StateRestore,
                json!({"task_id": "t", "snapshot_id": "s"}),
                r#"{"task_id":"t","snapshot_id":"s"}"#,
            ),
            (
                PayloadType::ArtifactNotify,
                json!({"artifact_id": "a", "task_id": "t"}),
                r#"{"artifact_id":"a","task_id":"t","name":null}"#,
            ),
            (
                PayloadType::McpToolCall,
                json!({"request_id": "r", "tool_name": "x", "arguments": {"a": 1}}),
                r#"{"request_id":"r","tool_name":"x","arguments":{"a":1},"mcp_context":null}"#,
            ),
            (
                PayloadType::McpToolResult,
                json!({"request_id": "r", "success": "yes", "result": {}}),
                r#"{"request_id":"r","success":true,"result":{},"error":null}"#,
            ),
            (
                PayloadType::McpResourceFetch,
                json!({"resource_uri": "u"}),
                r#"{"resource_uri":"u"}"#,
            ),
            (
                PayloadType::McpResourceData,
                json!({"resource_uri": "u", "content": {}}),
                r#"{"resource_uri":"u","content":{}}"#,
            ),
            (
                PayloadType::MessageAck,
                json!({"original_envelope_id": "e", "status": "received"}),
                r#"{"original_envelope_id":"e","status":"received","error":null}"#,
            ),
        ];
        for (kind, input, expected) in cases {
            let payload = Payload::parse(kind.as_str(), input.as_object().unwrap()).unwrap();
            assert_eq!(payload.payload_type(), kind);
            assert_eq!(
                crate::json::to_model_json(&payload.to_object()),
                expected,
                "{kind}"
            );
            for alias in kind.aliases() {
                assert_eq!(
                    Payload::parse(alias, input.as_object().unwrap()).unwrap(),
                    payload
                );
            }
        }
    }

    #[test]
    fn unknown_types_and_invalid_payloads() {
        assert_eq!(
            Payload::parse("task.Request", &JsonObject::new()),
            Err(PayloadError::UnknownType("task.Request".into()))
        );
        let err = Payload::parse("task.request", &JsonObject::new()).unwrap_err();
        let PayloadError::Invalid(v) = err else {
            panic!("expected invalid")
        };
        assert_eq!(v.title, "TaskRequest");
        assert_eq!(v.errors.len(), 3);
    }

    #[test]
    fn progress_percent_rule() {
        let base = |percent: Value| json!({"task_id": "t", "update_type": "progress", "status": "working", "progress": {"percent": percent}});
        for ok in [json!(0), json!(100), json!(50.5), json!(true)] {
            assert!(TaskUpdate::from_value(&base(ok.clone())).is_ok(), "{ok}");
        }
        assert_eq!(
            kinds::<TaskUpdate>(base(json!(101)))[0].1,
            "Value error, progress.percent must be between 0 and 100"
        );
        assert_eq!(
            kinds::<TaskUpdate>(base(json!(-1)))[0].1,
            "Value error, progress.percent must be between 0 and 100"
        );
        assert_eq!(
            kinds::<TaskUpdate>(base(json!("50")))[0].1,
            "Value error, progress.percent must be a number"
        );
        assert_eq!(
            kinds::<TaskUpdate>(base(Value::Null))[0].1,
            "Value error, progress.percent must be a number"
        );
        let no_percent = json!({"task_id": "t", "update_type": "progress", "status": "working", "progress": {"eta": 3}});
        assert!(TaskUpdate::from_value(&no_percent).is_ok());
    }

    #[test]
    fn tool_result_exclusivity() {
        let case = |success: bool, result: Value, error: Value| {
            McpToolResult::from_value(
                &json!({"request_id": "r", "success": success, "result": result, "error": error}),
            )
        };
        assert!(case(true, json!({}), Value::Null).is_ok());
        assert!(case(false, Value::Null, json!("boom")).is_ok());
        let msg =
            |r: Result<McpToolResult, ValidationError>| r.unwrap_err().errors[0].kind.message();
        assert_eq!(
            msg(case(true, Value::Null, Value::Null)),
            "Value error, result must be provided when success=True"
        );
        assert_eq!(
            msg(case(true, json!({}), json!("e"))),
            "Value error, error must be None when success=True"
        );
        assert_eq!(
            msg(case(false, Value::Null, Value::Null)),
            "Value error, error must be provided when success=False"
        );
        assert_eq!(
            msg(case(false, json!({}), json!("e"))),
            "Value error, result must be None when success=False"
        );
    }

    #[test]
    fn enum_and_literal_errors() {
        let e = kinds::<MessageAck>(json!({"original_envelope_id": "e", "status": "RECEIVED"}));
        assert_eq!(e[0].0, "literal_error");
        let e = kinds::<MessageSend>(
            json!({"task_id": "t", "message_id": "m", "sender": "s", "role": "bot", "parts": ["a", 1]}),
        );
        assert_eq!(
            e.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["enum", "string_type"]
        );
    }

    #[test]
    fn the_table_is_consistent() {
        let mut spellings = std::collections::HashSet::new();
        for t in PayloadType::ALL {
            assert_eq!(PayloadType::from_wire(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
            for alias in t.aliases() {
                assert_eq!(PayloadType::from_wire(alias), Some(t), "{alias}");
            }
            for name in std::iter::once(t.as_str()).chain(t.aliases().iter().copied()) {
                assert!(spellings.insert(name), "{name} names two payload types");
            }
            // The model behind the entry is the one `Payload` carries and `TYPE` names.
            let err = t.validate(&Value::Null).unwrap_err();
            assert_eq!(err.title, t.model_name());
            assert!(
                t.schema_path().starts_with("payloads/")
                    && t.schema_path().ends_with(".schema.json")
            );
            assert_eq!(
                t.schema().get("title").and_then(Value::as_str),
                Some(t.model_name())
            );
        }
        assert_eq!(PayloadType::COUNT, 13);
        assert_eq!(TaskRequest::TYPE, PayloadType::TaskRequest);
        assert_eq!(MessageAck::TYPE.model_name(), "MessageAck");
    }

    #[test]
    fn payload_type_sets() {
        assert!(
            PayloadType::McpResourceData.is_response() && !PayloadType::TaskRequest.is_response()
        );
        let changing: Vec<_> = PayloadType::ALL
            .into_iter()
            .filter(|t| t.is_state_changing())
            .collect();
        assert_eq!(
            changing,
            [
                PayloadType::TaskRequest,
                PayloadType::TaskCancel,
                PayloadType::MessageSend,
                PayloadType::StateRestore
            ]
        );
        assert_eq!(PayloadType::MessageAck.to_string(), "MessageAck");
    }
}
