//! `POST /asap`: the processing pipeline of wire spec section 9.2, in its normative
//! order, so a request with several defects gets the same error as from the reference.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use tokio::time::Instant;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};

use super::AppState;
use super::access_log;
use super::auth::{AuthFailure, AuthenticatedCaller, authenticate};
use super::batch;
use super::body::{
    BodyRejection, Coding, HeldBytes, check_declared_length, coding, decode_within, read_limited,
};
use super::handler::{HandlerContext, HandlerError, Push};
use super::metrics::{ErrorType, RefusalReason, body_refusal};
use super::replay::{check_timestamp, duplicate_id, duplicate_nonce, nonce_to_check};
use super::response::{detail, json_response};
use super::shared_state::{SharedStateError, unavailable_body};
use super::trace::{self, ServerSpan};
use crate::json;
use crate::model::{AsapError, Dialect, Envelope};
use crate::rpc::{
    ASAP_METHOD, ErrorCode, JsonRpcError, JsonRpcErrorResponse, JsonRpcResponse, RequestId,
    parse_request, rate_limited_body,
};
use crate::trace_context::{self, TraceContext};
use tracing::Instrument;

/// A JSON-RPC failure on its way out: the error, the id to echo, and its metric label;
/// or, when `unavailable` is set, not a JSON-RPC answer but a `503` (a check needed
/// shared state that could not be reached).
pub(crate) struct Failure {
    pub(crate) error: JsonRpcError,
    pub(crate) id: Option<RequestId>,
    pub(crate) kind: ErrorType,
    pub(crate) unavailable: Option<SharedStateError>,
}

fn failure(code: ErrorCode, data: Value, id: Option<RequestId>, kind: ErrorType) -> Failure {
    Failure {
        error: JsonRpcError::new(code, data),
        id,
        kind,
        unavailable: None,
    }
}

/// A request refused because shared state needed by a check is unavailable.
pub(crate) fn unavailable(error: SharedStateError, id: Option<RequestId>) -> Failure {
    Failure {
        error: JsonRpcError::new(ErrorCode::InternalError, Value::Null),
        id,
        kind: ErrorType::DependencyUnavailable,
        unavailable: Some(error),
    }
}

/// Python's `type(x).__name__` for a parsed JSON value.
fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.to_string().contains(['.', 'e', 'E']) => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

pub(crate) async fn handle(
    State(state): State<AppState>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    caller: Option<Extension<AuthenticatedCaller>>,
    dialect: Option<Extension<Dialect>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    // Negotiated by `super::dialect::negotiate`; a router without it speaks 1.1.
    let dialect = dialect.map_or(Dialect::V1_1, |Extension(d)| d);
    let received = match receive(&state, connect_info, &headers, body, started, dialect).await {
        Ok(received) => received,
        Err(response) => return response,
    };
    let caller = caller.map(|Extension(c)| c);
    let input = match received.body {
        ReceivedBody::Batch(members) => {
            let (state, headers, caller) = (&state, &headers, caller.as_ref());
            let bearer = received.bearer;
            let respond = move |member| {
                let sent = Sent {
                    headers,
                    caller,
                    push: None,
                    dialect,
                };
                let bearer = bearer.clone();
                respond_checked(state, sent, Input::Parsed(member), Instant::now(), bearer)
            };
            let response = batch::answer(state, received.client, members, started, respond).await;
            drop(received.held);
            return response;
        }
        ReceivedBody::Parsed(value) => Input::Parsed(value),
        ReceivedBody::Raw(ref bytes) => Input::Raw(bytes),
    };
    let sent = Sent {
        headers: &headers,
        caller: caller.as_ref(),
        push: None,
        dialect,
    };
    let (status, body) = respond_checked(&state, sent, input, started, received.bearer).await;
    drop(received.held);
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

/// A request body read and decoded within the limits (steps 1 to 5), with step 11's
/// outcome when the server requires a bearer token.
pub(crate) struct Received {
    /// The body.
    pub(crate) body: ReceivedBody,
    /// Step 11's outcome, when the server requires a bearer token.
    pub(crate) bearer: Option<Result<String, AuthFailure>>,
    /// The body's share of the buffered-bytes budget, until dropped.
    pub(crate) held: HeldBytes,
    /// The client's address, as the rate limits count it.
    pub(crate) client: IpAddr,
}

/// A request body as [`receive`] hands it on.
pub(crate) enum ReceivedBody {
    /// The decoded bytes (1.1, or 2.x bytes that are not JSON or not identity-coded).
    Raw(Vec<u8>),
    /// 2.x: the body, parsed already (to tell a batch from a single request).
    Parsed(Value),
    /// 2.x: a JSON array, a batch whose members the rate limits have not counted yet.
    Batch(Vec<Value>),
}

impl ReceivedBody {
    /// The body as one request's input (a batch's array as it was sent), taken out of
    /// `self` rather than copied.
    pub(crate) fn single(&mut self) -> Input<'_> {
        match self {
            Self::Raw(bytes) => Input::Raw(bytes),
            Self::Parsed(value) => Input::Parsed(std::mem::take(value)),
            Self::Batch(members) => Input::Parsed(Value::Array(std::mem::take(members))),
        }
    }
}

