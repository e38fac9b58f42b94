//! The closed label value sets of the metrics: every label value the server writes
//! comes from one of these enums (or from the handler registry, for `payload_type`), so
//! no input can grow the number of series.

/// Declares a label enum with its values, `ALL` and `as_str`.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order (each is pre-initialised to zero).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $value,)+
                }
            }
        }
    };
}

label_enum! {
    /// Why the server refused a request or a connection: the `reason` of
    /// `asap_refusals_total`.
    RefusalReason {
        /// HTTP 429: the per-client rate limit.
        RateLimit = "rate_limit",
        /// HTTP 413: declared, read or decompressed body above the limit.
        BodyTooLarge = "body_too_large",
        /// HTTP 408: the body did not arrive in time.
        BodyTimeout = "body_timeout",
        /// HTTP 415: an unsupported `Content-Encoding`.
        UnsupportedEncoding = "unsupported_encoding",
        /// HTTP 400: the body could not be read or decoded.
        MalformedBody = "malformed_body",
        /// HTTP 503: the buffered-bytes budget of all requests is spent.
        BufferBudget = "buffer_budget",
        /// A missing or invalid token: OAuth2 401/403, manifest bearer, WebSocket upgrade.
        Auth = "auth",
        /// The envelope's sender is not the authenticated identity.
        SenderMismatch = "sender_mismatch",
        /// A nonce seen before (or missing, when required).
        ReplayNonce = "replay_nonce",
        /// An envelope id seen before (`reject_repeated_ids`).
        ReplayId = "replay_id",
        /// A timestamp outside the accepted window.
        ReplayTimestamp = "replay_timestamp",
        /// HTTP 403: a foreign browser `Origin`.
        Origin = "origin",
        /// An unsupported `ASAP-Version` (-32000).
        Version = "version",
        /// A connection closed at once: too many open HTTP connections.
        ConnectionLimit = "connection_limit",
        /// A WebSocket upgrade refused: too many WebSocket connections.
        WebSocketLimit = "websocket_limit",
        /// A WebSocket connection closed for sending messages too fast.
        WebSocketMessageRate = "websocket_message_rate",
        /// A TLS handshake refused (too many in progress), failed or timed out.
        TlsHandshake = "tls_handshake",
        /// HTTP 503: every handler slot is busy.
        ThreadPool = "thread_pool",
        /// HTTP 503: shared state (rate limits, replay guards) unreachable.
        DependencyUnavailable = "dependency_unavailable",
        /// HTTP 503: a WebSocket upgrade during shutdown.
        ShuttingDown = "shutting_down",
    }
}

label_enum! {
    /// The `direction` of `asap_websocket_messages_total`.
    Direction {
        /// Text frames received.
        In = "in",
        /// Text frames sent (answers, acks, pushes; heartbeat pings excluded).
        Out = "out",
    }
}

label_enum! {
    /// The `outcome` of `asap_webhook_attempts_total`.
    WebhookOutcome {
        /// The callback answered 2xx.
        Delivered = "delivered",
        /// Failed; tried again later.
        Retry = "retry",
        /// Failed for the last time; moved to the dead letters.
        DeadLetter = "dead_letter",
        /// The URL's address is not allowed (SSRF policy); moved to the dead letters.
        Blocked = "blocked",
        /// Postponed by the per-URL rate limit, without using up an attempt.
        RateLimited = "rate_limited",
    }
}

label_enum! {
    /// The `outcome` of `asap_jwks_fetches_total`.
    FetchOutcome {
        /// A key set was fetched and parsed.
        Ok = "ok",
        /// The fetch or the parse failed.
        Error = "error",
    }
}

label_enum! {
    /// The `outcome` of `asap_introspection_requests_total`.
    IntrospectionOutcome {
        /// The token is active.
        Active = "active",
        /// The token is not active.
        Inactive = "inactive",
        /// The call failed.
        Error = "error",
    }
}

label_enum! {
    /// The `call` of `asap_auth_call_duration_seconds`.
    AuthCall {
        /// A JWKS fetch.
        Jwks = "jwks",
        /// A token introspection request.
        Introspection = "introspection",
    }
}

label_enum! {
    /// The `backend` of `asap_store_operation_duration_seconds`.
    StoreBackend {
        /// [`MemoryStore`](crate::store::MemoryStore).
        Memory = "memory",
        /// `SqliteStore` (feature `sqlite`).
        Sqlite = "sqlite",
        /// `PostgresStore` (feature `postgres`).
        Postgres = "postgres",
        /// A store of the application's own.
        Custom = "custom",
    }
}

label_enum! {
    /// The `operation` of `asap_store_operation_duration_seconds`: the `Store` methods.
    StoreOperation {
        /// `TaskStore::get_task`.
        GetTask = "get_task",
        /// `SnapshotStore::save`.
        SaveSnapshot = "save_snapshot",
        /// `SnapshotStore::get`.
        GetSnapshot = "get_snapshot",
        /// `SnapshotStore::list_versions`.
        ListVersions = "list_versions",
        /// `SnapshotStore::delete`.
        DeleteSnapshot = "delete_snapshot",
        /// `MeteringStore::record`.
        RecordUsage = "record_usage",
        /// `MeteringStore::query`.
        QueryUsage = "query_usage",
        /// `MeteringStore::aggregate`.
        AggregateUsage = "aggregate_usage",
        /// `Store::commit`.
        Commit = "commit",
        /// `Store::ping`.
        Ping = "ping",
    }
}

label_enum! {
    /// The `reason` of `asap_transport_send_errors_total`: the kind of the client's
    /// error (the reference writes Python exception class names there).
    SendErrorReason {
        /// A JSON-RPC error answer.
        Remote = "remote",
        /// An HTTP error that is not JSON-RPC.
        Http = "http",
        /// No answer: connection refused, reset.
        Transport = "transport",
        /// An answer that is not a valid ASAP response.
        InvalidResponse = "invalid_response",
        /// The circuit breaker is open.
        CircuitOpen = "circuit_open",
        /// The request cannot be sent as it is.
        InvalidRequest = "invalid_request",
        /// No access token.
        NoToken = "no_token",
        /// The peer speaks another protocol version.
        Incompatible = "incompatible",
        /// A WebSocket failure.
        WebSocket = "websocket",
        /// Unusable TLS settings.
        Tls = "tls",
        /// The answer was too large.
        ResponseTooLarge = "response_too_large",
        /// No answer in time.
        Timeout = "timeout",
        /// An envelope never acknowledged.
        NotAcknowledged = "not_acknowledged",
        /// Any other error.
        Other = "other",
    }
}
