//! W3C Trace Context: the `traceparent` and `tracestate` headers, and the context of
//! the request or call the current task works for.
//!
//! The server reads both headers of every request and runs the request (and its
//! handler) with a current context; the client sends that context on with a new span id
//! (or a new trace when there is none), as the reference's instrumented HTTP client
//! does. With the `otel` feature and an OpenTelemetry layer installed
//! ([`crate::telemetry`]), the current context is the current `tracing` span's.
//!
//! ```
//! use asap_protocol::trace_context::TraceParent;
//!
//! let parent = TraceParent::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
//! assert!(parent.sampled());
//! let child = parent.child();
//! assert_eq!(child.trace_id, parent.trace_id);
//! assert_ne!(child.span_id, parent.span_id);
//! ```

use std::fmt;
use std::future::Future;

use rand::Rng;

#[cfg(feature = "server")]
use http::HeaderMap;
#[cfg(all(feature = "client", not(feature = "server")))]
use reqwest::header::HeaderMap;

/// The `traceparent` header's name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header's name.
pub const TRACESTATE: &str = "tracestate";
/// The most list members a `tracestate` may carry (W3C Trace Context, section 3.3.1).
pub const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The longest `tracestate` kept, in characters (W3C Trace Context, section 3.3.1.1).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The "sampled" bit of the trace flags.
const SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: trace id, parent span id and trace flags (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never zero).
    pub trace_id: u128,
    /// The span id of the caller's span (never zero).
    pub span_id: u64,
    /// The trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value. Version `00` must have exactly four fields; a later
    /// version is read by its first four (W3C section 3.2.4); `ff`, zero ids and
    /// malformed fields give `None`. Upper-case hex is accepted (the reference is as
    /// lenient).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let extra = parts.next();
        if !is_hex(version, 2) || version.eq_ignore_ascii_case("ff") {
            return None;
        }
        if version == "00" && extra.is_some() {
            return None;
        }
        if !is_hex(trace, 32) || !is_hex(span, 16) || !is_hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// A new sampled trace with a new span id.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: rng.random_range(1..=u128::MAX),
            span_id: rng.random_range(1..=u64::MAX),
            flags: SAMPLED,
        }
    }

    /// The same trace and flags with a new span id.
    pub fn child(&self) -> Self {
        Self {
            span_id: rand::rng().random_range(1..=u64::MAX),
            ..*self
        }
    }

    /// Whether the caller recorded its span (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED == SAMPLED
    }

    /// The trace id as 32 lower-case hex characters.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The span id as 16 lower-case hex characters.
    pub fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }
}

/// The `traceparent` value, version `00`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A `traceparent` with the `tracestate` that travelled with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, span and flags.
    pub parent: TraceParent,
    /// The vendors' `tracestate`, when one was received and valid.
    pub state: Option<String>,
}

impl TraceContext {
    /// A context of a new trace, without `tracestate`.
    pub fn new_root() -> Self {
        Self {
            parent: TraceParent::new_root(),
            state: None,
        }
    }

    /// The same trace and `tracestate` with a new span id.
    pub fn child(&self) -> Self {
        Self {
            parent: self.parent.child(),
            state: self.state.clone(),
        }
    }

    /// The context a request's headers carry: `None` without a valid `traceparent`.
    /// Several `tracestate` fields are joined (RFC 9110 list); an invalid or oversized
    /// `tracestate` is dropped, the `traceparent` kept.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let parent = TraceParent::parse(headers.get(TRACEPARENT)?.to_str().ok()?)?;
        let fields: Vec<&str> = headers
            .get_all(TRACESTATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let state = (!fields.is_empty())
            .then(|| fields.join(","))
            .and_then(|joined| valid_tracestate(&joined));
        Some(Self { parent, state })
    }

