//! The `asap:*` error codes (wire spec section 16).
//!
//! Every protocol-level failure that a later layer reports is one [`AsapError`]
//! variant. Each has a stable [`code`](AsapError::code), a message word for word as the
//! reference writes it, and `details`; [`AsapError::to_json`] gives the reference's
//! `{code, message, details}` object. The transport layers map each variant to exactly
//! one JSON-RPC code and HTTP status.

use serde_json::{Map, Value, json};

use super::enums::TaskStatus;

/// The authentication schemes a manifest may declare, sorted.
pub const SUPPORTED_AUTH_SCHEMES: [&str; 2] = ["basic", "bearer"];

/// A protocol error with an `asap:*` code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AsapError {
    /// An illegal task state transition (`asap:protocol/invalid_state`).
    #[error("Invalid transition from '{from}' to '{to}'")]
    InvalidTransition {
        /// The current status.
        from: TaskStatus,
        /// The requested status.
        to: TaskStatus,
        /// The task, when known.
        task_id: Option<String>,
    },
    /// An envelope that cannot be processed (`asap:protocol/malformed_envelope`).
    #[error("Malformed envelope: {reason}")]
    MalformedEnvelope {
        /// Why.
        reason: String,
        /// Caller-defined context.
        details: Map<String, Value>,
    },
    /// An envelope outside the replay window (`asap:protocol/invalid_timestamp`).
    #[error("{message}")]
    InvalidTimestamp {
        /// The reference's message (it differs for too old and too new).
        message: String,
        /// `timestamp`, `age_seconds` or `future_offset_seconds`, `envelope_id`, and the limit.
        details: Map<String, Value>,
    },
    /// A replayed or malformed nonce (`asap:protocol/invalid_nonce`).
    #[error("{message}")]
    InvalidNonce {
        /// The reference's message.
        message: String,
        /// `nonce` and `envelope_id`.
        details: Map<String, Value>,
    },
    /// No such task (`asap:task/not_found`).
    #[error("Task not found: {task_id}")]
    TaskNotFound {
        /// The task asked for.
        task_id: String,
    },
    /// The task already reached a terminal state (`asap:task/already_completed`).
    #[error("Task already completed: {task_id} (status: {current_status})")]
    TaskAlreadyCompleted {
        /// The task.
        task_id: String,
        /// Its terminal status.
        current_status: TaskStatus,
    },
    /// No handler for a payload type (`asap:transport/handler_not_found`).
    #[error("No handler registered for payload type: {payload_type}")]
    HandlerNotFound {
        /// The payload type asked for.
        payload_type: String,
    },
    /// The server is saturated (`asap:transport/thread_pool_exhausted`).
    #[error(
        "Thread pool exhausted: {active_threads}/{max_threads} threads in use. Service temporarily unavailable."
    )]
    ThreadPoolExhausted {
        /// The capacity.
        max_threads: u64,
        /// In use now.
        active_threads: u64,
    },
    /// The client's circuit breaker is open (`asap:transport/circuit_open`).
    #[error(
        "Circuit breaker is OPEN for {base_url}. Too many consecutive failures ({consecutive_failures}). Service temporarily unavailable."
    )]
    CircuitOpen {
        /// The peer.
        base_url: String,
        /// Failures in a row that opened it.
        consecutive_failures: u64,
    },
    /// A webhook URL that the SSRF rules refuse (`asap:transport/webhook_url_rejected`).
    #[error("Webhook URL rejected: {reason}")]
    WebhookUrlRejected {
        /// The URL.
        url: String,
        /// The rule that refused it.
        reason: String,
        /// Addresses the host resolved to, when resolution happened.
        resolved_ips: Option<Vec<String>>,
    },
    /// A manifest authentication scheme other than `bearer` or `basic`
    /// (`asap:auth/unsupported_scheme`).
    #[error("Unsupported authentication scheme '{scheme}'. Supported schemes: basic, bearer")]
    UnsupportedAuthScheme {
        /// The scheme as written.
        scheme: String,
    },
}

