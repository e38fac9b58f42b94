//! JSON-RPC bodies for tests that speak to an agent over plain HTTP.

use serde_json::{Value, json};

/// The JSON-RPC 2.0 request `asap.send` carrying `envelope`, with request id `id`.
pub fn send_request(envelope: Value, id: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope}, "id": id})
}

/// A `task.request` envelope from `sender` to the echo skill of `urn:asap:agent:asap-rs`,
/// with `input` (no id or timestamp: the agent fills both in).
pub fn echo_request(sender: &str, input: Value) -> Value {
    json!({
        "asap_version": "0.1",
        "sender": sender,
        "recipient": "urn:asap:agent:asap-rs",
        "payload_type": "task.request",
        "payload": {"conversation_id": "c", "skill_id": "echo", "input": input},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_envelope_and_id() {
        let body = send_request(echo_request("urn:asap:agent:t", json!({"n": 1})), "r-1");
        assert_eq!(body["method"], "asap.send");
        assert_eq!(body["id"], "r-1");
        assert_eq!(body["params"]["envelope"]["payload"]["input"]["n"], 1);
        assert_eq!(body["params"]["envelope"]["sender"], "urn:asap:agent:t");
    }
}