    /// Writes `traceparent` (and `tracestate` when there is one) into `headers`.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let traceparent = self.parent.to_string();
        headers.insert(
            TRACEPARENT,
            traceparent
                .parse()
                .expect("hex and dashes form a valid header"),
        );
        if let Some(state) = self.state.as_deref()
            && let Ok(value) = state.parse()
        {
            headers.insert(TRACESTATE, value);
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The `tracestate` normalised (members trimmed, empty members dropped), or `None`
/// when it breaks W3C section 3.3: more than 32 members, longer than 512 characters,
/// a member without `key=value`, a key or value with characters outside the grammar.
pub fn valid_tracestate(value: &str) -> Option<String> {
    let members: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if members.is_empty() || members.len() > MAX_TRACESTATE_MEMBERS {
        return None;
    }
    for member in &members {
        let (key, val) = member.split_once('=')?;
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
            });
        let val_ok = !val.is_empty()
            && val.len() <= 256
            && val
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
            && !val.ends_with(' ');
        if !key_ok || !val_ok {
            return None;
        }
    }
    let joined = members.join(",");
    (joined.len() <= MAX_TRACESTATE_LEN).then_some(joined)
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// Runs `future` with `context` as the current trace context (what [`current`]
/// returns inside it, and what the client's calls continue).
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The current trace context: the one [`scope`] set (the server runs each request and
/// handler in its span's), else `None`.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The context an outgoing call sends without a span of its own (a stream, a batch, a
/// WebSocket handshake): the current context, whose span makes the call (a handler's,
/// in a server), else (feature `otel`, with a tracer provider installed) the current
/// OpenTelemetry context's span, else a new trace.
pub fn for_outgoing() -> TraceContext {
    CURRENT
        .try_with(Clone::clone)
        .ok()
        .or_else(crate::spans::current_otel_context)
        .unwrap_or_else(TraceContext::new_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    #[test]
    fn a_traceparent_round_trips_and_rejects_what_w3c_rejects() {
        let value = format!("00-{TRACE}-b7ad6b7169203331-01");
        let parent = TraceParent::parse(&value).unwrap();
        assert_eq!(parent.to_string(), value);
        assert_eq!(parent.trace_id_hex(), TRACE);
        assert_eq!(parent.span_id_hex(), "b7ad6b7169203331");
        assert!(parent.sampled());
        let upper = format!("00-{}-B7AD6B7169203331-00", TRACE.to_uppercase());
        let parsed = TraceParent::parse(&upper).unwrap();
        assert!(!parsed.sampled());
        assert_eq!(parsed.trace_id_hex(), TRACE);
        // A future version may append fields; 00 may not.
        assert!(TraceParent::parse(&format!("01-{TRACE}-b7ad6b7169203331-01-xyz")).is_some());
        for bad in [
            format!("00-{TRACE}-b7ad6b7169203331-01-xyz"),
            format!("ff-{TRACE}-b7ad6b7169203331-01"),
            format!("00-{}-b7ad6b7169203331-01", "0".repeat(32)),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-b7ad6b716920333-01"),
            format!("00-{TRACE}-b7ad6b7169203331"),
            format!("0-{TRACE}-b7ad6b7169203331-01"),
            format!("00-{TRACE}-b7ad6b716920333g-01"),
        ] {
            assert_eq!(TraceParent::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn a_child_keeps_trace_flags_and_state() {
        let context = TraceContext {
            parent: TraceParent::parse(&format!("00-{TRACE}-b7ad6b7169203331-01")).unwrap(),
            state: Some("congo=t61rcWkgMzE".into()),
        };
        let child = context.child();
        assert_eq!(child.parent.trace_id, context.parent.trace_id);
        assert_eq!(child.parent.flags, 1);
        assert_ne!(child.parent.span_id, context.parent.span_id);
        assert_eq!(child.state, context.state);
        let root = TraceContext::new_root();
        assert!(root.parent.sampled() && root.state.is_none());
    }

    #[test]
    fn tracestate_is_joined_and_bounded() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TRACEPARENT,
            format!("00-{TRACE}-b7ad6b7169203331-01").parse().unwrap(),
        );
        headers.append(TRACESTATE, "rojo=00f067aa0ba902b7".parse().unwrap());
        headers.append(TRACESTATE, " congo=t61rcWkgMzE ,".parse().unwrap());
        let context = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(
            context.state.as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        let mut out = HeaderMap::new();
        context.inject(&mut out);
        assert_eq!(out[TRACEPARENT], headers[TRACEPARENT]);
        assert_eq!(out[TRACESTATE], "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");

        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(valid_tracestate(&many.join(",")), None);
        assert!(valid_tracestate(&many[..32].join(",")).is_some());
        let long = format!("k={}", "v".repeat(255));
        assert_eq!(
            valid_tracestate(&[long.as_str(), &long, &long].join(",")),
            None
        );
        for bad in ["novalue", "Upper=v", "k=a,b=", "=v", "k=v=w"] {
            assert_eq!(valid_tracestate(bad), None, "{bad}");
        }
        // An invalid tracestate is dropped, the traceparent kept.
        headers.insert(TRACESTATE, "Bad Key=1".parse().unwrap());
        let context = TraceContext::from_headers(&headers).unwrap();
        assert_eq!(context.state, None);
        headers.remove(TRACEPARENT);
        assert_eq!(TraceContext::from_headers(&headers), None);
    }

    #[tokio::test]
    async fn the_scoped_context_is_current_and_outgoing_calls_continue_it() {
        assert_eq!(current(), None);
        let root = for_outgoing();
        assert!(root.parent.sampled());
        let context = TraceContext::new_root();
        let inside = scope(context.clone(), async {
            let outgoing = for_outgoing();
            (current(), outgoing)
        })
        .await;
        assert_eq!(inside.0.as_ref(), Some(&context));
        // The call is made in the current span: it is the callee's parent.
        assert_eq!(inside.1, context);
    }
}
