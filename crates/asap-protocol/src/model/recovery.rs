//! What ASAP 2.x adds to each `asap:*` error (`docs/asap-2.md` section 6.1): its own
//! JSON-RPC code in the ASAP band (-32000 to -32059), whether a retry may succeed, and
//! the reference's recovery hints. 1.1 answers do not use any of it.

use serde_json::{Map, Value};

use super::errors::AsapError;

impl AsapError {
    /// The JSON-RPC code a 2.x server answers this error with (the reference's
    /// `rpc_code`), e.g. `-32002` for an invalid timestamp.
    pub fn rpc_code(&self) -> i64 {
        match self {
            Self::InvalidTransition { .. } => -32000,
            Self::MalformedEnvelope { .. } => -32001,
            Self::InvalidTimestamp { .. } => -32002,
            Self::InvalidNonce { .. } => -32003,
            Self::TaskNotFound { .. } => -32010,
            Self::CircuitOpen { .. } => -32011,
            Self::HandlerNotFound { .. } => -32012,
            Self::UnsupportedAuthScheme { .. } => -32020,
            Self::TaskAlreadyCompleted { .. } => -32030,
            Self::ThreadPoolExhausted { .. } => -32031,
            Self::WebhookUrlRejected { .. } => -32050,
        }
    }

    /// Whether the same request may succeed later (the reference's `RecoverableError`).
    pub fn recoverable(&self) -> bool {
        matches!(
            self,
            Self::InvalidTimestamp { .. }
                | Self::ThreadPoolExhausted { .. }
                | Self::CircuitOpen { .. }
        )
    }

    /// How long the reference suggests waiting before a retry, in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Self::InvalidTimestamp { .. } | Self::CircuitOpen { .. } => Some(5_000),
            Self::ThreadPoolExhausted { .. } => Some(1_000),
            _ => None,
        }
    }

    /// The reference's machine-readable next step, e.g. `resend_with_fresh_timestamp`.
    pub fn fallback_action(&self) -> Option<&'static str> {
        match self {
            Self::InvalidTimestamp { .. } => Some("resend_with_fresh_timestamp"),
            Self::ThreadPoolExhausted { .. } => Some("retry_later"),
            Self::CircuitOpen { .. } => Some("retry_later_or_failover"),
            _ => None,
        }
    }

    /// The `data` of a 2.x JSON-RPC error for this error, in the reference's member
    /// order: `code`, `rpc_code`, `message`, `details`, the hints that are set
    /// (`retry_after_ms`, `fallback_action`), `recoverable`, `asap_taxonomy_code`, and
    /// `error` (the summary the server adds, e.g. `"Invalid envelope timestamp"`).
    ///
    /// ```
    /// use asap_protocol::model::AsapError;
    /// let e = AsapError::HandlerNotFound { payload_type: "x".into() };
    /// let data = serde_json::Value::Object(e.rpc_data(&e.to_string()));
    /// assert_eq!(data.to_string(), concat!(
    ///     r#"{"code":"asap:transport/handler_not_found","rpc_code":-32012,"#,
    ///     r#""message":"No handler registered for payload type: x","details":{"payload_type":"x"},"#,
    ///     r#""recoverable":false,"asap_taxonomy_code":"asap:transport/handler_not_found","#,
    ///     r#""error":"No handler registered for payload type: x"}"#));
    /// ```
    pub fn rpc_data(&self, error: &str) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert("code".into(), self.code().into());
        data.insert("rpc_code".into(), self.rpc_code().into());
        data.insert("message".into(), self.to_string().into());
        data.insert("details".into(), Value::Object(self.details()));
        if let Some(ms) = self.retry_after_ms() {
            data.insert("retry_after_ms".into(), ms.into());
        }
        if let Some(action) = self.fallback_action() {
            data.insert("fallback_action".into(), action.into());
        }
        data.insert("recoverable".into(), self.recoverable().into());
        data.insert("asap_taxonomy_code".into(), self.code().into());
        data.insert("error".into(), error.into());
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskStatus;

    #[test]
    fn codes_follow_the_reference_band() {
        let cases = [
            (
                AsapError::InvalidTransition {
                    from: TaskStatus::Completed,
                    to: TaskStatus::Working,
                    task_id: None,
                },
                -32000,
            ),
            (
                AsapError::TaskNotFound {
                    task_id: "t".into(),
                },
                -32010,
            ),
            (
                AsapError::TaskAlreadyCompleted {
                    task_id: "t".into(),
                    current_status: TaskStatus::Completed,
                },
                -32030,
            ),
            (
                AsapError::ThreadPoolExhausted {
                    max_threads: 1,
                    active_threads: 1,
                },
                -32031,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.rpc_code(), code, "{error}");
        }
    }

    #[test]
    fn a_stale_timestamp_is_recoverable_with_hints() {
        let error = AsapError::InvalidTimestamp {
            message: "old".into(),
            details: Map::new(),
        };
        let data = Value::Object(error.rpc_data("Invalid envelope timestamp"));
        assert_eq!(
            data.to_string(),
            r#"{"code":"asap:protocol/invalid_timestamp","rpc_code":-32002,"message":"old","details":{},"retry_after_ms":5000,"fallback_action":"resend_with_fresh_timestamp","recoverable":true,"asap_taxonomy_code":"asap:protocol/invalid_timestamp","error":"Invalid envelope timestamp"}"#
        );
        let nonce = AsapError::InvalidNonce {
            message: "dup".into(),
            details: Map::new(),
        };
        assert!(!nonce.recoverable());
        assert_eq!(
            (nonce.retry_after_ms(), nonce.fallback_action()),
            (None, None)
        );
    }
}