/// Steps 1 to 5 of a `POST` to a JSON-RPC route: declared size, rate limit, content
/// coding, bearer pre-authentication and the capped read; the answer when one fails.
///
/// 1.1 counts the request against the rate limits before reading its body; 2.x after
/// (as 2.5.10, whose route reads the body first), so that a batch counts one hit per
/// member: a [`ReceivedBody::Batch`] is not counted yet, everything else is.
pub(crate) async fn receive(
    state: &AppState,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    body: Body,
    started: Instant,
    dialect: Dialect,
) -> Result<Received, Response> {
    let max = state.config.max_request_size;
    if let Err(r) = check_declared_length(headers, max) {
        return Err(rejected(state, r));
    }
    let client = state.client_ip(connect_info, headers);
    if !dialect.is_2x() {
        charge(state, client, NonZeroU32::MIN, started).await?;
    }
    let coding = match coding(headers) {
        Ok(c) => c,
        Err(r) => return Err(rejected(state, r)),
    };
    // Manifest bearer authentication, before the body is read: a caller without a
    // valid token gets at most `unauthenticated_body_limit` bytes read (step 11 still
    // answers in the reference's order for what is read).
    let bearer = pre_authenticate(state, headers).await;
    let limit = match &bearer {
        Some(Err(_)) => max.min(state.config.unauthenticated_body_limit),
        _ => max,
    };
    if let Some(Err(failure)) = &bearer
        && limit < max
        && check_declared_length(headers, limit).is_err()
    {
        return Err(auth_failure_response(state, *failure, started));
    }
    let mut held = HeldBytes::default();
    let budget = &state.body_budget;
    let read_timeout = state.config.body_read_timeout;
    let read = read_limited(body, limit, budget, &mut held);
    let raw = match tokio::time::timeout(read_timeout, read).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(r)) if r.status == StatusCode::PAYLOAD_TOO_LARGE && limit < max => {
            if let Some(Err(failure)) = bearer {
                return Err(auth_failure_response(state, failure, started));
            }
            return Err(rejected(state, r));
        }
        Ok(Err(r)) => return Err(rejected(state, r)),
        Err(_) => {
            state.metrics.refusal(RefusalReason::BodyTimeout);
            let message = format!(
                "Request body not received within {} seconds",
                read_timeout.as_secs_f64()
            );
            return Err(detail(StatusCode::REQUEST_TIMEOUT, message));
        }
    };
    let received = |body| Received {
        body,
        bearer,
        held: HeldBytes::default(),
        client,
    };
    // 2.x: a JSON array is a batch (recognised in the raw body, as the reference does);
    // anything else counts one hit.
    let mut parsed = None;
    if dialect.is_2x() {
        if coding == Coding::Identity {
            match json::parse(&raw) {
                Ok(Value::Array(members)) => {
                    let mut received = received(ReceivedBody::Batch(members));
                    received.held = held;
                    return Ok(received);
                }
                Ok(value) => parsed = Some(value),
                Err(_) => {}
            }
        }
        charge(state, client, NonZeroU32::MIN, started).await?;
    }
    let body = match parsed {
        Some(value) => ReceivedBody::Parsed(value),
        None => match decode_within(raw, coding, max, budget, &mut held) {
            Ok(bytes) => ReceivedBody::Raw(bytes),
            Err(r) => return Err(rejected(state, r)),
        },
    };
    let mut received = received(body);
    received.held = held;
    Ok(received)
}

/// The answer to a body refused before parsing, counted as a refusal.
fn rejected(state: &AppState, r: BodyRejection) -> Response {
    state.metrics.refusal(body_refusal(r.status));
    detail(r.status, r.detail)
}

