//! The health document of `GET /.well-known/asap/health` (wire spec section 9.10).

use serde_json::Value;

use super::macros::model;
use super::validation::{Checked, Loc, bounded_integer, enumeration, string};

fn count(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(0), None)
}

fn status(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    enumeration(
        value,
        loc,
        &[("healthy", "healthy"), ("unhealthy", "unhealthy")],
        true,
    )
    .map(str::to_owned)
}

fn seconds(value: &Value, loc: &Loc<'_>) -> Checked<f64> {
    match value {
        Value::Number(n) => {
            let f: f64 = n.to_string().parse().unwrap_or(f64::NAN);
            if f.is_finite() && f >= 0.0 {
                Ok(f)
            } else {
                super::validation::fail(
                    super::validation::ErrorKind::GreaterThanEqual { ge: 0 },
                    loc,
                    value,
                )
            }
        }
        _ => super::validation::fail(super::validation::ErrorKind::FloatType, loc, value),
    }
}

model! {
    /// Work in progress on an agent.
    pub struct HealthLoad {
        /// Requests being handled.
        #[serde(default)]
        pub active_tasks: i64 = defaulted(|| 0, count),
        /// Requests waiting.
        #[serde(default)]
        pub queue_depth: i64 = defaulted(|| 0, count),
    }
}

model! {
    /// An agent's health: `healthy` (HTTP 200) or `unhealthy` (HTTP 503).
    pub struct HealthStatus {
        /// `"healthy"` or `"unhealthy"`.
        pub status: String = required(status),
        /// The agent's URN (its manifest id).
        pub agent_id: String = required(string),
        /// The agent's version (its manifest version).
        pub version: String = required(string),
        /// The protocol version it speaks.
        pub asap_version: String = required(string),
        /// Seconds since the agent started.
        pub uptime_seconds: f64 = required(seconds),
        /// Current load, if reported.
        #[serde(default)]
        pub load: Option<HealthLoad> = optional(HealthLoad::validate_at),
    }
}

impl HealthStatus {
    /// Whether the agent says it is healthy.
    pub fn is_healthy(&self) -> bool {
        self.status == "healthy"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use serde_json::json;

    #[test]
    fn reads_the_reference_document() {
        let text = r#"{"status":"healthy","agent_id":"urn:asap:agent:echo-agent","version":"0.3.0","asap_version":"0.1","uptime_seconds":96.52,"load":null}"#;
        let h = HealthStatus::from_json(text.as_bytes()).unwrap();
        assert!(h.is_healthy());
        assert_eq!(h.to_json(), text);
        let bad = HealthStatus::from_value(&json!({"status": "ok", "agent_id": "a", "version": "1", "asap_version": "0.1", "uptime_seconds": -1})).unwrap_err();
        assert_eq!(
            bad.errors
                .iter()
                .map(|e| e.kind.type_name())
                .collect::<Vec<_>>(),
            ["literal_error", "greater_than_equal"]
        );
        let loaded = HealthStatus::from_value(&json!({"status": "unhealthy", "agent_id": "a", "version": "1", "asap_version": "0.1", "uptime_seconds": 1, "load": {"active_tasks": 2}})).unwrap();
        assert!(!loaded.is_healthy());
        assert_eq!(loaded.load.unwrap().active_tasks, 2);
    }
}
