//! [`Client::stream_websocket`]: a stream over the agent's WebSocket in the 2.x dialect
//! (`docs/asap-2.md` section 9), as the 2.5.10 reference's
//! `WebSocketTransport.send_and_receive_stream` reads it: one `asap.send` frame, then
//! the result frames carrying the request's JSON-RPC id, one envelope each, until the
//! one whose payload has `final: true`; an error frame with the id ends it as an error.

use std::time::Duration;

use serde_json::Value;

use super::StreamFrames;
use crate::client::stream::{EnvelopeStream, bound_envelope};
use crate::client::{Client, ClientError, ResponseError, envelope_to_send, remote_error};
use crate::model::{Envelope, TASK_STREAM, normalized_payload_type};

impl Client {
    /// Sends `envelope` over the agent's WebSocket (`base_url` is any of its URLs),
    /// offering the 2.x dialect on the handshake, and returns the envelopes the agent
    /// streams back, each as soon as its frame arrives.
    ///
    /// The stream ends after the envelope whose payload has `final: true` (a
    /// `TaskStream`'s last chunk), after an envelope that is no `TaskStream` (the one
    /// answer of an agent without a streaming handler for the payload type), or after
    /// its first error. The client's timeout bounds the wait for each frame, not the
    /// whole stream. Errors before the first envelope are
    /// returned here ([`ClientError::Remote`] for a JSON-RPC error frame). The
    /// connection is the pooled one for the agent and this offer; the request is sent
    /// once (no retransmission; an ack the agent sends is not waited for).
    pub async fn stream_websocket(
        &self,
        base_url: &str,
        envelope: &Envelope,
    ) -> Result<EnvelopeStream, ClientError> {
        let url = self.checked_websocket_url(base_url)?;
        // Streams are 2.x only: the payload typed as the 2.5.10 client writes it.
        let mut envelope = envelope_to_send(envelope, true)?.into_owned();
        if super::needs_ack(&envelope.payload_type) {
            envelope.requires_ack = true;
        }
        let options = &self.inner.config.websocket;
        let offer = Some(self.offer_2x());
        let connection = self
            .inner
            .sockets
            .get((&url, offer), self.credentials(), options)
            .await?;
        let mut reading = Reading {
            frames: connection.open_stream(&envelope, options.stream_buffer)?,
            request_id: envelope.id.clone(),
            timeout: self.inner.config.timeout,
        };
        let first = reading.next().await?;
        let done = is_final(&first);
        let rest = futures_util::stream::unfold((!done).then_some(reading), |reading| async move {
            let mut reading = reading?;
            match reading.next().await {
                Ok(envelope) if is_final(&envelope) => Some((Ok(envelope), None)),
                Ok(envelope) => Some((Ok(envelope), Some(reading))),
                Err(error) => Some((Err(error), None)),
            }
        });
        let first = futures_util::stream::once(std::future::ready(Ok(first)));
        Ok(Box::pin(futures_util::StreamExt::chain(first, rest)))
    }
}

/// Whether a streamed envelope is the last of its stream: its payload says `final:
/// true`, or it is no `TaskStream` chunk at all (a unary answer: the agent streams
/// nothing for this payload type, or speaks 1.1, and sends exactly one frame).
fn is_final(envelope: &Envelope) -> bool {
    envelope.payload.get("final") == Some(&Value::Bool(true))
        || normalized_payload_type(&envelope.payload_type) != normalized_payload_type(TASK_STREAM)
}

/// The frames of one stream being read.
struct Reading {
    frames: StreamFrames,
    request_id: String,
    timeout: Duration,
}

impl Reading {
    /// The next envelope of the stream, or the error that ends it.
    async fn next(&mut self) -> Result<Envelope, ClientError> {
        let frame = match tokio::time::timeout(self.timeout, self.frames.next()).await {
            Err(_) => return Err(ClientError::Timeout(self.timeout)),
            Ok(None) => return Err(crate::client::WebSocketError::Closed.into()),
            Ok(Some(frame)) => frame?,
        };
        if let Some(error) = frame.get("error") {
            return Err(remote_error(error));
        }
        let Some(envelope) = frame.pointer("/result/envelope") else {
            return Err(ResponseError::MissingEnvelope.into());
        };
        bound_envelope(envelope, &self.request_id)
    }
}