/// Counts `hits` requests from `client` against the rate limits: `Err` is the answer
/// when they are refused (429 with `Retry-After`) or the limits cannot be reached (503).
pub(super) async fn charge(
    state: &AppState,
    client: IpAddr,
    hits: NonZeroU32,
    started: Instant,
) -> Result<(), Response> {
    let Some(limiter) = &state.rate_limiter else {
        return Ok(());
    };
    let admission = match limiter.admit_n(client, hits).await {
        Ok(admission) => admission,
        Err(error) => {
            state.metrics.error(
                "other",
                ErrorType::DependencyUnavailable,
                started.elapsed().as_secs_f64(),
            );
            let body = unavailable_body(&error);
            return Err(json_response(StatusCode::SERVICE_UNAVAILABLE, &body));
        }
    };
    admission.map_err(|limited| {
        state.metrics.refusal(RefusalReason::RateLimit);
        let mut response = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &rate_limited_body(limited.retry_after, &limited.limit),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after));
        response
    })
}

/// Step 11's check, when the server requires a bearer token: `None` when it does not.
pub(crate) async fn pre_authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Option<Result<String, AuthFailure>> {
    let validator = state.token_validator.as_ref()?;
    state.manifest.manifest.auth.as_ref()?;
    Some(authenticate(&state.manifest.manifest, validator.as_ref(), headers).await)
}

/// The answer to a request refused for its token before its (too large) body was read:
/// step 11's error, with no request id to echo.
fn auth_failure_response(state: &AppState, failure: AuthFailure, started: Instant) -> Response {
    state.metrics.error(
        "other",
        ErrorType::AuthFailed,
        started.elapsed().as_secs_f64(),
    );
    let data = json!({"error": failure.message(), "status_code": 401});
    let body = JsonRpcErrorResponse::new(JsonRpcError::new(ErrorCode::InvalidRequest, data), None);
    json_response(StatusCode::OK, &body)
}

/// A request body: decoded bytes, or JSON the WebSocket reader has already parsed.
pub(crate) enum Input<'a> {
    Raw(&'a [u8]),
    Parsed(Value),
}

/// What the steps after the body need to know of a request besides its body.
pub(crate) struct Sent<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) caller: Option<&'a AuthenticatedCaller>,
    /// Lets handlers send envelopes ahead of the reply (WebSocket).
    pub(crate) push: Option<Push>,
    /// Picks the error codes and `data` where 1.1 and 2.x differ.
    pub(crate) dialect: Dialect,
}

/// Steps 6 to 17 for a decoded body (a WebSocket message, in the connection's
/// `dialect`): the status and the S1 body of the answer. `push` lets handlers send
/// envelopes ahead of the reply.
pub(crate) async fn respond(
    state: &AppState,
    headers: &HeaderMap,
    caller: Option<&AuthenticatedCaller>,
    push: Option<Push>,
    input: Input<'_>,
    started: Instant,
    dialect: Dialect,
) -> (StatusCode, String) {
    let bearer = pre_authenticate(state, headers).await;
    let sent = Sent {
        headers,
        caller,
        push,
        dialect,
    };
    respond_checked(state, sent, input, started, bearer).await
}

/// [`respond`] with step 11's outcome already known.
async fn respond_checked(
    state: &AppState,
    sent: Sent<'_>,
    input: Input<'_>,
    started: Instant,
    bearer: Option<Result<String, AuthFailure>>,
) -> (StatusCode, String) {
    let _slot = match acquire_slot(state, sent.dialect, started) {
        Ok(slot) => slot,
        Err(answer) => return answer,
    };
    let in_flight = InFlight::new(state);
    let parent = message_parent(&sent, &input).or_else(|| TraceContext::from_headers(sent.headers));
    let transport = transport_of(&sent);
    let span = trace::request_span(transport);
    let (exported, context) = trace::start_request(&state.tracer, parent.as_ref(), transport);
    let processing = async {
        access_log::note_trace();
        let outcome = process(state, sent, input, bearer).await;
        match &outcome {
            Ok(_) => trace::record_outcome("success", None),
            Err((f, _)) => trace::record_outcome(f.kind.as_str(), Some(f.error.code)),
        }
        outcome
    };
    let processing = trace::with_exported(exported, processing.instrument(span));
    let outcome = trace_context::scope(context, processing).await;
    drop(in_flight);
    let seconds = started.elapsed().as_secs_f64();
    match outcome {
        Ok((response, payload_type)) => {
            access_log::note_outcome(None, &payload_type);
            state.metrics.success(&payload_type, seconds);
            (StatusCode::OK, json::to_compact(&response))
        }
        Err((f, payload_type)) => {
            access_log::note_outcome(Some(f.error.code), &payload_type);
            failure_answer(state, f, &payload_type, seconds)
        }
    }
}

