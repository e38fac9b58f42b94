//! Replay protection: the timestamp window and the nonce check (wire spec section 9.7).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::shared_state::{ReplayGuard, SharedStateError};
use crate::json::{FloatStyle, format_float};
use crate::model::{AsapError, Envelope};

/// Checks the envelope's timestamp against `now`: at most `max_age` old and at most
/// `max_future` ahead (boundaries accepted). A naive timestamp counts as UTC.
pub fn check_timestamp(
    envelope: &Envelope,
    now: OffsetDateTime,
    max_age: Duration,
    max_future: Duration,
) -> Result<(), AsapError> {
    let ts = envelope.timestamp.to_offset_datetime();
    let utc_text = match envelope.timestamp.offset() {
        Some(_) => envelope.timestamp.isoformat(),
        None => format!("{}+00:00", envelope.timestamp),
    };
    let age = (now - ts).as_seconds_f64();
    let mut details = Map::new();
    details.insert("timestamp".into(), utc_text.into());
    if age > max_age.as_secs_f64() {
        details.insert("age_seconds".into(), seconds(age));
        details.insert("envelope_id".into(), envelope.id.clone().into());
        details.insert("max_age_seconds".into(), max_age.as_secs().into());
        let message = format!(
            "Envelope timestamp is too old: {age:.1} seconds (max: {} seconds)",
            max_age.as_secs()
        );
        return Err(AsapError::InvalidTimestamp { message, details });
    }
    let ahead = -age;
    if ahead > max_future.as_secs_f64() {
        details.insert("future_offset_seconds".into(), seconds(ahead));
        details.insert("envelope_id".into(), envelope.id.clone().into());
        details.insert(
            "max_future_tolerance_seconds".into(),
            max_future.as_secs().into(),
        );
        let message = format!(
            "Envelope timestamp is too far in the future: {ahead:.1} seconds (max tolerance: {} seconds)",
            max_future.as_secs()
        );
        return Err(AsapError::InvalidTimestamp { message, details });
    }
    Ok(())
}

/// A float of seconds rounded to microseconds, as Python's `timedelta.total_seconds()`.
fn seconds(value: f64) -> Value {
    let rounded = (value * 1e6).round() / 1e6;
    serde_json::from_str(&format_float(rounded, FloatStyle::PythonRepr)).unwrap_or(Value::Null)
}

/// Python's type name for a JSON value, as the nonce error message uses it.
fn python_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n)
            if n.is_i64() || n.is_u64() || !n.to_string().contains(['.', 'e', 'E']) =>
        {
            "int"
        }
        Value::Number(_) => "float",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's `str()` of a JSON value (for `details.nonce`).
fn python_str(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        other => crate::json::to_python_default(other),
    }
}

/// The nonce an envelope asks to check: `None` when it carries none (and one is not
/// `required`); an error when it is not a non-empty string, or missing but required.
pub(crate) fn nonce_to_check(
    envelope: &Envelope,
    required: bool,
) -> Result<Option<&str>, AsapError> {
    let details = |nonce: Value| {
        let mut d = Map::new();
        d.insert("nonce".into(), nonce);
        d.insert("envelope_id".into(), envelope.id.clone().into());
        d
    };
    let Some(raw) = envelope.extensions.as_ref().and_then(|e| e.get("nonce")) else {
        if !required {
            return Ok(None);
        }
        return Err(AsapError::InvalidNonce {
            message: "Nonce is required: the envelope has no extensions.nonce".to_owned(),
            details: details(Value::Null),
        });
    };
    match raw {
        Value::String(s) if !s.is_empty() => Ok(Some(s)),
        Value::String(_) => Err(AsapError::InvalidNonce {
            message: "Nonce must be a non-empty string, got empty string".to_owned(),
            details: details(String::new().into()),
        }),
        other => Err(AsapError::InvalidNonce {
            message: format!(
                "Nonce must be a non-empty string, got {}",
                python_type(other)
            ),
            details: details(python_str(other).into()),
        }),
    }
}

