//! The 2.x payload rules (`docs/asap-2.md` sections 2 and 3): the typed
//! `TaskRequest.config` ([`TaskRequestConfig`]) and `TaskResponse.metrics`
//! ([`TaskMetrics`]), and the envelope-level typing a 2.x exchange applies.
//!
//! In 1.1 a payload is a free-form object until a handler types it; `config` and
//! `metrics` are free-form objects. asap-protocol 2.5.10 types every payload whose
//! normalised `payload_type` it knows (`task.request`, `TaskRequest`, `TASK-REQUEST` are
//! all `taskrequest`) while it reads the envelope, with `config` and `metrics` typed, and
//! writes typed payloads with every member. [`Envelope::from_value_in`] reads an
//! envelope either way; [`typed_payload`] gives the 2.x bytes of a payload.
//!
//! The Rust types do not fork: [`TaskRequest::config`] and [`TaskResponse::metrics`]
//! stay objects, read as typed values with [`TaskRequest::typed_config`] and
//! [`TaskResponse::typed_metrics`] and set with [`TaskRequest::with_config`] and
//! [`TaskResponse::with_metrics`].
//!
//! ```
//! use asap_protocol::model::{Dialect, Envelope, Model, TaskRequestConfig};
//! use serde_json::json;
//!
//! let config = TaskRequestConfig { timeout_seconds: Some(5), ..Default::default() };
//! assert_eq!(
//!     config.to_json(),
//!     r#"{"timeout_seconds":5,"priority":null,"idempotency_key":null,"streaming":null,"persist_state":null,"model":null,"temperature":null}"#
//! );
//!
//! let envelope = json!({
//!     "asap_version": "0.1", "sender": "urn:asap:agent:a", "recipient": "urn:asap:agent:b",
//!     "payload_type": "task.request",
//!     "payload": {"conversation_id": "c", "skill_id": "echo", "input": {}, "config": {"foo": 1}},
//! });
//! // 1.1: `config` is free-form.
//! assert!(Envelope::from_value_in(&envelope, Dialect::V1_1).is_ok());
//! // 2.x: unknown members of `config` are refused, located relative to the payload.
//! let error = Envelope::from_value_in(&envelope, Dialect::V2_2).unwrap_err();
//! assert_eq!(error.to_json()[0]["loc"], json!(["config", "foo"]));
//! ```

use serde_json::Value;

use super::enums::TaskStatus;
use super::envelope::Envelope;
use super::macros::{deserialize_by_model, model};
use super::payloads::{PayloadType, TaskRequest, TaskResponse};
use super::stream::{TaskStream, lax_float, normalized_payload_type};
use super::validation::{
    Checked, ErrorKind, Fields, Loc, ValidationError, boolean, bounded_integer, fail, object,
    string,
};
use super::{Dialect, Model};
use crate::json::JsonObject;

/// `timeout_seconds`: an integer of at least 1.
fn timeout_seconds(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(1), None)
}

/// A count or a duration: an integer of at least 0.
fn non_negative(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(0), None)
}

/// `temperature`: a float from 0 to 2 (NaN fails the upper bound, as in pydantic).
fn temperature(value: &Value, loc: &Loc<'_>) -> Checked<f64> {
    let f = lax_float(value, loc)?;
    if f < 0.0 {
        fail(ErrorKind::GreaterThanEqualFloat { ge: 0 }, loc, value)
    } else if f <= 2.0 {
        Ok(f)
    } else {
        fail(ErrorKind::LessThanEqualFloat { le: 2 }, loc, value)
    }
}

model! {
    /// `TaskRequest.config` as 2.x types it: every member optional, unknown members
    /// refused. Written with every member (`null` when unset), as the 2.5.10 client
    /// sends it.
    #[derive(Default)]
    pub struct TaskRequestConfig {
        /// How long the task may run, in seconds (at least 1).
        #[serde(default)]
        pub timeout_seconds: Option<i64> = optional(timeout_seconds),
        /// A priority such as `low`, `normal` or `high` (free text).
        #[serde(default)]
        pub priority: Option<String> = optional(string),
        /// A key that makes a repeated request run once.
        #[serde(default)]
        pub idempotency_key: Option<String> = optional(string),
        /// Whether progress should be streamed.
        #[serde(default)]
        pub streaming: Option<bool> = optional(boolean),
        /// Whether state snapshots should be kept.
        #[serde(default)]
        pub persist_state: Option<bool> = optional(boolean),
        /// The language model to use.
        #[serde(default)]
        pub model: Option<String> = optional(string),
        /// The language model's temperature, from 0 to 2.
        #[serde(default)]
        #[schemars(range(min = 0, max = 2))]
        pub temperature: Option<f64> = optional(temperature),
    }
}