/// The `asap.transport` span attribute: a WebSocket message can push, a POST cannot.
fn transport_of(sent: &Sent<'_>) -> &'static str {
    if sent.push.is_some() {
        "websocket"
    } else {
        "http"
    }
}

/// A WebSocket message's own trace context: its envelope's `trace_id` and
/// `extensions.span_id` (the client's span for this message). The handshake's
/// `traceparent` names the span that opened the connection, stale for every later
/// message; it stays the parent of messages without one.
fn message_parent(sent: &Sent<'_>, input: &Input<'_>) -> Option<TraceContext> {
    match input {
        Input::Parsed(request) if sent.push.is_some() => trace::request_envelope_parent(request),
        _ => None,
    }
}

/// Bounded concurrency (ASAP_MAX_THREADS): a handler slot, or at once the 503 answer
/// when every slot is busy. `None` when concurrency is not bounded.
pub(crate) fn acquire_slot(
    state: &AppState,
    dialect: Dialect,
    started: Instant,
) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, (StatusCode, String)> {
    let Some(slots) = &state.handler_slots else {
        return Ok(None);
    };
    match slots.clone().try_acquire_owned() {
        Ok(permit) => Ok(Some(permit)),
        Err(_) => {
            let max = state.config.max_concurrent_handlers.unwrap_or_default() as u64;
            let error = AsapError::ThreadPoolExhausted {
                max_threads: max,
                active_threads: max,
            };
            state.metrics.error(
                "other",
                ErrorType::ThreadPoolExhausted,
                started.elapsed().as_secs_f64(),
            );
            let body = thread_pool_exhausted_body(&error, dialect);
            access_log::note_status(StatusCode::SERVICE_UNAVAILABLE);
            Err((StatusCode::SERVICE_UNAVAILABLE, json::to_compact(&body)))
        }
    }
}

/// The status and S1 body answering a failed request, counted in the metrics (and
/// the status noted for the access log).
pub(crate) fn failure_answer(
    state: &AppState,
    f: Failure,
    payload_type: &str,
    seconds: f64,
) -> (StatusCode, String) {
    state.metrics.error(payload_type, f.kind, seconds);
    if let Some(error) = f.unavailable {
        let body = unavailable_body(&error);
        access_log::note_status(StatusCode::SERVICE_UNAVAILABLE);
        return (StatusCode::SERVICE_UNAVAILABLE, json::to_compact(&body));
    }
    let body = JsonRpcErrorResponse::new(f.error, f.id);
    (StatusCode::OK, json::to_compact(&body))
}

/// The HTTP 503 body when every handler slot is busy; 2.x adds the recovery hints.
fn thread_pool_exhausted_body(error: &AsapError, dialect: Dialect) -> Value {
    let mut body = json!({"error": "Service Temporarily Unavailable", "code": error.code()});
    if dialect.is_2x() {
        body["rpc_code"] = error.rpc_code().into();
    }
    body["message"] = error.to_string().into();
    body["details"] = Value::Object(error.details());
    if dialect.is_2x() {
        body["recoverable"] = error.recoverable().into();
        body["retry_after_ms"] = error.retry_after_ms().into();
        body["fallback_action"] = error.fallback_action().into();
    }
    body
}

/// An `asap:*` error answered in the request's dialect: 1.1 as `-32602` with
/// `{error, code, message, details}`, 2.x with the error's own code and the ASAP `data`.
fn asap_failure(summary: &str, error: &AsapError, dialect: Dialect) -> JsonRpcError {
    if dialect.is_2x() {
        JsonRpcError::from_asap_2x(summary, error)
    } else {
        JsonRpcError::from_asap(summary, error)
    }
}

/// Steps 7 to 17. Returns the response and the `payload_type` metric label.
async fn process(
    state: &AppState,
    sent: Sent<'_>,
    input: Input<'_>,
    bearer: Option<Result<String, AuthFailure>>,
) -> Result<(JsonRpcResponse, String), (Failure, String)> {
    let (headers, push, dialect) = (sent.headers, sent.push.clone(), sent.dialect);
    let prepared = prepare(state, sent, input, bearer).await?;
    dispatch(state, prepared, headers, push, dialect).await
}

/// A request that passed steps 7 to 15: what dispatching it needs.
pub(crate) struct Prepared {
    /// The request envelope.
    pub(crate) envelope: Envelope,
    /// The JSON-RPC id to answer with.
    pub(crate) request_id: RequestId,
    /// Who the request authenticated as, if authentication is on.
    pub(crate) identity: Option<String>,
    /// The `payload_type` metric label.
    pub(crate) label: String,
}

/// Steps 7 to 15 (parsing to the replay checks): the request ready to dispatch, or its
/// failure with the `payload_type` metric label.
pub(crate) async fn prepare(
    state: &AppState,
    sent: Sent<'_>,
    input: Input<'_>,
    bearer: Option<Result<String, AuthFailure>>,
) -> Result<Prepared, (Failure, String)> {
    let Sent {
        caller, dialect, ..
    } = sent;
    let other = || "other".to_owned();
    // 7. UTF-8 and JSON.
    let body = match input {
        Input::Parsed(value) => value,
        Input::Raw(bytes) => {
            if let Err(e) = std::str::from_utf8(bytes) {
                let data = json!({"error": format!("Invalid UTF-8 encoding: {e}")});
                return Err((
                    failure(ErrorCode::ParseError, data, None, ErrorType::ParseError),
                    other(),
                ));
            }
            match json::parse(bytes) {
                Ok(v) => v,
                Err(e) => {
                    let data = json!({"error": format!("Invalid JSON: {e}")});
                    return Err((
                        failure(ErrorCode::ParseError, data, None, ErrorType::ParseError),
                        other(),
                    ));
                }
            }
        }
    };
    // 8. An object.
    if !body.is_object() {
        let data = json!({"error": "JSON-RPC request must be an object", "received_type": python_type_name(&body)});
        return Err((
            failure(
                ErrorCode::InvalidRequest,
                data,
                None,
                ErrorType::InvalidRequest,
            ),
            other(),
        ));
    }
    let echo_id = RequestId::echo_from(&body);
    // 9. JSON-RPC structure.
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => {
            let params_not_object = e.errors.iter().any(|d| {
                d.kind.type_name() == "dict_type"
                    && d.loc.len() == 1
                    && d.loc[0].to_string() == "params"
            });
            let (code, message, kind) = if params_not_object {
                (
                    ErrorCode::InvalidParams,
                    "JSON-RPC 'params' must be an object",
                    ErrorType::InvalidParams,
                )
            } else {
                (
                    ErrorCode::InvalidRequest,
                    "Invalid JSON-RPC structure",
                    ErrorType::InvalidRequest,
                )
            };
            let data = json!({"error": message, "validation_errors": e.to_json()});
            return Err((failure(code, data, echo_id, kind), other()));
        }
    };
    let id = Some(request.id.clone());
    // 10. Method.
    if request.method != ASAP_METHOD {
        let data = json!({"method": request.method});
        return Err((
            failure(
                ErrorCode::MethodNotFound,
                data,
                id,
                ErrorType::HandlerNotFound,
            ),
            other(),
        ));
    }
    // 11. Manifest bearer authentication.
    let mut identity = None;
    if let Some(bearer) = bearer {
        match bearer {
            Ok(who) => identity = Some(who),
            Err(f) => {
                let data = json!({"error": f.message(), "status_code": 401});
                return Err((
                    failure(ErrorCode::InvalidRequest, data, id, ErrorType::AuthFailed),
                    other(),
                ));
            }
        }
    }
    // 12. The envelope.
    let envelope = match request.params.get("envelope") {
        None | Some(Value::Null) => {
            let data = json!({"error": "Missing 'envelope' in params"});
            return Err((
                failure(
                    ErrorCode::InvalidParams,
                    data,
                    id,
                    ErrorType::MissingEnvelope,
                ),
                other(),
            ));
        }
        Some(v) if !v.is_object() => {
            let data = json!({"error": "'envelope' must be a JSON object"});
            return Err((
                failure(
                    ErrorCode::InvalidParams,
                    data,
                    id,
                    ErrorType::InvalidEnvelope,
                ),
                other(),
            ));
        }
        Some(v) => match Envelope::from_value_in(v, dialect) {
            Ok(e) => e,
            Err(e) => {
                let data = json!({"error": "Invalid envelope structure", "validation_errors": e.to_json()});
                return Err((
                    failure(
                        ErrorCode::InvalidParams,
                        data,
                        id,
                        ErrorType::InvalidEnvelope,
                    ),
                    other(),
                ));
            }
        },
    };
    let label = state.registry.label(&envelope.payload_type).to_owned();
    // 13. Sender binding (manifest bearer auth; OAuth2 when bound).
    let bearer_mismatch = identity.as_ref().is_some_and(|who| *who != envelope.sender);
    let caller_mismatch = caller.is_some_and(|c| !c.identities.contains(&envelope.sender));
    if caller.is_some() && identity.is_none() {
        identity = Some(envelope.sender.clone());
    }
    if bearer_mismatch || caller_mismatch {
        let data =
            json!({"error": "Sender does not match authenticated identity", "status_code": 403});
        return Err((
            failure(
                ErrorCode::InvalidParams,
                data,
                id,
                ErrorType::SenderMismatch,
            ),
            label,
        ));
    }
    // 14. Timestamp window.
    let now = time::OffsetDateTime::now_utc();
    if let Err(e) = check_timestamp(
        &envelope,
        now,
        state.config.max_envelope_age,
        state.config.max_future_tolerance,
    ) {
        let error = asap_failure("Invalid envelope timestamp", &e, dialect);
        return Err((
            Failure {
                error,
                id,
                kind: ErrorType::InvalidTimestamp,
                unavailable: None,
            },
            label,
        ));
    }
    // 15. Nonce, and envelope ids seen before (a switch; the reference has no such check).
    match check_replay(state, &envelope).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let error = asap_failure("Invalid envelope nonce", &e, dialect);
            return Err((
                Failure {
                    error,
                    id,
                    kind: ErrorType::InvalidNonce,
                    unavailable: None,
                },
                label,
            ));
        }
        Err(error) => return Err((unavailable(error, id), label)),
    }
    Ok(Prepared {
        envelope,
        request_id: request.id,
        identity,
        label,
    })
}

