//! Server limits and switches, with the reference's defaults and environment variables
//! (wire spec section 15).

use std::time::Duration;

use super::client_addr::TrustedProxies;
use super::discovery::ManifestDialect;
use super::origin::AllowedOrigins;
use super::rate_limit::{RateLimitError, RateLimitRule};
use crate::model::Dialect;

/// Default `ASAP_MAX_REQUEST_SIZE`: 10 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 10 * 1024 * 1024;
/// Default `ASAP_RATE_LIMIT`.
pub const DEFAULT_RATE_LIMIT: &str = "10/second;100/minute";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable holds a value that cannot be used.
    #[error("{name}={value:?}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rate limit expression is invalid.
    #[error(transparent)]
    RateLimit(#[from] RateLimitError),
}

/// Every limit and switch of the HTTP server. `Default` gives the reference's defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest request body, before and after decompression (`ASAP_MAX_REQUEST_SIZE`).
    pub max_request_size: usize,
    /// Per-client-IP limits on `POST /asap` (`ASAP_RATE_LIMIT`); empty turns limiting off.
    pub rate_limits: Vec<RateLimitRule>,
    /// Oldest envelope timestamp accepted.
    pub max_envelope_age: Duration,
    /// How far in the future an envelope timestamp may be.
    pub max_future_tolerance: Duration,
    /// Whether `extensions.nonce` is checked for replays.
    pub require_nonce: bool,
    /// How long a nonce is remembered.
    pub nonce_ttl: Duration,
    /// Most nonces remembered at once; beyond it the oldest are forgotten first.
    pub nonce_capacity: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Include error details in `-32603` answers (`ASAP_DEBUG`); never in production.
    pub debug: bool,
    /// Most requests handled at once; beyond it `503` (`ASAP_MAX_THREADS`); `None` is unbounded.
    pub max_concurrent_handlers: Option<usize>,
    /// Write the server span's trace ids into responses, as the reference does (section 9.12).
    pub trace_injection: bool,
    /// Longest time to receive a request body; a slower client gets 408.
    pub body_read_timeout: Duration,
    /// Longest time to receive a request's headers (10 s), counted from when the server
    /// starts waiting for them: a connection that has not sent a complete request head
    /// by then is closed (slowloris). On a kept-alive connection the wait for the next
    /// request counts too, so this also closes keep-alive connections idle this long.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves in either direction for this long, while no
    /// request is being handled, is closed (60 s): for example a client that stopped
    /// reading its response. WebSocket connections follow `websocket.stale_after`.
    pub idle_timeout: Duration,
    /// Most HTTP connections open at once (10 000); further connections are closed as
    /// soon as they are accepted. Upgraded WebSocket connections count against
    /// `websocket.max_connections` instead.
    pub max_connections: usize,
    /// Most request body bytes held in memory across all requests at once (256 MiB),
    /// received and decompressed alike; a request that would go beyond it gets 503.
    pub max_buffered_bytes: usize,
    /// When the server requires a bearer token (manifest `auth` with a validator), the
    /// largest body read from a request whose token is missing or refused (64 KiB): the
    /// token is checked before the body is read, and a larger body is not read at all
    /// but answered with the authentication error. The reference reads the whole body
    /// first; set this to `max_request_size` to do the same.
    pub unauthenticated_body_limit: usize,
    /// Refuse envelopes without `extensions.nonce` when `require_nonce` is on (off: the
    /// reference accepts them and only checks the nonces it is given).
    pub reject_missing_nonce: bool,
    /// Refuse an envelope whose `id` was already seen within the nonce window (off: the
    /// reference does not check ids).
    pub reject_repeated_ids: bool,
    /// Compress responses (gzip or Brotli, as `Accept-Encoding` allows). Off by default:
    /// the reference never compresses responses.
    pub compress_responses: bool,
    /// The WebSocket binding's limits (`/asap/ws`).
    pub websocket: WebSocketConfig,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client
    /// for rate limiting and logs (none by default: the peer is the client).
    pub trusted_proxies: TrustedProxies,
    /// Browser origins allowed besides the server's own: a request or WebSocket upgrade
    /// with any other `Origin` gets 403; requests without `Origin` are not affected.
    pub allowed_origins: AllowedOrigins,
    /// The dialects `POST /asap` speaks (all by default). A request picks one with its
    /// `ASAP-Version` header (the first token, in the client's order, listed here); a
    /// request without the header speaks 1.1 when it is listed, else the newest 2.x
    /// listed (as the reference); a header naming none gets `-32000`. With no 2.x
    /// dialect listed the header is ignored and every request speaks 1.1.
    pub dialects: Vec<Dialect>,
    /// The most requests in one JSON-RPC batch (a JSON array body, served to 2.x
    /// requests only; 50 as the 2.5.10 reference): a larger batch gets one `-32600`
    /// answer, `data {"reason": "batch size N exceeds max M"}`.
    pub max_batch_size: usize,
    /// The manifest shape `GET /.well-known/asap/manifest.json` serves to a request
    /// without a 2.x `ASAP-Version` header (1.1 by default; a request naming a 2.x
    /// dialect listed in `dialects` always gets the 2.x shape).
    pub manifest_dialect: ManifestDialect,
}

