//! Trace-context side effects on responses (wire spec section 9.12).
//!
//! The reference server always has a tracing span; when it is recording, it writes the
//! span's ids into every successful response envelope. This server does the same:
//! unless the request continues a remote span (an envelope whose `trace_id` is 32 hex
//! characters with a 16-hex `extensions.span_id`) or carries a W3C `traceparent` that
//! is not sampled, the response gets `extensions.trace_id`/`span_id` and, when it has
//! none, `trace_id`.

use http::HeaderMap;
use rand::Rng;
use serde_json::Value;

use crate::model::Envelope;

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

/// The ids of this server's span for one request; `None` when the span is not recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpan {
    /// 32 lower-case hex characters.
    pub trace_id: String,
    /// 16 lower-case hex characters.
    pub span_id: String,
}

impl ServerSpan {
    /// Decides, from the request envelope and headers, whether and how to inject.
    pub fn for_request(request: &Envelope, headers: &HeaderMap) -> Option<Self> {
        let remote_parent = request.trace_id.as_deref().is_some_and(|t| is_hex(t, 32))
            && request
                .extensions
                .as_ref()
                .and_then(|e| e.get("span_id"))
                .and_then(Value::as_str)
                .is_some_and(|s| is_hex(s, 16));
        if remote_parent {
            return None;
        }
        let parent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let parts: Vec<&str> = v.trim().split('-').collect();
                match parts.as_slice() {
                    [version, trace, span, flags]
                        if is_hex(version, 2)
                            && is_hex(trace, 32)
                            && is_hex(span, 16)
                            && is_hex(flags, 2) =>
                    {
                        Some((
                            trace.to_ascii_lowercase(),
                            u8::from_str_radix(flags, 16).unwrap_or(0) & 1 == 1,
                        ))
                    }
                    _ => None,
                }
            });
        let trace_id = match parent {
            Some((_, false)) => return None,
            Some((trace, true)) => trace,
            None => random_hex(16),
        };
        Some(Self {
            trace_id,
            span_id: random_hex(8),
        })
    }

    /// Writes the span's ids into a response envelope.
    pub fn inject(&self, response: &mut Envelope) {
        let extensions = response.extensions.get_or_insert_with(Default::default);
        extensions.insert("trace_id".into(), self.trace_id.clone().into());
        extensions.insert("span_id".into(), self.span_id.clone().into());
        if response.trace_id.is_none() {
            response.trace_id = Some(self.trace_id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{TaskRequest, TaskResponse, TaskStatus};
    use http::HeaderValue;
    use serde_json::json;

    fn request(trace_id: Option<&str>, span_id: Option<&str>) -> Envelope {
        let mut e = Envelope::new(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            TaskRequest::new("c", "echo", json!({})),
        );
        e.trace_id = trace_id.map(str::to_owned);
        if let Some(span) = span_id {
            e.extensions = json!({"span_id": span}).as_object().cloned();
        }
        e
    }

    fn headers(traceparent: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = traceparent {
            h.insert("traceparent", HeaderValue::from_str(t).unwrap());
        }
        h
    }

    #[test]
    fn the_five_captured_combinations() {
        let trace = "0af7651916cd43dd8448eb211c80319c";
        // 1. Nothing: a new trace, injected, trace_id filled.
        let span = ServerSpan::for_request(&request(None, None), &headers(None)).unwrap();
        let mut response = Envelope::new(
            "urn:asap:agent:b",
            "urn:asap:agent:a",
            TaskResponse::new("t", TaskStatus::Completed),
        );
        span.inject(&mut response);
        assert_eq!(response.trace_id.as_deref(), Some(span.trace_id.as_str()));
        assert_eq!(
            response.extensions.as_ref().unwrap()["span_id"]
                .as_str()
                .unwrap()
                .len(),
            16
        );
        // 2. A remote parent in the envelope: nothing injected.
        assert!(
            ServerSpan::for_request(
                &request(Some(trace), Some("b7ad6b7169203331")),
                &headers(None)
            )
            .is_none()
        );
        // 3. A free-form trace_id is kept; the span's id goes into extensions only.
        let span =
            ServerSpan::for_request(&request(Some("trace-01"), None), &headers(None)).unwrap();
        let mut response = Envelope::new(
            "urn:asap:agent:b",
            "urn:asap:agent:a",
            TaskResponse::new("t", TaskStatus::Completed),
        )
        .with_trace_id("trace-01");
        span.inject(&mut response);
        assert_eq!(response.trace_id.as_deref(), Some("trace-01"));
        // 4. A sampled traceparent: same trace, new span.
        let span = ServerSpan::for_request(
            &request(None, None),
            &headers(Some(&format!("00-{trace}-b7ad6b7169203331-01"))),
        )
        .unwrap();
        assert_eq!(span.trace_id, trace);
        // 5. An unsampled traceparent: nothing injected.
        assert!(
            ServerSpan::for_request(
                &request(None, None),
                &headers(Some(&format!("00-{trace}-b7ad6b7169203331-00")))
            )
            .is_none()
        );
    }
}