/// Step 16: the unary handler's answer.
async fn dispatch(
    state: &AppState,
    prepared: Prepared,
    headers: &HeaderMap,
    push: Option<Push>,
    dialect: Dialect,
) -> Result<(JsonRpcResponse, String), (Failure, String)> {
    let Prepared {
        envelope,
        request_id,
        identity,
        label,
    } = prepared;
    let id = Some(request_id.clone());
    trace::record_envelope(&envelope, &label);
    access_log::note_envelope(&envelope.id);
    // 16. Dispatch.
    let Some(handler) = state.registry.get(&envelope.payload_type).cloned() else {
        let error = AsapError::HandlerNotFound {
            payload_type: envelope.payload_type.clone(),
        };
        let message = error.to_string();
        let error = if dialect.is_2x() {
            JsonRpcError::from_asap_2x(&message, &error)
        } else {
            let data = json!({"payload_type": envelope.payload_type, "error": message});
            JsonRpcError::new(ErrorCode::MethodNotFound, data)
        };
        let kind = ErrorType::HandlerNotFound;
        return Err((
            Failure {
                error,
                id,
                kind,
                unavailable: None,
            },
            label,
        ));
    };
    let ctx = HandlerContext {
        manifest: state.manifest.manifest.clone(),
        store: state.store.clone(),
        identity,
        push,
        events: state.task_events.clone(),
        metrics: Some(state.metrics.clone()),
    };
    let payload_type = envelope.payload_type.clone();
    let span = if state.config.trace_injection {
        ServerSpan::for_request(&envelope, headers)
    } else {
        None
    };
    let handler_started = Instant::now();
    let agent = &state.manifest.manifest.id;
    let handler_span = trace::handler_span(&envelope, agent);
    // The handler's outgoing calls continue the envelope's trace when it has one.
    let (mut exported, handler_context) = trace::start_handler(&state.tracer, &envelope, agent);
    let result = trace_context::scope(
        handler_context,
        handler
            .handle(envelope, &ctx)
            .instrument(handler_span.clone()),
    )
    .await;
    exported.set_ok(result.is_ok());
    exported.end();
    if result.is_err() {
        handler_span.record("otel.status_code", "ERROR");
    }
    state.metrics.handler(
        &payload_type,
        handler_started.elapsed().as_secs_f64(),
        result.is_err(),
    );
    match result {
        Ok(mut response) => {
            if let Some(span) = span {
                span.inject(&mut response);
            }
            // A 2.x peer reads the payload typed: write it as the reference does, and
            // never send one it would refuse.
            if dialect.is_2x()
                && let Err(invalid) = response.type_payload_2x()
            {
                let error = HandlerError::internal(format!(
                    "the handler's {} payload is invalid in ASAP 2.x: {invalid}",
                    response.payload_type
                ));
                return Err((
                    handler_failure(error, id, state.config.debug, dialect),
                    label,
                ));
            }
            Ok((JsonRpcResponse::new(response, request_id), label))
        }
        Err(e) => Err((handler_failure(e, id, state.config.debug, dialect), label)),
    }
}

