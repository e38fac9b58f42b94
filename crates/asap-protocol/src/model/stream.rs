//! `TaskStream`, the 2.x payload of one streamed chunk of a task's output
//! (`POST /asap/stream`, `docs/asap-2.md` sections 3 and 7).
//!
//! It is not in the 1.1 payload table ([`PayloadType`](super::PayloadType)): a 1.1 peer
//! never sends it, and 1.1 envelopes keep treating it as an unknown, free-form payload.
//!
//! ```
//! use asap_protocol::model::{Model, TaskStatus, TaskStream};
//!
//! let last = TaskStream::new("world\n").progress(1.0).last(TaskStatus::Completed);
//! assert_eq!(last.to_json(), r#"{"chunk":"world\n","progress":1.0,"final":true,"status":"completed"}"#);
//! assert_eq!(TaskStream::from_json(br#"{"progress": "0.5"}"#).unwrap().progress, Some(0.5));
//! ```

use serde_json::Value;

use super::enums::TaskStatus;
use super::macros::model;
use super::validation::{Checked, ErrorKind, Loc, boolean, fail, string};

/// The `payload_type` the 2.5.10 reference gives `TaskStream` envelopes.
pub const TASK_STREAM: &str = "TaskStream";

/// The 2.5.10 reference's key for a `payload_type`: lower case, letters and digits only
/// (`task.stream`, `TaskStream` and `task_stream` are all `taskstream`).
pub fn normalized_payload_type(payload_type: &str) -> String {
    payload_type
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Whether an envelope of this `payload_type`, received on a stream, must carry the
/// request's id as its `correlation_id` (the reference's `STREAM_BOUND_PAYLOAD_KEYS`:
/// the response payloads and `TaskStream`, by normalised key).
pub fn is_stream_bound(payload_type: &str) -> bool {
    matches!(
        normalized_payload_type(payload_type).as_str(),
        "taskresponse" | "mcptoolresult" | "mcpresourcedata" | "taskstream"
    )
}

/// A float in pydantic's lax mode: JSON numbers, booleans, and strings such as
/// `" 0.5 "`, `".5"`, `"1e-1"` or `"inf"`.
pub(crate) fn lax_float(value: &Value, loc: &Loc<'_>) -> Checked<f64> {
    match value {
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Number(n) => Ok(n.to_string().parse().unwrap_or(f64::NAN)),
        Value::String(s) => {
            let trimmed = s.trim();
            let digits_around = |i: usize| {
                let bytes = trimmed.as_bytes();
                i > 0
                    && bytes[i - 1].is_ascii_digit()
                    && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            };
            let underscores_ok = trimmed
                .bytes()
                .enumerate()
                .all(|(i, b)| b != b'_' || digits_around(i));
            let clean: String = trimmed.chars().filter(|c| *c != '_').collect();
            match clean.parse::<f64>() {
                Ok(f) if underscores_ok => Ok(f),
                _ => fail(ErrorKind::FloatParsing, loc, value),
            }
        }
        _ => fail(ErrorKind::FloatType, loc, value),
    }
}

/// `progress`: a float from 0 to 1 (NaN fails the upper bound, as in pydantic).
fn progress(value: &Value, loc: &Loc<'_>) -> Checked<f64> {
    let f = lax_float(value, loc)?;
    if f < 0.0 {
        fail(ErrorKind::GreaterThanEqualFloat { ge: 0 }, loc, value)
    } else if f <= 1.0 {
        Ok(f)
    } else {
        fail(ErrorKind::LessThanEqualFloat { le: 1 }, loc, value)
    }
}

model! {
    /// One chunk of a task's streamed output (`TaskStream`, 2.x): sent as an envelope
    /// whose `correlation_id` is the request's id.
    pub struct TaskStream {
        /// The text of this chunk (default `""`).
        #[serde(default)]
        pub chunk: String = defaulted(String::new, string),
        /// How far the task is, from 0 to 1.
        #[serde(default)]
        #[schemars(range(min = 0, max = 1))]
        pub progress: Option<f64> = optional(progress),
        /// Whether this is the last chunk (the wire member `final`).
        #[serde(rename = "final", default)]
        pub is_final as "final": bool = defaulted(|| false, boolean),
        /// The task's status (`working` until the last chunk, typically `completed`).
        #[serde(default)]
        pub status: Option<TaskStatus> = optional(TaskStatus::validate),
    }
}

impl TaskStream {
    /// A chunk of text, with no progress or status, not the last.
    pub fn new(chunk: impl Into<String>) -> Self {
        Self {
            chunk: chunk.into(),
            progress: None,
            is_final: false,
            status: None,
        }
    }

    /// Sets `progress` (clamped to 0..1; NaN becomes 0).
    #[must_use]
    pub fn progress(mut self, progress: f64) -> Self {
        self.progress = Some(if progress.is_nan() {
            0.0
        } else {
            progress.clamp(0.0, 1.0)
        });
        self
    }

    /// Sets `status`.
    #[must_use]
    pub fn status(mut self, status: TaskStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Marks this chunk as the last one, with the task's final `status`.
    #[must_use]
    pub fn last(mut self, status: TaskStatus) -> Self {
        self.is_final = true;
        self.status = Some(status);
        self
    }

    /// The payload as the free-form object an envelope carries.
    pub fn to_object(&self) -> crate::json::JsonObject {
        match super::Model::to_value(self) {
            Value::Object(map) => map,
            _ => unreachable!("TaskStream serializes to an object"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use serde_json::json;

    fn errors(value: Value) -> Vec<(String, Vec<String>, String)> {
        TaskStream::from_value(&value)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| {
                let loc = e.loc.iter().map(ToString::to_string).collect();
                (e.kind.type_name().to_owned(), loc, e.kind.message())
            })
            .collect()
    }

    fn dumped(value: Value) -> String {
        TaskStream::from_value(&value).unwrap().to_json()
    }

    #[test]
    fn defaults_and_lax_values_as_the_reference_dumps_them() {
        // Each pair was checked against `TaskStream.model_validate(...).model_dump_json()`
        // of asap-protocol 2.5.10.
        for (input, expected) in [
            (
                json!({}),
                r#"{"chunk":"","progress":null,"final":false,"status":null}"#,
            ),
            (
                json!({"progress": true}),
                r#"{"chunk":"","progress":1.0,"final":false,"status":null}"#,
            ),
            (
                json!({"progress": "0.5"}),
                r#"{"chunk":"","progress":0.5,"final":false,"status":null}"#,
            ),
            (
                json!({"progress": " .5 "}),
                r#"{"chunk":"","progress":0.5,"final":false,"status":null}"#,
            ),
            (
                json!({"progress": 1}),
                r#"{"chunk":"","progress":1.0,"final":false,"status":null}"#,
            ),
            (
                json!({"final": "yes", "status": "working", "chunk": "h\u{e9}"}),
                "{\"chunk\":\"h\u{e9}\",\"progress\":null,\"final\":true,\"status\":\"working\"}",
            ),
        ] {
            assert_eq!(dumped(input.clone()), expected, "{input}");
        }
    }

    #[test]
    fn invalid_members_get_the_reference_errors() {
        let greater = "Input should be less than or equal to 1".to_owned();
        for bad in [json!(2), json!("inf"), json!("Infinity"), json!("nan")] {
            let found = errors(json!({ "progress": bad }));
            assert_eq!(
                found,
                [(
                    "less_than_equal".into(),
                    vec!["progress".into()],
                    greater.clone()
                )],
                "{bad}"
            );
        }
        assert_eq!(errors(json!({"progress": -0.1}))[0].0, "greater_than_equal");
        assert_eq!(errors(json!({"progress": "abc"}))[0].0, "float_parsing");
        assert_eq!(errors(json!({"progress": "0__5"}))[0].0, "float_parsing");
        assert_eq!(errors(json!({"progress": []}))[0].0, "float_type");
        assert_eq!(errors(json!({"chunk": null}))[0].0, "string_type");
        assert_eq!(errors(json!({"status": "WORKING"}))[0].0, "enum");
        assert_eq!(
            errors(json!({"extra": 1})),
            [(
                "extra_forbidden".into(),
                vec!["extra".into()],
                "Extra inputs are not permitted".into()
            )]
        );
    }

    #[test]
    fn builders_and_the_stream_bound_payload_types() {
        let chunk = TaskStream::new("a ")
            .progress(1.5)
            .status(TaskStatus::Working);
        assert_eq!(chunk.progress, Some(1.0));
        assert!(!chunk.is_final);
        assert_eq!(TaskStream::new("").progress(f64::NAN).progress, Some(0.0));
        assert_eq!(chunk.to_object()["status"], "working");
        for bound in [
            "TaskStream",
            "task.stream",
            "task_response",
            "McpToolResult",
            "mcp.resource_data",
        ] {
            assert!(is_stream_bound(bound), "{bound}");
        }
        for free in [
            "task.request",
            "task.update",
            "MessageAck",
            "state.snapshot",
        ] {
            assert!(!is_stream_bound(free), "{free}");
        }
    }
}