/// `TaskResponse.metrics` as 2.x types it: five optional counters, all at least 0, and
/// any other members kept as they are (`extra="allow"`), written after the declared
/// ones in the order they came.
///
/// ```
/// use asap_protocol::model::{Model, TaskMetrics};
///
/// let metrics = TaskMetrics::from_json(br#"{"cost": 1, "duration_ms": 5}"#).unwrap();
/// assert_eq!(metrics.duration_ms, Some(5));
/// assert_eq!(
///     metrics.to_json(),
///     r#"{"duration_ms":5,"tokens_in":null,"tokens_out":null,"tokens_used":null,"api_calls":null,"cost":1}"#
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct TaskMetrics {
    /// How long the task ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: Option<i64>,
    /// Input tokens.
    #[serde(default)]
    pub tokens_in: Option<i64>,
    /// Output tokens.
    #[serde(default)]
    pub tokens_out: Option<i64>,
    /// Tokens in all (when input and output are not told apart).
    #[serde(default)]
    pub tokens_used: Option<i64>,
    /// Calls made to other APIs.
    #[serde(default)]
    pub api_calls: Option<i64>,
    /// Any other metric, kept as sent.
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Model for TaskMetrics {
    const NAME: &'static str = "TaskMetrics";

    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        const WIRE_NAMES: &[&str] = &[
            "duration_ms",
            "tokens_in",
            "tokens_out",
            "tokens_used",
            "api_calls",
        ];
        let mut fields = Fields::new(value, loc, Self::NAME, WIRE_NAMES)?;
        let duration_ms = fields.optional("duration_ms", non_negative);
        let tokens_in = fields.optional("tokens_in", non_negative);
        let tokens_out = fields.optional("tokens_out", non_negative);
        let tokens_used = fields.optional("tokens_used", non_negative);
        let api_calls = fields.optional("api_calls", non_negative);
        let extra = fields.finish_allowing_extra()?;
        let read = "every member was read when finish_allowing_extra() succeeds";
        Ok(Self {
            duration_ms: duration_ms.expect(read),
            tokens_in: tokens_in.expect(read),
            tokens_out: tokens_out.expect(read),
            tokens_used: tokens_used.expect(read),
            api_calls: api_calls.expect(read),
            extra,
        })
    }
}

deserialize_by_model!(TaskMetrics);

/// The 2.x readings of the payloads whose members 2.x types differently; private, so the
/// public API keeps one `TaskRequest` and one `TaskResponse`.
mod typed {
    use super::*;

    model! {
        /// `TaskRequest` as 2.x reads it (`config` typed).
        pub struct TaskRequest2x named "TaskRequest" {
            /// See [`TaskRequest::conversation_id`].
            pub conversation_id: String = required(string),
            /// See [`TaskRequest::parent_task_id`].
            #[serde(default)]
            pub parent_task_id: Option<String> = optional(string),
            /// See [`TaskRequest::skill_id`].
            pub skill_id: String = required(string),
            /// See [`TaskRequest::input`].
            pub input: JsonObject = required(object),
            /// The typed options.
            #[serde(default)]
            pub config: Option<TaskRequestConfig> = optional(TaskRequestConfig::validate_at),
        }
    }

    model! {
        /// `TaskResponse` as 2.x reads it (`metrics` typed).
        pub struct TaskResponse2x named "TaskResponse" {
            /// See [`TaskResponse::task_id`].
            pub task_id: String = required(string),
            /// See [`TaskResponse::status`].
            pub status: TaskStatus = required(TaskStatus::validate),
            /// See [`TaskResponse::result`].
            #[serde(default)]
            pub result: Option<JsonObject> = optional(object),
            /// See [`TaskResponse::final_state`].
            #[serde(default)]
            pub final_state: Option<JsonObject> = optional(object),
            /// The typed metrics.
            #[serde(default)]
            pub metrics: Option<TaskMetrics> = optional(TaskMetrics::validate_at),
        }
    }
}

use typed::{TaskRequest2x, TaskResponse2x};