impl AsapError {
    /// The stable `asap:*` code.
    ///
    /// ```
    /// use asap_protocol::model::AsapError;
    /// let e = AsapError::TaskNotFound { task_id: "t1".into() };
    /// assert_eq!(e.code(), "asap:task/not_found");
    /// assert_eq!(e.to_string(), "Task not found: t1");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidTransition { .. } => "asap:protocol/invalid_state",
            Self::MalformedEnvelope { .. } => "asap:protocol/malformed_envelope",
            Self::InvalidTimestamp { .. } => "asap:protocol/invalid_timestamp",
            Self::InvalidNonce { .. } => "asap:protocol/invalid_nonce",
            Self::TaskNotFound { .. } => "asap:task/not_found",
            Self::TaskAlreadyCompleted { .. } => "asap:task/already_completed",
            Self::HandlerNotFound { .. } => "asap:transport/handler_not_found",
            Self::ThreadPoolExhausted { .. } => "asap:transport/thread_pool_exhausted",
            Self::CircuitOpen { .. } => "asap:transport/circuit_open",
            Self::WebhookUrlRejected { .. } => "asap:transport/webhook_url_rejected",
            Self::UnsupportedAuthScheme { .. } => "asap:auth/unsupported_scheme",
        }
    }

    /// The `details` object, with the members the reference puts there.
    pub fn details(&self) -> Map<String, Value> {
        let value = match self {
            Self::InvalidTransition { from, to, task_id } => {
                let mut d = json!({"from_state": from.as_str(), "to_state": to.as_str()});
                if let Some(task_id) = task_id {
                    d["task_id"] = task_id.clone().into();
                }
                d
            }
            Self::MalformedEnvelope { details, .. }
            | Self::InvalidTimestamp { details, .. }
            | Self::InvalidNonce { details, .. } => Value::Object(details.clone()),
            Self::TaskNotFound { task_id } => json!({"task_id": task_id}),
            Self::TaskAlreadyCompleted {
                task_id,
                current_status,
            } => {
                json!({"task_id": task_id, "current_status": current_status.as_str()})
            }
            Self::HandlerNotFound { payload_type } => json!({"payload_type": payload_type}),
            Self::ThreadPoolExhausted {
                max_threads,
                active_threads,
            } => {
                json!({"max_threads": max_threads, "active_threads": active_threads})
            }
            Self::CircuitOpen {
                base_url,
                consecutive_failures,
            } => {
                json!({"base_url": base_url, "consecutive_failures": consecutive_failures})
            }
            Self::WebhookUrlRejected {
                url,
                reason,
                resolved_ips,
            } => {
                let mut d = json!({"url": url, "reason": reason});
                if let Some(ips) = resolved_ips {
                    d["resolved_ips"] = json!(ips);
                }
                d
            }
            Self::UnsupportedAuthScheme { scheme } => {
                json!({"scheme": scheme, "supported_schemes": SUPPORTED_AUTH_SCHEMES})
            }
        };
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    /// The reference's `to_dict()`: `{"code", "message", "details"}`.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code(), "message": self.to_string(), "details": self.details()})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_transition_matches_the_captured_error() {
        let e = AsapError::InvalidTransition {
            from: TaskStatus::Completed,
            to: TaskStatus::Working,
            task_id: Some("task_01".into()),
        };
        assert_eq!(
            crate::json::to_compact(&e.to_json()),
            r#"{"code":"asap:protocol/invalid_state","message":"Invalid transition from 'completed' to 'working'","details":{"from_state":"completed","to_state":"working","task_id":"task_01"}}"#
        );
    }

    #[test]
    fn every_code_is_distinct_and_namespaced() {
        let all = [
            AsapError::InvalidTransition {
                from: TaskStatus::Failed,
                to: TaskStatus::Working,
                task_id: None,
            },
            AsapError::MalformedEnvelope {
                reason: "x".into(),
                details: Map::new(),
            },
            AsapError::InvalidTimestamp {
                message: "old".into(),
                details: Map::new(),
            },
            AsapError::InvalidNonce {
                message: "dup".into(),
                details: Map::new(),
            },
            AsapError::TaskNotFound {
                task_id: "t".into(),
            },
            AsapError::TaskAlreadyCompleted {
                task_id: "t".into(),
                current_status: TaskStatus::Completed,
            },
            AsapError::HandlerNotFound {
                payload_type: "x.y".into(),
            },
            AsapError::ThreadPoolExhausted {
                max_threads: 4,
                active_threads: 4,
            },
            AsapError::CircuitOpen {
                base_url: "http://a".into(),
                consecutive_failures: 5,
            },
            AsapError::WebhookUrlRejected {
                url: "http://10.0.0.1".into(),
                reason: "private".into(),
                resolved_ips: Some(vec!["10.0.0.1".into()]),
            },
            AsapError::UnsupportedAuthScheme {
                scheme: "oauth2".into(),
            },
        ];
        let mut codes: Vec<&str> = all.iter().map(AsapError::code).collect();
        assert!(codes.iter().all(|c| c.starts_with("asap:")));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert_eq!(
            all[7].to_string(),
            "Thread pool exhausted: 4/4 threads in use. Service temporarily unavailable."
        );
        assert_eq!(all[9].details()["resolved_ips"], json!(["10.0.0.1"]));
        assert_eq!(
            all[10].to_string(),
            "Unsupported authentication scheme 'oauth2'. Supported schemes: basic, bearer"
        );
        assert_eq!(
            all[10].details()["supported_schemes"],
            json!(["basic", "bearer"])
        );
        assert_eq!(
            all[5].to_string(),
            "Task already completed: t (status: completed)"
        );
        assert_eq!(all[0].details().get("task_id"), None);
    }
}
