//! The envelope that wraps every ASAP message (wire spec section 4).

use serde_json::Value;

use super::ids::generate_id;
use super::macros::model;
use super::payloads::{Payload, PayloadError, PayloadModel, PayloadType};
use super::timestamp::Timestamp;
use super::urn::validate_agent_urn;
use super::validation::{
    Checked, ErrorKind, Loc, ValidationError, boolean, fail, object, rule, string,
};
use crate::json::JsonObject;

/// The protocol version that asap-protocol 1.1.0 sends and advertises everywhere.
pub const ASAP_PROTOCOL_VERSION: &str = "0.1";

/// The ASAP release line whose wire format this crate speaks.
pub const WIRE_RELEASE: &str = "1.1";

/// The version of the reference implementation (the Python package `asap-protocol`)
/// this crate is byte-compatible with and tested against.
pub const REFERENCE_VERSION: &str = "1.1.0";

/// Whether the reference requires an envelope of this `payload_type` to carry a
/// `correlation_id` when it *receives* it: only the model-name spelling of a response
/// payload (`TaskResponse`, `McpToolResult`, `McpResourceData`), not `task.response`.
fn correlated_on_receive(payload_type: &str) -> bool {
    PayloadType::ALL
        .into_iter()
        .any(|t| t.is_response() && t.model_name() == payload_type)
}

/// Reads an agent URN member: a string that satisfies [`validate_agent_urn`].
pub(crate) fn agent_urn(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |urn| {
        validate_agent_urn(urn)
    })
}

fn check_correlation(envelope: &Envelope, input: &Value, loc: &Loc<'_>) -> Checked<()> {
    let payload_type = envelope.payload_type.as_str();
    if correlated_on_receive(payload_type)
        && envelope.correlation_id.as_deref().unwrap_or("").is_empty()
    {
        let message = format!("{payload_type} must have correlation_id for request tracking");
        return fail(ErrorKind::ValueError { message }, loc, input);
    }
    Ok(())
}

model! {
    /// An ASAP message: routing, correlation and tracing metadata around a payload.
    ///
    /// All 11 members are always written, in this order. `id` and `timestamp` are
    /// generated when absent or `null` (a new ULID and the current UTC time). Any
    /// string is accepted as `id`, `asap_version` and `payload_type`; `sender` and
    /// `recipient` must be agent URNs. `payload` is a free-form object here: turn it
    /// into a typed payload with [`Envelope::parse_payload`] or
    /// [`Envelope::payload_as`].
    pub struct Envelope check check_correlation {
        /// Unique envelope id (a ULID when generated; any string is accepted).
        #[schemars(with = "Option<String>")]
        pub id: String = generated(generate_id, string),
        /// Protocol version; `"0.1"` in release 1.1.0, never checked.
        pub asap_version: String = required(string),
        /// When the message was created.
        #[schemars(with = "Option<Timestamp>")]
        pub timestamp: Timestamp = generated(Timestamp::now, Timestamp::validate),
        /// The sending agent's URN.
        pub sender: String = required(agent_urn),
        /// The receiving agent's URN.
        pub recipient: String = required(agent_urn),
        /// Which payload this is (`task.request`, ...); dispatch matches it exactly.
        pub payload_type: String = required(string),
        /// The payload, as a free-form object.
        pub payload: JsonObject = required(object),
        /// The id of the envelope this one answers.
        #[serde(default)]
        pub correlation_id: Option<String> = optional(string),
        /// Free-form trace id; 32 hex characters take part in trace propagation.
        #[serde(default)]
        pub trace_id: Option<String> = optional(string),
        /// Whether the receiver must acknowledge it (WebSocket, ADR-16).
        #[serde(default)]
        pub requires_ack: bool = defaulted(|| false, boolean),
        /// Free-form extensions; `nonce`, `trace_id` and `span_id` are reserved.
        #[serde(default)]
        pub extensions: Option<JsonObject> = optional(object),
    }
}