/// Validates `value` at `loc` with model `M` and returns its dump.
fn dump<M: Model>(value: &Value, loc: &Loc<'_>) -> Checked<Value> {
    M::validate_at(value, loc).map(|model| model.to_value())
}

/// The 2.x model for a normalised payload type key, as a validator returning the
/// typed dump; `None` for a payload type 2.x does not model (free-form).
pub(crate) fn typed_reader(key: &str) -> Option<fn(&Value, &Loc<'_>) -> Checked<Value>> {
    match key {
        "taskrequest" => Some(dump::<TaskRequest2x>),
        "taskresponse" => Some(dump::<TaskResponse2x>),
        "taskstream" => Some(dump::<TaskStream>),
        _ => {
            let kind = PayloadType::ALL
                .into_iter()
                .find(|t| normalized_payload_type(t.model_name()) == key)?;
            Some(match kind {
                PayloadType::TaskRequest | PayloadType::TaskResponse => {
                    unreachable!("typed above")
                }
                PayloadType::TaskUpdate => dump::<super::TaskUpdate>,
                PayloadType::TaskCancel => dump::<super::TaskCancel>,
                PayloadType::MessageSend => dump::<super::MessageSend>,
                PayloadType::StateQuery => dump::<super::StateQuery>,
                PayloadType::StateRestore => dump::<super::StateRestore>,
                PayloadType::ArtifactNotify => dump::<super::ArtifactNotify>,
                PayloadType::McpToolCall => dump::<super::McpToolCall>,
                PayloadType::McpToolResult => dump::<super::McpToolResult>,
                PayloadType::McpResourceFetch => dump::<super::McpResourceFetch>,
                PayloadType::McpResourceData => dump::<super::McpResourceData>,
                PayloadType::MessageAck => dump::<super::MessageAck>,
            })
        }
    }
}

/// A payload as 2.x types it: `Ok(None)` when 2.x does not model its `payload_type`
/// (the payload stays free-form), `Ok(Some(dump))` with every member of the model
/// (absent ones `null` or their default, `config` and `metrics` expanded), or the
/// validation failures, located relative to the payload as the reference reports them.
///
/// ```
/// use asap_protocol::model::typed_payload;
/// use serde_json::json;
///
/// let payload = json!({"task_id": "t", "status": "completed", "metrics": {"duration_ms": 5}});
/// let typed = typed_payload("TASK_RESPONSE", payload.as_object().unwrap()).unwrap().unwrap();
/// assert_eq!(typed["metrics"]["tokens_in"], json!(null));
/// assert_eq!(typed_payload("state.snapshot", payload.as_object().unwrap()).unwrap(), None);
/// ```
pub fn typed_payload(
    payload_type: &str,
    payload: &JsonObject,
) -> Result<Option<Value>, ValidationError> {
    let Some(read) = typed_reader(&normalized_payload_type(payload_type)) else {
        return Ok(None);
    };
    let value = Value::Object(payload.clone());
    read(&value, &Loc::Root)
        .map(Some)
        .map_err(|errors| ValidationError {
            title: model_title(payload_type),
            errors,
        })
}

/// The reference's class name for a typed payload (the title of its errors).
pub(crate) fn model_title(payload_type: &str) -> &'static str {
    match normalized_payload_type(payload_type).as_str() {
        "taskstream" => TaskStream::NAME,
        key => PayloadType::ALL
            .into_iter()
            .find(|t| normalized_payload_type(t.model_name()) == key)
            .map_or("Envelope", PayloadType::model_name),
    }
}

/// The members of 2.5.10's `payload` union (`PayloadType | dict[str, Any]`), in its
/// order, as pydantic labels them in errors.
const PAYLOAD_UNION: [(&str, &str); 14] = [
    ("TaskRequest", "TaskRequest"),
    ("TaskStream", "TaskStream"),
    ("TaskResponse", "TaskResponse"),
    ("TaskUpdate", "TaskUpdate"),
    ("TaskCancel", "TaskCancel"),
    ("MessageSend", "MessageSend"),
    ("StateQuery", "StateQuery"),
    ("StateRestore", "StateRestore"),
    ("ArtifactNotify", "ArtifactNotify"),
    ("McpToolCall", "McpToolCall"),
    (
        "McpToolResult",
        "function-after[validate_result_error_exclusivity(), McpToolResult]",
    ),
    ("McpResourceFetch", "McpResourceFetch"),
    ("McpResourceData", "McpResourceData"),
    ("MessageAck", "MessageAck"),
];

