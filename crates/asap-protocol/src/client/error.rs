//! Why a client call failed: [`ClientError`], and the typed reasons it groups
//! ([`RequestError`], [`ResponseError`], [`WebSocketError`], [`TlsError`]), each
//! keeping the error it comes from as its [`source`](std::error::Error::source).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio_tungstenite::tungstenite;

use crate::model::envelope::SendError;
use crate::model::{AsapError, DecodeError, ValidationError};
use crate::rpc::RequestId;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The peer answered with a JSON-RPC error.
    #[error("remote error {code}: {message}")]
    Remote {
        /// The JSON-RPC code (for example -32602).
        code: i64,
        /// Its message.
        message: String,
        /// Its `data`.
        data: Option<Value>,
    },
    /// The peer answered with an HTTP error that is not JSON-RPC (413, 415, 429, 503, ...).
    #[error("HTTP {status}: {body}")]
    Http {
        /// The status.
        status: StatusCode,
        /// The body, as text.
        body: String,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("transport error: {0}")]
    Transport(#[from] reqwest::Error),
    /// An answer that is not a valid ASAP response.
    #[error("invalid response: {0}")]
    InvalidResponse(#[from] ResponseError),
    /// The circuit breaker for this peer is open.
    #[error("{0}")]
    CircuitOpen(AsapError),
    /// The request cannot be sent as it is (bad URL, plain HTTP to a remote host, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] RequestError),
    /// The [`TokenSource`](super::TokenSource) could not supply a token (its error is
    /// the source).
    #[error("invalid request: no access token")]
    NoToken(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The peer's manifest speaks a protocol version this client does not
    /// ([`SUPPORTED_ASAP_VERSIONS`]).
    #[error(
        "incompatible agent: {agent} speaks ASAP {asap_version}, this client speaks {SUPPORTED_ASAP_VERSIONS}"
    )]
    Incompatible {
        /// The agent's id (its manifest's `id`).
        agent: String,
        /// The version its manifest offers (`capabilities.asap_version`).
        asap_version: String,
    },
    /// The WebSocket connection could not be opened, or closed for good.
    #[error("WebSocket: {0}")]
    WebSocket(#[from] WebSocketError),
    /// The TLS settings cannot be used (a malformed root certificate, no trust store).
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The peer's answer was larger than the client reads
    /// ([`ResponseLimits`](super::ResponseLimits)).
    #[error("the {what} is larger than {limit} bytes")]
    ResponseTooLarge {
        /// What was being read (`response envelope`, `manifest`, `health document`).
        what: &'static str,
        /// The cap it passed.
        limit: usize,
    },
    /// No answer within the time allowed.
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    /// An envelope that asked for an ack got none, after every retransmission.
    #[error("envelope {envelope_id} was not acknowledged after {attempts} attempts")]
    NotAcknowledged {
        /// The envelope's id.
        envelope_id: String,
        /// How many times it was sent.
        attempts: u32,
    },
}

/// The protocol versions this client speaks, as [`ClientError::Incompatible`] says them.
pub const SUPPORTED_ASAP_VERSIONS: &str = "0.x and 1.x";

impl ClientError {
    /// The JSON-RPC code, for remote errors.
    pub fn rpc_code(&self) -> Option<i64> {
        match self {
            Self::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying the same request could succeed.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Self::Transport(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            Self::Http { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            _ => false,
        }
    }
}

/// Why a request cannot be sent as it is ([`ClientError::InvalidRequest`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The agent's base URL does not parse.
    #[error("{url:?} is not a URL: {source}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        source: url::ParseError,
    },
    /// Plain `http://` to a host that is not loopback while HTTPS is required
    /// ([`ClientBuilder::require_https`](super::ClientBuilder::require_https)).
    #[error("{url} uses plain HTTP to a remote host; use https:// or turn require_https off")]
    InsecureTransport {
        /// The URL.
        url: String,
    },
    /// A scheme other than `http`, `https`, `ws` and `wss`.
    #[error("unsupported URL scheme {scheme:?}")]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
    },
    /// The WebSocket URL cannot start a handshake.
    #[error("{url}: {source}")]
    InvalidWebSocketUrl {
        /// The URL.
        url: String,
        /// Why tungstenite refuses it.
        source: Box<tungstenite::Error>,
    },
    /// The envelope may not be sent as it is (an invalid URN, a response without its
    /// correlation id).
    #[error("{0}")]
    Envelope(#[from] SendError),
    /// The payload does not satisfy its ASAP 2.x model, which a 2.x exchange requires
    /// (for example an unknown member in `TaskRequest.config`).
    #[error("the payload does not satisfy its ASAP 2.x model: {0}")]
    Payload2x(#[source] crate::model::ValidationError),
    /// The bearer token cannot be written in an `Authorization` header.
    #[error("the bearer token is not a valid header value")]
    InvalidToken(#[source] reqwest::header::InvalidHeaderValue),
    /// A batch without envelopes ([`Client::batch`](super::Client::batch)).
    #[error("a batch needs at least one envelope")]
    EmptyBatch,
    /// A batch of more envelopes than the client sends at once
    /// ([`ClientBuilder::max_batch_size`](super::ClientBuilder::max_batch_size)).
    #[error("batch size {size} exceeds max {max}")]
    BatchTooLarge {
        /// Envelopes in the batch.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Why an answer is not a valid ASAP response ([`ClientError::InvalidResponse`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// A manifest whose signature is required and was not verified
    /// ([`ClientBuilder::verify_manifest_signatures`](super::ClientBuilder::verify_manifest_signatures)).
    #[cfg(feature = "signing")]
    #[error(transparent)]
    ManifestSignature(#[from] super::ManifestSignatureError),
    /// The body is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// A JSON-RPC success for another request.
    #[error("response id {received} does not match request id {expected}")]
    IdMismatch {
        /// The request's id.
        expected: RequestId,
        /// The `id` of the answer (`null` when it has none).
        received: Value,
    },
    /// The answer to a batch is neither an array nor a JSON-RPC error.
    #[error("the answer to a batch is not an array")]
    NotABatch,
    /// The answer to a batch has another number of members than the batch.
    #[error("{received} answers to a batch of {expected}")]
    BatchLength {
        /// Requests in the batch.
        expected: usize,
        /// Answers received.
        received: usize,
    },
    /// A batch answer names a request id that was not in the batch.
    #[error("batch answer for unknown request id {received}")]
    UnknownBatchId {
        /// The answer's `id`.
        received: Value,
    },
    /// Two batch answers for one request.
    #[error("two batch answers for request id {expected}")]
    DuplicateBatchAnswer {
        /// The request's id.
        expected: RequestId,
    },
    /// A JSON-RPC success without `result.envelope`.
    #[error("no result.envelope in the response")]
    MissingEnvelope,
    /// `result.envelope` fails the wire model.
    #[error("{0}")]
    Envelope(#[source] ValidationError),
    /// The agent's manifest is not JSON or fails the wire model.
    #[error("invalid manifest: {0}")]
    Manifest(#[source] DecodeError),
    /// The agent's health document is not JSON or fails the wire model.
    #[error("invalid health document: {0}")]
    HealthDocument(#[source] DecodeError),
    /// `POST /asap/stream` answered something else than server-sent events or a
    /// JSON-RPC error.
    #[error("the answer is not a stream of events (content-type {content_type:?})")]
    NotAStream {
        /// The answer's `content-type`.
        content_type: String,
    },
    /// The stream's bytes are not server-sent events.
    #[error("malformed server-sent event: {0}")]
    StreamEvent(String),
    /// A streamed `TaskStream` or response whose `correlation_id` is not the id of the
    /// request that opened the stream.
    #[error("streamed envelope answers {received:?}, not the request {expected}")]
    Uncorrelated {
        /// The request envelope's id.
        expected: String,
        /// The streamed envelope's `correlation_id`.
        received: Option<String>,
    },
}

/// Why a WebSocket call failed ([`ClientError::WebSocket`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// The handshake failed (refused, DNS, TLS, not a WebSocket endpoint).
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The `ws://` or `wss://` URL.
        url: String,
        /// Why.
        source: Box<tungstenite::Error>,
    },
    /// The connection had already given up when the call was made.
    #[error("the connection is closed")]
    Closed,
    /// The connection was lost while the call waited, and could not be reopened.
    #[error("{0}")]
    Disconnected(#[source] Disconnect),
    /// A stream's reader fell behind: more frames arrived than
    /// [`WebSocketOptions::stream_buffer`](super::WebSocketOptions::stream_buffer) holds,
    /// so the stream was ended rather than buffered without bound.
    #[error("the stream's reader fell more than {limit} frames behind; the stream was ended")]
    StreamBacklog {
        /// The buffer's size, in frames.
        limit: usize,
    },
}

/// Why an open WebSocket connection ended ([`WebSocketError::Disconnected`]). Every
/// call waiting on the connection gets its own copy; the socket's error, shared
/// between them, is the [`source`](std::error::Error::source) as a
/// [`tungstenite::Error`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Disconnect {
    /// The client closed the connection.
    ClosedByClient,
    /// A frame could not be written.
    Write(Arc<tungstenite::Error>),
    /// The socket could not be read.
    Read(Arc<tungstenite::Error>),
    /// A heartbeat ping could not be written.
    Ping(Arc<tungstenite::Error>),
    /// Nothing came from the server for this long, longer than
    /// [`WebSocketOptions::stale_after`](super::WebSocketOptions::stale_after).
    Stale(Duration),
    /// The server ended the stream, or closed it without a close frame.
    ServerClosed,
    /// The server sent a close frame.
    ServerClosedWith {
        /// Its close code (RFC 6455 section 7.4).
        code: u16,
        /// Its reason.
        reason: String,
    },
}

impl std::fmt::Display for Disconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClosedByClient => f.write_str("the connection was closed"),
            Self::Write(e) => write!(f, "write failed: {e}"),
            Self::Read(e) => write!(f, "read failed: {e}"),
            Self::Ping(e) => write!(f, "ping failed: {e}"),
            Self::Stale(silence) => {
                write!(f, "no frame from the server for {} s", silence.as_secs())
            }
            Self::ServerClosed => f.write_str("the server closed the connection"),
            Self::ServerClosedWith { code, reason } => {
                write!(f, "closed by the server: {code} {reason}")
            }
        }
    }
}

/// The source is the socket's [`tungstenite::Error`] itself (not the `Arc` sharing it),
/// so callers can downcast to it.
impl std::error::Error for Disconnect {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Write(e) | Self::Read(e) | Self::Ping(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// Why the client's TLS settings cannot be used ([`ClientError::Tls`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A root certificate document is not valid PEM.
    #[error("root certificates: {0}")]
    Pem(#[source] rustls::pki_types::pem::Error),
    /// A root certificate document holds no `CERTIFICATE` block.
    #[error("root certificates: no CERTIFICATE block in the PEM document")]
    NoCertificate,
    /// rustls refuses a root certificate.
    #[error("root certificates: {0}")]
    InvalidRoot(#[source] rustls::Error),
    /// reqwest refuses a root certificate.
    #[error("root certificates: {0}")]
    HttpsRoot(#[source] reqwest::Error),
    /// The platform's trust store, with the extra roots, cannot be used.
    #[error("trust store: {0}")]
    TrustStore(#[source] rustls::Error),
    /// The crypto provider supports none of the safe protocol versions.
    #[error("{0}")]
    ProtocolVersions(#[source] rustls::Error),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn displays_keep_the_cause_and_sources_keep_the_error() {
        let parse = url::Url::parse("nope").unwrap_err();
        let error = ClientError::from(RequestError::InvalidUrl {
            url: "nope".into(),
            source: parse,
        });
        assert_eq!(
            error.to_string(),
            format!("invalid request: \"nope\" is not a URL: {parse}")
        );
        let request = error.source().unwrap();
        assert!(request.is::<RequestError>());
        assert!(request.source().unwrap().is::<url::ParseError>());

        let lost = ClientError::from(WebSocketError::Disconnected(Disconnect::Write(Arc::new(
            tungstenite::Error::ConnectionClosed,
        ))));
        assert_eq!(
            lost.to_string(),
            format!(
                "WebSocket: write failed: {}",
                tungstenite::Error::ConnectionClosed
            )
        );
        let disconnect = lost.source().unwrap().source().unwrap();
        assert!(disconnect.is::<Disconnect>());
        assert!(disconnect.source().unwrap().is::<tungstenite::Error>());

        let incompatible = ClientError::Incompatible {
            agent: "urn:asap:agent:x".into(),
            asap_version: "2.0".into(),
        };
        assert_eq!(
            incompatible.to_string(),
            "incompatible agent: urn:asap:agent:x speaks ASAP 2.0, this client speaks 0.x and 1.x"
        );
    }
}