/// Why an envelope may not be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// A response payload without the id of the request it answers.
    #[error("{0} must have correlation_id for request tracking")]
    MissingCorrelationId(String),
    /// `sender` or `recipient` is not an agent URN.
    #[error("{0}")]
    InvalidUrn(String),
}

impl Envelope {
    /// A new envelope from `sender` to `recipient` carrying `payload`, with a fresh id,
    /// the current time, protocol version `"0.1"` and the payload's canonical type name.
    pub fn new(
        sender: impl Into<String>,
        recipient: impl Into<String>,
        payload: impl Into<Payload>,
    ) -> Self {
        let payload = payload.into();
        Self::raw(
            sender,
            recipient,
            payload.payload_type().as_str(),
            payload.to_object(),
        )
    }

    /// A new envelope carrying any `payload_type` with a free-form `payload` (for
    /// payload types this crate does not model), with a fresh id, the current time and
    /// protocol version `"0.1"`.
    ///
    /// ```
    /// use asap_protocol::model::Envelope;
    /// let e = Envelope::raw("urn:asap:agent:a", "urn:asap:agent:b", "state.snapshot", serde_json::Map::new());
    /// assert_eq!(e.payload_type, "state.snapshot");
    /// ```
    pub fn raw(
        sender: impl Into<String>,
        recipient: impl Into<String>,
        payload_type: impl Into<String>,
        payload: JsonObject,
    ) -> Self {
        Self {
            id: generate_id(),
            asap_version: ASAP_PROTOCOL_VERSION.to_owned(),
            timestamp: Timestamp::now(),
            sender: sender.into(),
            recipient: recipient.into(),
            payload_type: payload_type.into(),
            payload,
            correlation_id: None,
            trace_id: None,
            requires_ack: false,
            extensions: None,
        }
    }

    /// The answer to `request`: sender and recipient swapped, `correlation_id` set to
    /// the request's id, `trace_id` carried over.
    ///
    /// ```
    /// use asap_protocol::model::{Envelope, TaskRequest, TaskResponse, TaskStatus};
    /// let request = Envelope::new("urn:asap:agent:a", "urn:asap:agent:b",
    ///     TaskRequest::new("c", "echo", serde_json::json!({})));
    /// let response = Envelope::response_to(&request, TaskResponse::new("task_1", TaskStatus::Completed));
    /// assert_eq!(response.correlation_id.as_deref(), Some(request.id.as_str()));
    /// assert_eq!(response.recipient, "urn:asap:agent:a");
    /// ```
    pub fn response_to(request: &Envelope, payload: impl Into<Payload>) -> Self {
        let mut response = Self::new(request.recipient.clone(), request.sender.clone(), payload);
        response.correlation_id = Some(request.id.clone());
        response.trace_id.clone_from(&request.trace_id);
        response
    }