/// Limits of the WebSocket binding (wire spec section 11). `Default` gives the
/// reference's values where it has them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WebSocketConfig {
    /// Serve `/asap/ws` at all.
    pub enabled: bool,
    /// Interval of the `{"type": "ping"}` heartbeat (30 s).
    pub ping_interval: Duration,
    /// A connection silent for longer is closed with 1001 (90 s; the reference only stops
    /// pinging it).
    pub stale_after: Duration,
    /// Messages per second per connection, with as large a burst (10); `None` turns the
    /// limit off. Exceeding it gets the -32001 frame and close 1008.
    pub message_rate: Option<u32>,
    /// Most open connections; further upgrades get 503 (1024).
    pub max_connections: usize,
    /// When the server requires a bearer token (manifest `auth`), require it on the
    /// upgrade too: without a valid one the upgrade gets 401 and takes no connection
    /// slot (on). Off, as the reference, the upgrade is open and each message is refused.
    pub authenticate_upgrade: bool,
    /// Largest frame and message accepted by the WebSocket layer (16 MiB, as uvicorn);
    /// ASAP's `max_request_size` applies to each message after it.
    pub max_message_size: usize,
    /// Frames waiting to be written per connection (responses, acks, pushes) before
    /// handlers wait (256).
    pub send_queue: usize,
    /// Messages received but not yet handled per connection before reading pauses (64).
    pub receive_queue: usize,
    /// How long the answer to an envelope that asked for an ack is kept, so a
    /// retransmission of the same envelope id is answered without running the handler
    /// again (the replay window, 300 s).
    pub dedup_window: Duration,
    /// Most answers kept for de-duplication (10 000).
    pub dedup_capacity: usize,
    /// After the answer to an envelope that asked for an ack, send a second ack:
    /// `processed`, or `rejected` with the reason (on). The reference sends only
    /// `received`; its clients ignore the status, but tools that keep one ack per
    /// envelope see the later one.
    pub completion_acks: bool,
    /// After sending a close frame, how long to wait for the client's (5 s).
    pub close_timeout: Duration,
    /// Bytes read from the socket at a time (16 KiB; larger frames are read whole).
    /// The WebSocket layer clears this much memory on every read attempt, so a large
    /// value costs CPU on every message.
    pub read_buffer_size: usize,
}