/// Step 15: the nonce (when `require_nonce`), then the envelope id (when
/// `reject_repeated_ids`). The outer error: the replay guard could not be asked.
async fn check_replay(
    state: &AppState,
    envelope: &Envelope,
) -> Result<Result<(), AsapError>, SharedStateError> {
    if state.config.require_nonce {
        let nonce = match nonce_to_check(envelope, state.config.reject_missing_nonce) {
            Ok(nonce) => nonce,
            Err(e) => {
                state.metrics.refusal(RefusalReason::ReplayNonce);
                return Ok(Err(e));
            }
        };
        if let Some(nonce) = nonce
            && !state.nonces.first_use(nonce).await?
        {
            state.metrics.refusal(RefusalReason::ReplayNonce);
            return Ok(Err(duplicate_nonce(envelope, nonce)));
        }
    }
    if let Some(ids) = &state.seen_ids
        && !ids.first_use(&envelope.id).await?
    {
        state.metrics.refusal(RefusalReason::ReplayId);
        return Ok(Err(duplicate_id(envelope)));
    }
    Ok(Ok(()))
}

fn handler_failure(
    error: HandlerError,
    id: Option<RequestId>,
    debug: bool,
    dialect: Dialect,
) -> Failure {
    match error {
        HandlerError::InvalidPayload(v) => {
            let data = json!({"error": "Invalid payload", "validation_errors": v.to_json()});
            failure(ErrorCode::InvalidParams, data, id, ErrorType::InvalidParams)
        }
        HandlerError::Protocol(e) => {
            let summary = e.to_string();
            Failure {
                error: asap_failure(&summary, &e, dialect),
                id,
                kind: ErrorType::InvalidParams,
                unavailable: None,
            }
        }
        HandlerError::Internal(source) => {
            tracing::error!(error = %source, "handler failed");
            let data = if debug {
                json!({"error": source.to_string(), "type": "HandlerError"})
            } else {
                json!({"error": "Internal server error"})
            };
            failure(ErrorCode::InternalError, data, id, ErrorType::InternalError)
        }
    }
}