    /// Sets `correlation_id`.
    pub fn with_correlation_id(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets `trace_id`.
    pub fn with_trace_id(mut self, trace_id: impl Into<String>) -> Self {
        self.trace_id = Some(trace_id.into());
        self
    }

    /// Sets `requires_ack`.
    pub fn with_requires_ack(mut self, requires_ack: bool) -> Self {
        self.requires_ack = requires_ack;
        self
    }

    /// Sets `extensions`.
    pub fn with_extensions(mut self, extensions: JsonObject) -> Self {
        self.extensions = Some(extensions);
        self
    }

    /// The known payload type named by `payload_type`, in either spelling.
    pub fn known_payload_type(&self) -> Option<PayloadType> {
        PayloadType::from_wire(&self.payload_type)
    }

    /// The payload as its typed model, chosen by `payload_type`.
    pub fn parse_payload(&self) -> Result<Payload, PayloadError> {
        Payload::parse(&self.payload_type, &self.payload)
    }

    /// The payload validated as `T`, whatever `payload_type` says.
    pub fn payload_as<T: PayloadModel>(&self) -> Result<T, ValidationError> {
        T::from_value(&Value::Object(self.payload.clone()))
    }

    /// Checks the rules a sender must follow, stricter than what a receiver enforces:
    /// response payloads (`task.response`, `mcp.tool_result`, `mcp.resource_data` and
    /// their PascalCase spellings) need a non-empty `correlation_id`, and both URNs
    /// must be valid.
    ///
    /// ```
    /// use asap_protocol::model::{Envelope, TaskResponse, TaskStatus};
    /// let e = Envelope::new("urn:asap:agent:a", "urn:asap:agent:b", TaskResponse::new("t", TaskStatus::Completed));
    /// assert!(e.check_for_sending().is_err());
    /// assert!(e.with_correlation_id("01J...").check_for_sending().is_ok());
    /// ```
    pub fn check_for_sending(&self) -> Result<(), SendError> {
        validate_agent_urn(&self.sender).map_err(SendError::InvalidUrn)?;
        validate_agent_urn(&self.recipient).map_err(SendError::InvalidUrn)?;
        let is_response = correlated_on_receive(&self.payload_type)
            || self
                .known_payload_type()
                .is_some_and(PayloadType::is_response);
        if is_response && self.correlation_id.as_deref().unwrap_or("").is_empty() {
            return Err(SendError::MissingCorrelationId(self.payload_type.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, TaskRequest, TaskResponse, TaskStatus};
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "id": "01KF0ZQ8ZB5M3X0V6G9N4T2W1A",
            "asap_version": "0.1",
            "timestamp": "2026-01-15T10:30:00.123456Z",
            "sender": "urn:asap:agent:coordinator",
            "recipient": "urn:asap:agent:research-v1",
            "payload_type": "task.request",
            "payload": {"conversation_id": "conv_1", "skill_id": "web_research", "input": {"q": "x"}},
            "correlation_id": null,
            "trace_id": "trace-01HX5K",
            "requires_ack": false,
            "extensions": {"nonce": "n-1"}
        })
    }

    fn errors(value: &Value) -> Vec<(String, String, String)> {
        Envelope::from_value(value)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| {
                (
                    e.kind.type_name().to_owned(),
                    serde_json::to_string(&e.loc).unwrap(),
                    e.kind.message(),
                )
            })
            .collect()
    }

