//! The frames the server writes besides JSON-RPC answers (wire spec section 11.2), with
//! the reference's bytes: S2 (`json.dumps` defaults) for acks, pings and the rate-limit
//! error.

use serde_json::{Map, Value, json};

use crate::json;
use crate::model::{AckStatus, Envelope, Model};

/// `{"type": "ping"}`, the application heartbeat.
pub(crate) fn ping() -> String {
    json::to_python_default(&json!({"type": "ping"}))
}

/// Whether a client frame is the heartbeat answer `{"type": "pong"}` (not counted
/// against the rate limit, never answered).
pub(crate) fn is_pong(frame: &Value) -> bool {
    frame.get("type").and_then(Value::as_str) == Some("pong") && frame.get("method").is_none()
}

/// The -32001 frame sent before closing a connection over its message rate.
pub(crate) fn rate_limited(id: Option<&Value>) -> String {
    json::to_python_default(&json!({
        "jsonrpc": "2.0",
        "error": {"code": -32001, "message": "Rate limit exceeded; too many messages per second"},
        "id": id.cloned().unwrap_or(Value::Null),
    }))
}

/// An `asap.ack` notification for `original` (section 11.4): from the original
/// recipient back to its sender, a fresh id, the original's `asap_version`.
pub(crate) fn ack(original: &Envelope, status: AckStatus, error: Option<&str>) -> String {
    let mut payload = Map::new();
    payload.insert("original_envelope_id".into(), json!(original.id));
    payload.insert("status".into(), json!(status.as_str()));
    payload.insert("error".into(), json!(error));
    let mut envelope = Envelope::raw(
        original.recipient.clone(),
        original.sender.clone(),
        "MessageAck",
        payload,
    );
    envelope.asap_version.clone_from(&original.asap_version);
    json::to_python_default(&json!({
        "jsonrpc": "2.0",
        "method": "asap.ack",
        "params": {"envelope": envelope.to_value()},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_frames_have_the_reference_shape() {
        let original = Envelope::raw(
            "urn:asap:agent:client",
            "urn:asap:agent:server",
            "task.request",
            Map::new(),
        );
        let frame: Value =
            serde_json::from_str(&ack(&original, AckStatus::Received, None)).unwrap();
        assert_eq!(frame["method"], "asap.ack");
        assert!(frame.get("id").is_none());
        let envelope = &frame["params"]["envelope"];
        assert_eq!(envelope["sender"], "urn:asap:agent:server");
        assert_eq!(envelope["recipient"], "urn:asap:agent:client");
        assert_eq!(envelope["payload_type"], "MessageAck");
        assert_eq!(
            envelope["payload"],
            json!({"original_envelope_id": original.id, "status": "received", "error": null})
        );
        assert_eq!(envelope["requires_ack"], false);
        assert!(envelope["correlation_id"].is_null() && envelope["extensions"].is_null());
        assert_eq!(ping(), r#"{"type": "ping"}"#);
        assert!(is_pong(&json!({"type": "pong"})));
        assert!(!is_pong(&json!({"type": "pong", "method": "asap.send"})));
        assert_eq!(
            rate_limited(Some(&json!("r-11"))),
            r#"{"jsonrpc": "2.0", "error": {"code": -32001, "message": "Rate limit exceeded; too many messages per second"}, "id": "r-11"}"#
        );
    }
}