/// A request counted in `in_flight` (health's `active_tasks`) until dropped, also when
/// the handler panics or the request is cancelled.
struct InFlight<'a>(&'a AppState);

impl<'a> InFlight<'a> {
    fn new(state: &'a AppState) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_handler_failure_answers_its_message_only_in_debug_mode() {
        let store_error = crate::store::StoreError::Backend("disk full".into());
        let expected_message = store_error.to_string();
        let debug = handler_failure(HandlerError::from(store_error), None, true, Dialect::V1_1);
        assert_eq!(debug.error.code, -32603);
        assert_eq!(
            serde_json::to_string(&debug.error.data).unwrap(),
            format!(r#"{{"error":"{expected_message}","type":"HandlerError"}}"#)
        );
        let quiet = handler_failure(HandlerError::internal("boom"), None, false, Dialect::V1_1);
        assert_eq!(
            serde_json::to_string(&quiet.error.data).unwrap(),
            r#"{"error":"Internal server error"}"#
        );
        let from_message =
            handler_failure(HandlerError::internal("boom"), None, true, Dialect::V1_1);
        assert_eq!(from_message.error.data.unwrap()["error"], "boom");
    }

    #[test]
    fn an_internal_handler_failure_keeps_its_source() {
        let cause = "x".parse::<u8>().unwrap_err();
        let error = HandlerError::internal(cause.clone());
        let source = std::error::Error::source(&error).expect("the cause is the source");
        assert_eq!(
            source.downcast_ref::<std::num::ParseIntError>(),
            Some(&cause)
        );
    }
}
