//! [`Client::stream`]: `POST /asap/stream` (`docs/asap-2.md` section 7), the answer
//! read as server-sent events, one envelope per event.
//!
//! As the 2.5.10 reference client: the request is the JSON-RPC body of a send with
//! `Accept: text/event-stream` and an `ASAP-Version` offer; each event's `data` is an
//! envelope, and a streamed `TaskStream` or response must carry the request's id as its
//! `correlation_id`. Unlike the reference client, a JSON-RPC error answered instead of a
//! stream (HTTP 200, `application/json`, the usual case) is the error it is, not an
//! empty stream.

use std::pin::Pin;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderValue;
use serde_json::Value;

use super::body::read_capped_text;
use super::{Client, ClientError, ResponseError, envelope_to_send, normalize_base, remote_error};
use crate::json;
use crate::model::{Dialect, Envelope, generate_id, is_stream_bound};
use crate::rpc::{JsonRpcRequest, RequestId};

/// The envelopes of one stream, in the order the agent sent them. It ends when the
/// agent ends the stream (by convention after a `TaskStream` with `final: true`; a
/// stream that ends without one was cut short by the agent), or after its first error.
pub type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<Envelope, ClientError>> + Send>>;

impl Client {
    /// Sends `envelope` to `POST {base_url}/asap/stream` and returns the envelopes the
    /// agent streams back, each as soon as it arrives.
    ///
    /// Errors before the stream starts are returned here: a JSON-RPC error answer
    /// ([`ClientError::Remote`], e.g. `-32012` when the agent streams nothing for this
    /// payload type), another HTTP error, or an answer that is not a stream
    /// ([`ResponseError::NotAStream`]). Errors during the stream are its last item. The
    /// client's timeout bounds the wait for each piece of the stream, not the whole
    /// stream; one event may be at most [`ResponseLimits::envelope`](super::ResponseLimits)
    /// bytes. Not retried: a stream is opened once.
    ///
    /// ```no_run
    /// use asap_protocol::client::Client;
    /// use asap_protocol::model::{Envelope, TaskRequest};
    /// use futures_util::StreamExt;
    ///
    /// # async fn run() -> Result<(), asap_protocol::client::ClientError> {
    /// let client = Client::builder().build()?;
    /// let request = Envelope::new("urn:asap:agent:me", "urn:asap:agent:echo",
    ///     TaskRequest::new("conv_1", "echo", serde_json::json!({"message": "one two"})));
    /// let mut chunks = client.stream("http://127.0.0.1:8000", &request).await?;
    /// while let Some(envelope) = chunks.next().await {
    ///     println!("{}", envelope?.payload["chunk"]);
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// `ws://` and `wss://` URLs (or [`TransportMode::WebSocket`](super::TransportMode))
    /// stream over the agent's WebSocket instead ([`Client::stream_websocket`]).
    pub async fn stream(
        &self,
        base_url: &str,
        envelope: &Envelope,
    ) -> Result<EnvelopeStream, ClientError> {
        if self.uses_websocket(base_url) {
            return self.stream_websocket(base_url, envelope).await;
        }
        let base = normalize_base(base_url, self.inner.config.require_https)?;
        // Streams are 2.x only: the payload typed as the 2.5.10 client writes it.
        let envelope = &*envelope_to_send(envelope, true)?;
        if let Some(breakers) = &self.inner.breakers {
            breakers.allow(&base).map_err(ClientError::CircuitOpen)?;
        }
        let opened = self.open_stream(&base, envelope).await;
        if let Some(breakers) = &self.inner.breakers {
            match &opened {
                Err(error) if error.is_transient() => breakers.failure(&base),
                _ => breakers.success(&base),
            }
        }
        let response = opened?;
        let events = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(ClientError::Transport));
        let events = capped(events, self.inner.config.limits.envelope).eventsource();
        let request_id = envelope.id.clone();
        let envelopes = events.filter_map(move |event| {
            let item = match event {
                Ok(event) if event.data.is_empty() => None,
                Ok(event) => Some(streamed_envelope(&event.data, &request_id)),
                Err(EventStreamError::Transport(error)) => Some(Err(error)),
                Err(error) => Some(Err(ResponseError::StreamEvent(error.to_string()).into())),
            };
            std::future::ready(item)
        });
        Ok(Box::pin(until_error(envelopes)))
    }

    /// Posts the request; the response once it is known to be a stream.
    async fn open_stream(
        &self,
        base: &str,
        envelope: &Envelope,
    ) -> Result<reqwest::Response, ClientError> {
        let id = RequestId::from(format!(
            "req-{}",
            self.inner
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let key = generate_id();
        let mut request = JsonRpcRequest::send(envelope, id);
        request
            .params
            .insert("idempotency_key".into(), key.clone().into());
        let (body, coding) = self.maybe_compress(json::to_python_default(&request).into_bytes());
        let mut headers = self.headers_2x("text/event-stream").await?;
        headers.insert(
            "x-idempotency-key",
            HeaderValue::from_str(&key).expect("a ULID is a valid header"),
        );
        if let Some(coding) = coding {
            headers.insert(
                reqwest::header::CONTENT_ENCODING,
                HeaderValue::from_static(coding),
            );
        }
        let response = self
            .inner
            .stream_http
            .post(format!("{base}/asap/stream"))
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if status.is_success() && content_type.starts_with("text/event-stream") {
            return Ok(response);
        }
        let limit = self.inner.config.limits.envelope;
        let text = read_capped_text(response, limit, "stream answer").await?;
        // A JSON-RPC error, whatever the status (the reference answers 200).
        if let Ok(value) = json::parse(text.as_bytes())
            && let Some(error) = value.get("error")
        {
            return Err(remote_error(error));
        }
        if !status.is_success() {
            return Err(ClientError::Http { status, body: text });
        }
        Err(ResponseError::NotAStream { content_type }.into())
    }
}

/// One event's envelope, bound to the request that opened the stream.
fn streamed_envelope(data: &str, request_id: &str) -> Result<Envelope, ClientError> {
    let value = json::parse(data.as_bytes()).map_err(ResponseError::NotJson)?;
    bound_envelope(&value, request_id)
}

/// A streamed envelope (SSE event or WebSocket result frame), bound to the request
/// that opened the stream: a `TaskStream` or response must carry its id. Streams are
/// 2.x only, so the envelope is read with the 2.x rules.
pub(super) fn bound_envelope(value: &Value, request_id: &str) -> Result<Envelope, ClientError> {
    let envelope =
        Envelope::from_value_in(value, Dialect::V2_2).map_err(ResponseError::Envelope)?;
    if is_stream_bound(&envelope.payload_type)
        && envelope.correlation_id.as_deref() != Some(request_id)
    {
        return Err(ResponseError::Uncorrelated {
            expected: request_id.to_owned(),
            received: envelope.correlation_id,
        }
        .into());
    }
    Ok(envelope)
}

/// Ends `stream` after its first error (a broken stream is not resumed).
fn until_error<S>(stream: S) -> impl Stream<Item = Result<Envelope, ClientError>> + Send
where
    S: Stream<Item = Result<Envelope, ClientError>> + Send,
{
    futures_util::stream::unfold(
        (Box::pin(stream), false),
        |(mut stream, failed)| async move {
            if failed {
                return None;
            }
            let item = stream.next().await?;
            let failed = item.is_err();
            Some((item, (stream, failed)))
        },
    )
}

/// Fails the byte stream once more than `limit` bytes arrive without a blank line
/// (the end of an event), so a peer cannot make the parser buffer without bound.
fn capped<S>(bytes: S, limit: usize) -> impl Stream<Item = Result<Bytes, ClientError>> + Send
where
    S: Stream<Item = Result<Bytes, ClientError>> + Send,
{
    let state = (EventSize::default(), false);
    bytes.scan(state, move |(counter, over), chunk| {
        let item = match chunk {
            _ if *over => None,
            Ok(chunk) if !counter.feed(&chunk, limit) => {
                *over = true;
                Some(Err(ClientError::ResponseTooLarge {
                    what: "stream event",
                    limit,
                }))
            }
            other => Some(other),
        };
        std::future::ready(item)
    })
}

/// The size of the event being received: bytes since the last blank line.
#[derive(Debug, Default)]
struct EventSize {
    pending: usize,
    line: usize,
}

impl EventSize {
    /// Counts `chunk`; `false` once the event in progress exceeds `limit`.
    fn feed(&mut self, chunk: &[u8], limit: usize) -> bool {
        for &byte in chunk {
            match byte {
                b'\n' if self.line == 0 => self.pending = 0,
                b'\n' => {
                    self.line = 0;
                    self.pending += 1;
                }
                b'\r' => self.pending += 1,
                _ => {
                    self.line += 1;
                    self.pending += 1;
                }
            }
            if self.pending > limit {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;

    #[test]
    fn an_event_is_measured_from_the_last_blank_line() {
        let mut size = EventSize::default();
        assert!(size.feed(b"data: 12345\n\n", 12));
        assert_eq!(size.pending, 0);
        assert!(size.feed(b"data: 1234", 12));
        assert!(!size.feed(b"56\n", 12), "13 bytes without an end");
        let mut crlf = EventSize::default();
        assert!(crlf.feed(b"data: 1\r\n\r\ndata: 2\r\n\r\n", 10));
        assert_eq!(crlf.pending, 0);
    }

    #[test]
    fn streamed_envelopes_must_answer_the_request() {
        let mut chunk = Envelope::raw(
            "urn:asap:agent:a",
            "urn:asap:agent:b",
            "TaskStream",
            serde_json::json!({"chunk": "x"})
                .as_object()
                .cloned()
                .unwrap(),
        );
        chunk.correlation_id = Some("req-env".into());
        let text = chunk.to_json();
        assert_eq!(streamed_envelope(&text, "req-env").unwrap(), chunk);
        let error = streamed_envelope(&text, "other").unwrap_err();
        assert!(
            matches!(
                &error,
                ClientError::InvalidResponse(ResponseError::Uncorrelated { received: Some(r), .. }) if r == "req-env"
            ),
            "{error}"
        );
        // Payload types that are not stream-bound are not checked.
        chunk.payload_type = "custom.note".into();
        chunk.correlation_id = None;
        assert!(streamed_envelope(&chunk.to_json(), "req-env").is_ok());
        assert!(streamed_envelope("not json", "req-env").is_err());
    }
}