/// A `payload` that is not an object fails every member of 2.5.10's union: one
/// `model_type` per payload model and a `dict_type`, each under its member's label.
fn union_errors(mut error: ValidationError) -> ValidationError {
    let is_payload = |detail: &super::ErrorDetail| {
        detail.kind == ErrorKind::DictType
            && matches!(detail.loc.as_slice(), [super::LocItem::Key(k)] if k == "payload")
    };
    let Some(at) = error.errors.iter().position(is_payload) else {
        return error;
    };
    let input = error.errors[at].input.clone();
    let payload = Loc::Field(&Loc::Root, "payload");
    let mut expanded: Vec<super::ErrorDetail> = PAYLOAD_UNION
        .iter()
        .map(|(class_name, label)| {
            let loc = Loc::Field(&payload, label);
            super::ErrorDetail::new(ErrorKind::ModelType { class_name }, &loc, &input)
        })
        .collect();
    let dict = Loc::Field(&payload, "dict[str,any]");
    expanded.push(super::ErrorDetail::new(ErrorKind::DictType, &dict, &input));
    error.errors.splice(at..=at, expanded);
    error
}

/// The payload model 2.5.10's smart-mode union picks for a payload whose
/// `payload_type` it does not know: among the payload models the object satisfies
/// without any coercion (strict mode: no enum from a string, no `"5"` for 5, no 2.0
/// for an integer), the one with the most members set (at least one), the first on a
/// tie; none, and the payload stays a free-form object. Returns its typed dump.
fn union_pick(payload: &JsonObject) -> Option<Value> {
    let input = Value::Object(payload.clone());
    let mut best: Option<(usize, Value)> = None;
    for (class_name, _) in PAYLOAD_UNION {
        let key = normalized_payload_type(class_name);
        let read = typed_reader(&key).expect("every union member is a typed payload");
        let Ok(dump) = read(&input, &Loc::Root) else {
            continue;
        };
        let coerced_enum = enum_members(class_name)
            .iter()
            .any(|member| payload.get(*member).is_some_and(|v| !v.is_null()));
        if coerced_enum || !uncoerced(&input, &dump) {
            continue;
        }
        let set = payload.len();
        if set > 0 && best.as_ref().is_none_or(|(most, _)| set > *most) {
            best = Some((set, dump));
        }
    }
    best.map(|(_, dump)| dump)
}

/// The members of a payload model that are enumerations (which strict mode never
/// reads from a JSON string).
fn enum_members(class_name: &str) -> &'static [&'static str] {
    match class_name {
        "TaskStream" | "TaskResponse" => &["status"],
        "TaskUpdate" => &["update_type", "status"],
        "MessageSend" => &["role"],
        _ => &[],
    }
}

/// Whether `dump` holds every member of `input` as it was sent: the same value, or an
/// integer read as a float (which strict mode allows).
fn uncoerced(input: &Value, dump: &Value) -> bool {
    match (input, dump) {
        (Value::Object(sent), Value::Object(read)) => sent
            .iter()
            .all(|(key, value)| read.get(key).is_some_and(|r| uncoerced(value, r))),
        (Value::Array(sent), Value::Array(read)) => {
            sent.len() == read.len() && sent.iter().zip(read).all(|(s, r)| uncoerced(s, r))
        }
        (Value::Number(sent), Value::Number(read)) if read.is_f64() => {
            sent.as_f64() == read.as_f64()
        }
        _ => input == dump,
    }
}

/// The normalised payload types whose envelopes need a `correlation_id` in 2.x (the
/// reference's `CORRELATION_REQUIRED_PAYLOAD_KEYS`).
fn correlation_required(payload_type: &str) -> bool {
    matches!(
        normalized_payload_type(payload_type).as_str(),
        "taskresponse" | "taskstream" | "mcptoolresult" | "mcpresourcedata"
    )
}