/// The error for a nonce seen within the window.
pub(crate) fn duplicate_nonce(envelope: &Envelope, nonce: &str) -> AsapError {
    let mut details = Map::new();
    details.insert("nonce".into(), nonce.into());
    details.insert("envelope_id".into(), envelope.id.clone().into());
    AsapError::InvalidNonce {
        message: format!("Duplicate nonce detected: {nonce}"),
        details,
    }
}

/// The error for an envelope id seen within the window (`reject_repeated_ids`).
pub(crate) fn duplicate_id(envelope: &Envelope) -> AsapError {
    let mut details = Map::new();
    details.insert("envelope_id".into(), envelope.id.clone().into());
    AsapError::InvalidNonce {
        message: format!("Duplicate envelope id detected: {}", envelope.id),
        details,
    }
}

/// Remembers nonces for a while; a nonce seen twice within its lifetime is a replay.
/// Bounded: beyond `capacity` the oldest nonces are forgotten first.
#[derive(Debug)]
pub struct NonceStore {
    ttl: Duration,
    capacity: usize,
    state: Mutex<NonceState>,
}

#[derive(Debug, Default)]
struct NonceState {
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
}

impl NonceStore {
    /// A store remembering each nonce for `ttl`, at most `capacity` at once.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(NonceState::default()),
        }
    }

    /// Checks `extensions.nonce` and records it (atomically). An absent nonce passes.
    pub fn check(&self, envelope: &Envelope) -> Result<(), AsapError> {
        match nonce_to_check(envelope, false)? {
            Some(nonce) if !self.remember(nonce) => Err(duplicate_nonce(envelope, nonce)),
            _ => Ok(()),
        }
    }

    /// Like [`NonceStore::check`], but an envelope without a nonce is refused (not in
    /// the reference, which lets it through: `ServerConfig::reject_missing_nonce`).
    pub fn check_required(&self, envelope: &Envelope) -> Result<(), AsapError> {
        match nonce_to_check(envelope, true)? {
            Some(nonce) if !self.remember(nonce) => Err(duplicate_nonce(envelope, nonce)),
            _ => Ok(()),
        }
    }

    /// Records the envelope's `id` and refuses it when it was seen within the window
    /// (not in the reference: `ServerConfig::reject_repeated_ids`). Give it its own
    /// store, so ids and nonces do not collide.
    pub fn check_id(&self, envelope: &Envelope) -> Result<(), AsapError> {
        if self.remember(&envelope.id) {
            return Ok(());
        }
        Err(duplicate_id(envelope))
    }

    /// Records `key` and says whether it is new (not seen within the window), atomically.
    fn remember(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.expire(&mut state, now);
        if state
            .seen
            .get(key)
            .is_some_and(|at| now.duration_since(*at) < self.ttl)
        {
            return false;
        }
        state.seen.insert(key.to_owned(), now);
        state.order.push_back((now, key.to_owned()));
        true
    }

    fn expire(&self, state: &mut NonceState, now: Instant) {
        while let Some((at, _)) = state.order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && state.order.len() < self.capacity {
                break;
            }
            let (at, nonce) = state.order.pop_front().expect("front exists");
            if state.seen.get(&nonce) == Some(&at) {
                state.seen.remove(&nonce);
            }
        }
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .seen
            .len()
    }

    /// Whether no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl ReplayGuard for NonceStore {
    async fn first_use(&self, key: &str) -> Result<bool, SharedStateError> {
        Ok(self.remember(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Timestamp};
    use serde_json::json;

    fn envelope(timestamp: &str, extensions: Value) -> Envelope {
        Envelope::from_value(&json!({
            "id": "env-1", "asap_version": "0.1", "timestamp": timestamp,
            "sender": "urn:asap:agent:a", "recipient": "urn:asap:agent:b",
            "payload_type": "task.request", "payload": {}, "extensions": extensions
        }))
        .unwrap()
    }

    #[test]
    fn timestamp_window() {
        let now: Timestamp = "2026-11-23T23:07:20.703629Z".parse().unwrap();
        let now = now.to_offset_datetime();
        let (age, future) = (Duration::from_secs(300), Duration::from_secs(30));
        let old = envelope("2026-11-23T22:57:20.000832Z", Value::Null);
        let err = check_timestamp(&old, now, age, future).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Envelope timestamp is too old: 600.7 seconds (max: 300 seconds)"
        );
        assert_eq!(
            crate::json::to_compact(&Value::Object(err.details())),
            r#"{"timestamp":"2026-11-23T22:57:20.000832+00:00","age_seconds":600.702797,"envelope_id":"env-1","max_age_seconds":300}"#
        );
        let naive_edge = envelope("2026-11-23T23:02:20.703629", Value::Null);
        assert!(check_timestamp(&naive_edge, now, age, future).is_ok());
        let ahead = envelope("2026-11-23T23:08:20.703629Z", Value::Null);
        let err = check_timestamp(&ahead, now, age, future).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Envelope timestamp is too far in the future: 60.0 seconds (max tolerance: 30 seconds)"
        );
        assert_eq!(err.details()["future_offset_seconds"], json!(60.0));
        let offset = envelope("2026-11-24T01:07:20.703629+02:00", Value::Null);
        assert!(check_timestamp(&offset, now, age, future).is_ok());
    }

    #[test]
    fn nonces() {
        let store = NonceStore::new(Duration::from_secs(600), 100);
        let ts = "2026-11-23T23:07:20Z";
        assert!(store.check(&envelope(ts, Value::Null)).is_ok());
        assert!(store.check(&envelope(ts, json!({"other": 1}))).is_ok());
        assert!(
            store
                .check(&envelope(ts, json!({"nonce": "nonce-123"})))
                .is_ok()
        );
        let err = store
            .check(&envelope(ts, json!({"nonce": "nonce-123"})))
            .unwrap_err();
        assert_eq!(err.to_string(), "Duplicate nonce detected: nonce-123");
        assert_eq!(
            crate::json::to_compact(&Value::Object(err.details())),
            r#"{"nonce":"nonce-123","envelope_id":"env-1"}"#
        );
        let err = store
            .check(&envelope(ts, json!({"nonce": ""})))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Nonce must be a non-empty string, got empty string"
        );
        let err = store
            .check(&envelope(ts, json!({"nonce": 123})))
            .unwrap_err();
        assert_eq!(err.to_string(), "Nonce must be a non-empty string, got int");
        assert_eq!(err.details()["nonce"], "123");
        for (value, name) in [
            (json!(1.5), "float"),
            (json!(true), "bool"),
            (json!({}), "dict"),
            (json!([]), "list"),
        ] {
            assert!(
                store
                    .check(&envelope(ts, json!({"nonce": value})))
                    .unwrap_err()
                    .to_string()
                    .ends_with(name)
            );
        }
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn nonce_store_is_bounded_and_expires() {
        let store = NonceStore::new(Duration::from_secs(600), 3);
        for i in 0..10 {
            store
                .check(&envelope(
                    "2026-11-23T23:07:20Z",
                    json!({"nonce": format!("n{i}")}),
                ))
                .unwrap();
        }
        assert!(store.len() <= 3);
        let short = NonceStore::new(Duration::from_secs(600), 10);
        short
            .check(&envelope("2026-11-23T23:07:20Z", json!({"nonce": "x"})))
            .unwrap();
        // Within the window the same nonce is a replay; past it, it is new again.
        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(
            short
                .check(&envelope("2026-11-23T23:07:20Z", json!({"nonce": "x"})))
                .is_err()
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        short
            .check(&envelope("2026-11-23T23:07:20Z", json!({"nonce": "x"})))
            .unwrap();
        assert!(!short.is_empty());
    }
}