impl Default for WebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ping_interval: Duration::from_secs(30),
            stale_after: Duration::from_secs(90),
            message_rate: Some(10),
            max_connections: 1024,
            authenticate_upgrade: true,
            max_message_size: 16 * 1024 * 1024,
            send_queue: 256,
            receive_queue: 64,
            dedup_window: Duration::from_secs(300),
            dedup_capacity: 10_000,
            completion_acks: true,
            close_timeout: Duration::from_secs(5),
            read_buffer_size: 16 * 1024,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            rate_limits: RateLimitRule::parse_list(DEFAULT_RATE_LIMIT)
                .expect("the default rate limit parses"),
            max_envelope_age: Duration::from_secs(300),
            max_future_tolerance: Duration::from_secs(30),
            require_nonce: false,
            nonce_ttl: Duration::from_secs(600),
            nonce_capacity: 1_000_000,
            shutdown_grace: Duration::from_secs(30),
            debug: false,
            max_concurrent_handlers: None,
            trace_injection: true,
            compress_responses: false,
            body_read_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_buffered_bytes: 256 * 1024 * 1024,
            unauthenticated_body_limit: 64 * 1024,
            reject_missing_nonce: false,
            reject_repeated_ids: false,
            websocket: WebSocketConfig::default(),
            trusted_proxies: TrustedProxies::default(),
            allowed_origins: AllowedOrigins::default(),
            dialects: Dialect::ALL.to_vec(),
            max_batch_size: crate::rpc::DEFAULT_MAX_BATCH_SIZE,
            manifest_dialect: ManifestDialect::default(),
        }
    }
}

/// `true`, `1`, `yes`, `on` (any case) as the reference reads boolean variables.
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "true" | "1" | "yes" | "on"
    )
}

impl ServerConfig {
    /// The defaults, overridden by `ASAP_MAX_REQUEST_SIZE`, `ASAP_RATE_LIMIT`,
    /// `ASAP_MAX_THREADS` and `ASAP_DEBUG` where set.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`ServerConfig::from_env`] with an explicit variable source (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        if let Some(value) = get("ASAP_MAX_REQUEST_SIZE") {
            config.max_request_size =
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| ConfigError::Env {
                        name: "ASAP_MAX_REQUEST_SIZE",
                        value: value.clone(),
                        reason: "expected a positive number of bytes".into(),
                    })?;
        }
        if let Some(value) = get("ASAP_RATE_LIMIT") {
            config.rate_limits = RateLimitRule::parse_setting(&value)?;
        }
        if let Some(value) = get("ASAP_MAX_THREADS") {
            let n: usize = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConfigError::Env {
                    name: "ASAP_MAX_THREADS",
                    value: value.clone(),
                    reason: "expected a positive integer".into(),
                })?;
            config.max_concurrent_handlers = Some(n);
        }
        if let Some(value) = get("ASAP_DEBUG") {
            config.debug = truthy(&value);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides() {
        let env = |name: &str| match name {
            "ASAP_MAX_REQUEST_SIZE" => Some("1024".to_owned()),
            "ASAP_RATE_LIMIT" => Some("2/second".to_owned()),
            "ASAP_DEBUG" => Some("Yes".to_owned()),
            "ASAP_MAX_THREADS" => Some("4".to_owned()),
            _ => None,
        };
        let c = ServerConfig::from_lookup(env).unwrap();
        assert_eq!(c.max_request_size, 1024);
        assert_eq!(c.rate_limits.len(), 1);
        let off = ServerConfig::from_lookup(|n| (n == "ASAP_RATE_LIMIT").then(|| "OFF".to_owned()));
        assert!(off.unwrap().rate_limits.is_empty());
        assert!(c.debug);
        assert_eq!(c.max_concurrent_handlers, Some(4));
        let bad = ServerConfig::from_lookup(|n| {
            (n == "ASAP_MAX_REQUEST_SIZE").then(|| "lots".to_owned())
        })
        .unwrap_err();
        assert_eq!(
            bad.to_string(),
            "ASAP_MAX_REQUEST_SIZE=\"lots\": expected a positive number of bytes"
        );
        assert!(
            ServerConfig::from_lookup(|n| (n == "ASAP_RATE_LIMIT").then(|| "ten".to_owned()))
                .is_err()
        );
        let d = ServerConfig::default();
        assert_eq!(
            (d.max_request_size, d.rate_limits.len(), d.debug),
            (10_485_760, 2, false)
        );
    }

    #[test]
    fn truthy_values() {
        for v in ["true", "1", "YES", " on "] {
            assert!(truthy(v));
        }
        for v in ["false", "0", "", "enabled"] {
            assert!(!truthy(v));
        }
    }
}
