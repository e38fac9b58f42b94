//! Usage metering records (wire spec section 14.3).

use serde_json::Value;

use super::macros::model;
use super::timestamp::Timestamp;
use super::validation::{Checked, Loc, bounded_integer, string};

fn count(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(0), None)
}

model! {
    /// Resource use of one task execution.
    #[derive(Default)]
    pub struct UsageMetrics {
        /// Input tokens.
        #[serde(default)]
        pub tokens_in: i64 = defaulted(|| 0, count),
        /// Output tokens.
        #[serde(default)]
        pub tokens_out: i64 = defaulted(|| 0, count),
        /// Wall time in milliseconds.
        #[serde(default)]
        pub duration_ms: i64 = defaulted(|| 0, count),
        /// Calls to external APIs.
        #[serde(default)]
        pub api_calls: i64 = defaulted(|| 0, count),
    }
}

model! {
    /// One metered task execution.
    pub struct UsageEvent {
        /// The task.
        pub task_id: String = required(string),
        /// The agent that did the work.
        pub agent_id: String = required(string),
        /// Who asked for it.
        pub consumer_id: String = required(string),
        /// What it used.
        #[serde(default)]
        pub metrics: UsageMetrics = defaulted(UsageMetrics::default, UsageMetrics::validate_at),
        /// When.
        pub timestamp: Timestamp = required(Timestamp::validate),
    }
}

model! {
    /// Totals of an agent's usage events.
    pub struct UsageAggregate {
        /// The agent.
        pub agent_id: String = required(string),
        /// The period label (only echoed).
        pub period: String = required(string),
        /// Sum of `tokens_in + tokens_out`.
        #[serde(default)]
        pub total_tokens: i64 = defaulted(|| 0, count),
        /// Sum of `duration_ms`.
        #[serde(default)]
        pub total_duration: i64 = defaulted(|| 0, count),
        /// Number of events.
        #[serde(default)]
        pub total_tasks: i64 = defaulted(|| 0, count),
        /// Sum of `api_calls`.
        #[serde(default)]
        pub total_api_calls: i64 = defaulted(|| 0, count),
    }
}

impl UsageAggregate {
    /// Sums `events` (all of them: `period` is only a label, as in the reference).
    pub fn of(agent_id: &str, period: &str, events: &[UsageEvent]) -> Self {
        let sum = |f: fn(&UsageMetrics) -> i64| {
            events
                .iter()
                .map(|e| f(&e.metrics))
                .fold(0i64, i64::saturating_add)
        };
        Self {
            agent_id: agent_id.to_owned(),
            period: period.to_owned(),
            total_tokens: sum(|m| m.tokens_in.saturating_add(m.tokens_out)),
            total_duration: sum(|m| m.duration_ms),
            total_tasks: i64::try_from(events.len()).unwrap_or(i64::MAX),
            total_api_calls: sum(|m| m.api_calls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use serde_json::json;

    #[test]
    fn defaults_and_bounds() {
        let e = UsageEvent::from_value(
            &json!({"task_id": "t", "agent_id": "a", "consumer_id": "c", "timestamp": 0}),
        )
        .unwrap();
        assert_eq!(
            e.to_json(),
            r#"{"task_id":"t","agent_id":"a","consumer_id":"c","metrics":{"tokens_in":0,"tokens_out":0,"duration_ms":0,"api_calls":0},"timestamp":"1970-01-01T00:00:00Z"}"#
        );
        let bad = UsageMetrics::from_value(&json!({"tokens_in": -1})).unwrap_err();
        assert_eq!(bad.errors[0].kind.type_name(), "greater_than_equal");
    }

    #[test]
    fn aggregate_sums_everything() {
        let event = |tin, tout, ms, calls| UsageEvent {
            task_id: "t".into(),
            agent_id: "a".into(),
            consumer_id: "c".into(),
            metrics: UsageMetrics {
                tokens_in: tin,
                tokens_out: tout,
                duration_ms: ms,
                api_calls: calls,
            },
            timestamp: Timestamp::now(),
        };
        let agg = UsageAggregate::of("a", "2026-01", &[event(1, 2, 10, 1), event(3, 4, 20, 0)]);
        assert_eq!(
            (
                agg.total_tokens,
                agg.total_duration,
                agg.total_tasks,
                agg.total_api_calls
            ),
            (10, 30, 2, 1)
        );
        assert_eq!(agg.period, "2026-01");
    }
}