impl Envelope {
    /// Reads an envelope in a dialect. 1.1: exactly [`Model::from_value`]. 2.x, as
    /// asap-protocol 2.5.10 reads it: first the payload, when its `payload_type`
    /// (normalised) is one 2.x models, with `config` and `metrics` typed; its failures
    /// alone are reported, located relative to the payload. Then the envelope's members;
    /// then the `correlation_id` rule, for every spelling of the response payloads and
    /// `TaskStream`. The envelope keeps the payload as sent (see [`typed_payload`] for
    /// its 2.x bytes).
    pub fn from_value_in(value: &Value, dialect: Dialect) -> Result<Self, ValidationError> {
        if !dialect.is_2x() {
            return Self::from_value(value);
        }
        if let (Some(Value::Object(payload)), Some(Value::String(payload_type))) =
            (value.get("payload"), value.get("payload_type"))
            && !payload_type.is_empty()
            && let Err(mut error) = typed_payload(payload_type, payload)
        {
            error.title = Self::NAME;
            return Err(error);
        }
        let envelope = Self::from_value(value).map_err(union_errors)?;
        if correlation_required(&envelope.payload_type)
            && envelope.correlation_id.as_deref().unwrap_or("").is_empty()
        {
            let message = format!(
                "{} must have correlation_id for request tracking",
                envelope.payload_type
            );
            return Err(ValidationError {
                title: Self::NAME,
                errors: fail::<()>(ErrorKind::ValueError { message }, &Loc::Root, value)
                    .unwrap_err(),
            });
        }
        Ok(envelope)
    }

    /// Puts the payload in the form a 2.x peer writes: a payload 2.x models gets every
    /// member (absent ones `null` or their default, `config` and `metrics` expanded),
    /// and so does a payload of another `payload_type` that 2.5.10's union reads as one
    /// of its models (the one with the most members it satisfies without coercion);
    /// other payloads stay as they are. Fails, leaving the envelope unchanged, when the
    /// payload does not satisfy its 2.x model.
    pub fn type_payload_2x(&mut self) -> Result<(), ValidationError> {
        let typed = match typed_payload(&self.payload_type, &self.payload)? {
            Some(typed) => Some(typed),
            None => union_pick(&self.payload),
        };
        if let Some(typed) = typed {
            self.payload = into_object(typed);
        }
        Ok(())
    }
}

impl TaskRequest {
    /// `config` read as 2.x types it (`None` when absent).
    pub fn typed_config(&self) -> Result<Option<TaskRequestConfig>, ValidationError> {
        self.config
            .as_ref()
            .map(|config| TaskRequestConfig::from_value(&Value::Object(config.clone())))
            .transpose()
    }

    /// Sets `config` from its typed form (every member written, as a 2.x peer does).
    #[must_use]
    pub fn with_config(mut self, config: TaskRequestConfig) -> Self {
        self.config = Some(into_object(config.to_value()));
        self
    }
}

impl TaskResponse {
    /// `metrics` read as 2.x types it (`None` when absent).
    pub fn typed_metrics(&self) -> Result<Option<TaskMetrics>, ValidationError> {
        self.metrics
            .as_ref()
            .map(|metrics| TaskMetrics::from_value(&Value::Object(metrics.clone())))
            .transpose()
    }

    /// Sets `metrics` from its typed form (every member written, extras after them).
    #[must_use]
    pub fn with_metrics(mut self, metrics: TaskMetrics) -> Self {
        self.metrics = Some(into_object(metrics.to_value()));
        self
    }
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("models serialize to objects"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(payload_type: &str, payload: Value) -> Value {
        json!({
            "id": "01JPROBEENVELOPE000000001", "asap_version": "0.1",
            "timestamp": "2026-12-06T08:58:34.478870Z",
            "sender": "urn:asap:agent:client", "recipient": "urn:asap:agent:echo-agent",
            "payload_type": payload_type, "payload": payload,
        })
    }

    #[test]
    fn an_unknown_payload_member_is_refused_only_in_2x_located_in_the_payload() {
        let doc = envelope(
            "task.request",
            json!({"conversation_id": "c", "skill_id": "echo", "input": {}, "bogus": 1}),
        );
        assert!(Envelope::from_value_in(&doc, Dialect::V1_1).is_ok());
        let error = Envelope::from_value_in(&doc, Dialect::V2_2).unwrap_err();
        assert_eq!(
            error.to_json(),
            json!([{"type": "extra_forbidden", "loc": ["bogus"], "msg": "Extra inputs are not permitted", "input": 1, "url": "https://errors.pydantic.dev/2.14/v/extra_forbidden"}])
        );
    }

    #[test]
    fn every_spelling_of_a_payload_type_is_typed_in_2x() {
        for spelling in [
            "task.request",
            "TaskRequest",
            "task_request",
            "TASK-REQUEST",
        ] {
            let doc = envelope(spelling, json!({"conversation_id": "c"}));
            let error = Envelope::from_value_in(&doc, Dialect::V2_1).unwrap_err();
            let locs: Vec<Value> = error
                .to_json()
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["loc"].clone())
                .collect();
            assert_eq!(
                locs,
                vec![json!(["skill_id"]), json!(["input"])],
                "{spelling}"
            );
        }
        let free = envelope("state.snapshot", json!({"anything": 1}));
        assert!(Envelope::from_value_in(&free, Dialect::V2_2).is_ok());
    }