    fn one(value: &Value) -> (String, String, String) {
        let mut all = errors(value);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn round_trips_byte_for_byte() {
        let text = crate::json::to_model_json(&valid());
        let envelope = Envelope::from_json(text.as_bytes()).unwrap();
        assert_eq!(envelope.to_json(), text);
    }

    #[test]
    fn fills_every_optional_member_in_order() {
        let mut input = valid();
        let map = input.as_object_mut().unwrap();
        for key in [
            "id",
            "timestamp",
            "correlation_id",
            "trace_id",
            "requires_ack",
            "extensions",
        ] {
            map.remove(key);
        }
        let envelope = Envelope::from_value(&input).unwrap();
        assert_eq!(envelope.id.len(), 26);
        let value = envelope.to_value();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "asap_version",
                "timestamp",
                "sender",
                "recipient",
                "payload_type",
                "payload",
                "correlation_id",
                "trace_id",
                "requires_ack",
                "extensions"
            ]
        );
        assert!(envelope.to_json().ends_with(
            r#""correlation_id":null,"trace_id":null,"requires_ack":false,"extensions":null}"#
        ));
    }

    #[test]
    fn null_id_and_timestamp_are_generated_and_empty_id_kept() {
        let mut input = valid();
        input["id"] = Value::Null;
        input["timestamp"] = Value::Null;
        let envelope = Envelope::from_value(&input).unwrap();
        assert_eq!(envelope.id.len(), 26);
        assert!(envelope.timestamp.to_string().ends_with('Z'));
        input["id"] = json!("");
        assert_eq!(Envelope::from_value(&input).unwrap().id, "");
    }

    #[test]
    fn missing_members() {
        for member in [
            "asap_version",
            "sender",
            "recipient",
            "payload_type",
            "payload",
        ] {
            let mut input = valid();
            input.as_object_mut().unwrap().remove(member);
            assert_eq!(
                one(&input),
                (
                    "missing".into(),
                    format!("[\"{member}\"]"),
                    "Field required".into()
                )
            );
        }
    }

    #[test]
    fn unknown_member() {
        let mut input = valid();
        input["priority"] = json!("high");
        assert_eq!(
            one(&input),
            (
                "extra_forbidden".into(),
                r#"["priority"]"#.into(),
                "Extra inputs are not permitted".into()
            )
        );
    }

    #[test]
    fn wrong_types() {
        let cases = [
            ("id", json!(42), "string_type"),
            ("asap_version", json!(0.1), "string_type"),
            ("correlation_id", json!(7), "string_type"),
            ("extensions", json!([1]), "dict_type"),
            ("payload", json!([]), "dict_type"),
            ("payload", Value::Null, "dict_type"),
            ("requires_ack", Value::Null, "bool_type"),
            ("requires_ack", json!(2), "bool_parsing"),
            ("timestamp", json!(true), "datetime_type"),
            (
                "timestamp",
                json!("not a time"),
                "datetime_from_date_parsing",
            ),
            ("payload_type", json!(5), "string_type"),
        ];
        for (member, bad, kind) in cases {
            let mut input = valid();
            input[member] = bad;
            let (found, loc, _) = one(&input);
            assert_eq!(
                (found.as_str(), loc),
                (kind, format!("[\"{member}\"]")),
                "{member}"
            );
        }
    }

    #[test]
    fn urn_errors_are_value_errors_with_the_reference_message() {
        let mut input = valid();
        input["sender"] = json!("urn:asap:agent:Client");
        assert_eq!(
            one(&input),
            (
                "value_error".into(),
                r#"["sender"]"#.into(),
                "Value error, Agent ID must follow URN format 'urn:asap:agent:{name}', got: urn:asap:agent:Client".into()
            )
        );
        input["recipient"] = json!(format!("urn:asap:agent:{}", "a".repeat(300)));
        let all = errors(&input);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1].2,
            "Value error, Agent URN must be at most 256 characters, got 315"
        );
    }

    #[test]
    fn correlation_rule_on_receive_only_for_pascal_case() {
        let mut input = valid();
        input["payload_type"] = json!("TaskResponse");
        assert_eq!(
            one(&input),
            (
                "value_error".into(),
                "[]".into(),
                "Value error, TaskResponse must have correlation_id for request tracking".into()
            )
        );
        input["correlation_id"] = json!("");
        assert_eq!(one(&input).0, "value_error");
        input["correlation_id"] = json!("01X");
        assert!(Envelope::from_value(&input).is_ok());
        input["payload_type"] = json!("task.response");
        input["correlation_id"] = Value::Null;
        assert!(Envelope::from_value(&input).is_ok());
    }

    #[test]
    fn correlation_rule_on_send_covers_dotted_names() {
        let response = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskResponse::new("t", TaskStatus::Completed),
        );
        assert_eq!(
            response.check_for_sending(),
            Err(SendError::MissingCorrelationId("task.response".into()))
        );
        let request = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:B",
            TaskRequest::new("c", "s", json!({})),
        );
        assert!(matches!(
            request.check_for_sending(),
            Err(SendError::InvalidUrn(_))
        ));
    }

    #[test]
    fn builders_and_typed_payloads() {
        let e = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskRequest::new("c", "echo", json!({"x": 1})),
        )
        .with_trace_id("abc")
        .with_requires_ack(true)
        .with_extensions(json!({"nonce": "n"}).as_object().unwrap().clone());
        assert_eq!(e.known_payload_type(), Some(PayloadType::TaskRequest));
        match e.parse_payload().unwrap() {
            Payload::TaskRequest(request) => assert_eq!(request.skill_id, "echo"),
            other => panic!("unexpected {other:?}"),
        }
        let r = Envelope::response_to(&e, TaskResponse::new("t", TaskStatus::Completed));
        assert_eq!(r.trace_id.as_deref(), Some("abc"));
        assert_eq!(
            r.with_correlation_id("x").correlation_id.as_deref(),
            Some("x")
        );
        let parsed: Envelope = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(parsed, e);
        assert!(serde_json::from_str::<Envelope>("{}").is_err());
    }
}