    #[test]
    fn the_correlation_rule_covers_every_spelling_in_2x_only() {
        let doc = envelope(
            "task.response",
            json!({"task_id": "t", "status": "completed"}),
        );
        assert!(Envelope::from_value_in(&doc, Dialect::V1_1).is_ok());
        let error = Envelope::from_value_in(&doc, Dialect::V2_2).unwrap_err();
        let detail = &error.to_json()[0];
        assert_eq!(detail["type"], "value_error");
        assert_eq!(detail["loc"], json!([]));
        assert_eq!(
            detail["msg"],
            "Value error, task.response must have correlation_id for request tracking"
        );
        let stream = envelope("TaskStream", json!({"chunk": "x"}));
        assert!(Envelope::from_value_in(&stream, Dialect::V2_2).is_err());
    }

    #[test]
    fn a_payload_error_hides_the_envelope_errors_as_in_the_reference() {
        let mut doc = envelope("task.cancel", json!({}));
        doc["sender"] = json!("not-a-urn");
        let error = Envelope::from_value_in(&doc, Dialect::V2_2).unwrap_err();
        let locs: Vec<Value> = error
            .to_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["loc"].clone())
            .collect();
        assert_eq!(locs, vec![json!(["task_id"])]);
    }

    #[test]
    fn config_and_metrics_are_typed_with_their_bounds() {
        let bad = json!({"conversation_id": "c", "skill_id": "s", "input": {},
            "config": {"timeout_seconds": 0, "temperature": 2.5, "streaming": "maybe"}});
        let error = typed_payload("task.request", bad.as_object().unwrap()).unwrap_err();
        let types: Vec<(Value, Value)> = error
            .to_json()
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["type"].clone(), e["loc"].clone()))
            .collect();
        assert_eq!(
            types,
            vec![
                (
                    json!("greater_than_equal"),
                    json!(["config", "timeout_seconds"])
                ),
                (json!("bool_parsing"), json!(["config", "streaming"])),
                (json!("less_than_equal"), json!(["config", "temperature"])),
            ]
        );
        let not_object =
            json!({"conversation_id": "c", "skill_id": "s", "input": {}, "config": "x"});
        let error = typed_payload("task.request", not_object.as_object().unwrap()).unwrap_err();
        assert_eq!(error.to_json()[0]["type"], "model_type");
        assert_eq!(
            error.to_json()[0]["msg"],
            "Input should be a valid dictionary or instance of TaskRequestConfig"
        );
        let metrics =
            json!({"task_id": "t", "status": "failed", "metrics": {"api_calls": -1, "cost": 3}});
        let error = typed_payload("TaskResponse", metrics.as_object().unwrap()).unwrap_err();
        assert_eq!(error.to_json()[0]["loc"], json!(["metrics", "api_calls"]));
    }

    #[test]
    fn typed_accessors_round_trip() {
        let request = TaskRequest::new("c", "echo", json!({})).with_config(TaskRequestConfig {
            temperature: Some(0.5),
            ..TaskRequestConfig::default()
        });
        let config = request.typed_config().unwrap().unwrap();
        assert_eq!(config.temperature, Some(0.5));
        assert_eq!(request.config.as_ref().unwrap().len(), 7);
        let mut extra = JsonObject::new();
        extra.insert("cost".into(), json!(0.25));
        let response = TaskResponse::new("t", TaskStatus::Completed).with_metrics(TaskMetrics {
            tokens_in: Some(3),
            extra,
            ..TaskMetrics::default()
        });
        let metrics = response.typed_metrics().unwrap().unwrap();
        assert_eq!(metrics.tokens_in, Some(3));
        assert_eq!(metrics.extra["cost"], json!(0.25));
        let free = TaskRequest {
            config: Some(json!({"foo": 1}).as_object().unwrap().clone()),
            ..TaskRequest::new("c", "echo", json!({}))
        };
        assert!(free.typed_config().is_err());
    }
}
