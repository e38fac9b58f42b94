//! `POST /asap/stream` (`docs/asap-2.md` section 7): the answer to one request as
//! server-sent events, one envelope (typically a [`TaskStream`] chunk) per event, framed
//! exactly as the 2.5.10 reference frames them: `data: <S2 JSON>\n\n`, no event names,
//! ids or keep-alive comments, and no end marker (the body simply ends; by convention the
//! last chunk has `final: true`).
//!
//! The request goes through the pipeline of `POST /asap` up to the replay checks; every
//! failure until then is the same JSON-RPC answer (`application/json`, HTTP 200). A
//! payload type without a [`StreamingHandler`] gets `-32012`. Once the stream has
//! started, a failing handler ends it cleanly (as the reference does: status 200
//! already sent, no error event).
//!
//! The handler runs in its own task and hands its envelopes to the response through a
//! queue of [`STREAM_BUFFER`] events: a slow reader makes [`StreamEmitter::emit`] wait
//! rather than the server buffer, and a client that goes away stops the handler (its
//! task is aborted when the response body is dropped, and `emit` fails meanwhile).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::AppState;
use super::auth::AuthenticatedCaller;
use super::handler::{HandlerContext, HandlerError};
use super::metrics::ErrorType;
use super::pipeline::{self, Failure, Prepared, Sent};
use super::trace::{self, ServerSpan};
use crate::json;
use crate::model::{
    AsapError, Dialect, Envelope, Model, TASK_STREAM, TaskRequest, TaskStatus, TaskStream,
    pyrepr::python_str,
};
use crate::rpc::JsonRpcError;
use crate::spans;
use crate::trace_context::{self, TraceContext};

/// How many events a stream holds for a client that reads slower than its handler
/// emits; beyond that, [`StreamEmitter::emit`] waits.
pub const STREAM_BUFFER: usize = 8;

/// The `data.error` of the `-32012` answer when no streaming handler serves the
/// payload type (the reference's words).
const NO_STREAMING_HANDLER: &str = "No streaming handler registered for payload type";

/// Streams the answer to the envelopes of one payload type (`POST /asap/stream`),
/// registered with [`HandlerRegistry::register_streaming`](super::HandlerRegistry::register_streaming).
///
/// ```
/// use asap_protocol::model::{Envelope, TaskStatus, TaskStream};
/// use asap_protocol::server::{HandlerContext, HandlerError, StreamEmitter, StreamingHandler};
///
/// /// Counts to three, one chunk per number.
/// struct Count;
///
/// #[async_trait::async_trait]
/// impl StreamingHandler for Count {
///     async fn stream(&self, _request: Envelope, _ctx: &HandlerContext, out: &StreamEmitter)
///         -> Result<(), HandlerError>
///     {
///         for n in 1..=3 {
///             let chunk = TaskStream::new(n.to_string()).progress(f64::from(n) / 3.0);
///             let chunk = if n == 3 { chunk.last(TaskStatus::Completed) } else { chunk.status(TaskStatus::Working) };
///             // An error here means the client went away: stop working.
///             out.chunk(chunk).await.map_err(HandlerError::internal)?;
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait StreamingHandler: Send + Sync {
    /// Emits the answer to `request` through `out`, as many envelopes as it takes.
    /// Returning ends the stream; an error is logged and ends it the same way (the
    /// client sees no `final` chunk).
    async fn stream(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
        out: &StreamEmitter,
    ) -> Result<(), HandlerError>;
}

/// The client of a stream is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client closed the stream")]
pub struct StreamClosed;

/// Sends the envelopes of one stream to its client, in order.
#[derive(Debug)]
pub struct StreamEmitter {
    sink: Sink,
    request: Envelope,
    agent: String,
    span: Option<ServerSpan>,
}

impl StreamEmitter {
    /// Sends `envelope` as the next event (with the request's trace context, as every
    /// answer gets). Waits while the client is [`STREAM_BUFFER`] events behind.
    pub async fn emit(&self, mut envelope: Envelope) -> Result<(), StreamClosed> {
        if let Some(span) = &self.span {
            span.inject(&mut envelope);
        }
        self.sink.send(&envelope).await
    }

    /// Sends `chunk` in a [`reply`](Self::reply) envelope.
    pub async fn chunk(&self, chunk: TaskStream) -> Result<(), StreamClosed> {
        self.emit(self.reply(chunk)).await
    }

    /// The `TaskStream` envelope answering the request with `chunk`: new id and time,
    /// `asap_version` and `trace_id` copied, sender = the agent, recipient = the
    /// requester, `correlation_id` = the request's id (what clients check).
    pub fn reply(&self, chunk: TaskStream) -> Envelope {
        let mut envelope = Envelope::raw(
            &self.agent,
            &self.request.sender,
            TASK_STREAM,
            chunk.to_object(),
        );
        envelope.asap_version.clone_from(&self.request.asap_version);
        envelope.correlation_id = Some(self.request.id.clone());
        envelope.trace_id.clone_from(&self.request.trace_id);
        envelope
    }

    /// Whether the client is gone.
    pub fn is_closed(&self) -> bool {
        match &self.sink {
            Sink::Events(events) => events.is_closed(),
            Sink::Frames { frames, .. } => frames.is_closed(),
        }
    }

    /// Completes when the client is gone (to stop work that emits rarely).
    pub async fn closed(&self) {
        match &self.sink {
            Sink::Events(events) => events.closed().await,
            Sink::Frames { frames, .. } => frames.closed().await,
        }
    }
}

/// Where a stream's envelopes go.
#[derive(Debug)]
pub(crate) enum Sink {
    /// Server-sent events (`POST /asap/stream`): `data: <S2 envelope>`.
    Events(mpsc::Sender<Event>),
    /// WebSocket text frames (a 2.x connection): one S2 JSON-RPC result frame per
    /// envelope, all with the request's JSON-RPC `id`, as the 2.5.10 reference sends.
    Frames {
        /// The connection's send queue.
        frames: mpsc::Sender<String>,
        /// The request's JSON-RPC id (`""` for none, as the reference).
        id: Value,
    },
}

impl Sink {
    async fn send(&self, envelope: &Envelope) -> Result<(), StreamClosed> {
        match self {
            Self::Events(events) => {
                let event = Event::default().data(json::to_python_default(envelope));
                events.send(event).await.map_err(|_| StreamClosed)
            }
            Self::Frames { frames, id } => {
                let frame = result_frame(envelope, id);
                frames.send(frame).await.map_err(|_| StreamClosed)
            }
        }
    }
}

/// A JSON-RPC result frame carrying `envelope`, with the 2.5.10 reference's bytes
/// (`json.dumps(JsonRpcResponse(...).model_dump())`: S2, members in model order).
pub(crate) fn result_frame(envelope: &Envelope, id: &Value) -> String {
    json::to_python_default(&serde_json::json!({
        "jsonrpc": "2.0",
        "result": {"envelope": envelope.to_value()},
        "id": id,
    }))
}

/// `POST /asap/stream`.
pub(crate) async fn handle(
    State(state): State<AppState>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    caller: Option<Extension<AuthenticatedCaller>>,
    dialect: Option<Extension<Dialect>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let dialect = dialect.map_or(Dialect::V1_1, |Extension(d)| d);
    let mut received =
        match pipeline::receive(&state, connect_info, &headers, body, started, dialect).await {
            Ok(received) => received,
            Err(response) => return response,
        };
    // An array is no batch here (one request, refused as the object it is not), and
    // counts one hit.
    if matches!(received.body, pipeline::ReceivedBody::Batch(_))
        && let Err(refusal) =
            pipeline::charge(&state, received.client, std::num::NonZeroU32::MIN, started).await
    {
        return refusal;
    }
    let slot = match pipeline::acquire_slot(&state, dialect, started) {
        Ok(slot) => slot,
        Err((status, body)) => return json_answer(status, body),
    };
    let caller = caller.map(|Extension(c)| c);
    let sent = Sent {
        headers: &headers,
        caller: caller.as_ref(),
        push: None,
        dialect,
    };
    let input = received.body.single();
    let prepared = pipeline::prepare(&state, sent, input, received.bearer).await;
    drop(received.held);
    let refuse = |failure: Failure, label: &str| {
        let seconds = started.elapsed().as_secs_f64();
        let (status, body) = pipeline::failure_answer(&state, failure, label, seconds);
        json_answer(status, body)
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err((failure, label)) => return refuse(failure, &label),
    };
    let Some(handler) = state
        .registry
        .get_streaming(&prepared.envelope.payload_type)
        .cloned()
    else {
        let error = AsapError::HandlerNotFound {
            payload_type: prepared.envelope.payload_type.clone(),
        };
        let failure = Failure {
            error: JsonRpcError::from_asap_2x(NO_STREAMING_HANDLER, &error),
            id: Some(prepared.request_id),
            kind: ErrorType::HandlerNotFound,
            unavailable: None,
        };
        return refuse(failure, "other");
    };
    Work::new(
        &state,
        handler,
        &prepared.envelope,
        &headers,
        "sse",
        slot,
        started,
    )
    .start(prepared)
}

/// A JSON answer with the S1 body already written.
fn json_answer(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

/// A stream about to start: its handler and what its run holds.
pub(crate) struct Work {
    state: AppState,
    handler: Arc<dyn StreamingHandler>,
    span: Option<ServerSpan>,
    /// The stream's exported `asap.request` span, and the trace context it runs in.
    request: (spans::Span, TraceContext),
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    started: Instant,
}

impl Work {
    /// The work of streaming `envelope`'s answer over `transport` (`sse` or
    /// `websocket`): its `asap.request` span, parented as a unary request's (a
    /// WebSocket message's envelope trace, else the `traceparent`), and the ids its
    /// events carry when trace injection is on.
    pub(crate) fn new(
        state: &AppState,
        handler: Arc<dyn StreamingHandler>,
        envelope: &crate::model::Envelope,
        headers: &axum::http::HeaderMap,
        transport: &'static str,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
        started: Instant,
    ) -> Self {
        let parent = (transport == "websocket")
            .then(|| trace::envelope_parent(envelope))
            .flatten()
            .or_else(|| TraceContext::from_headers(headers));
        let (mut request, context) =
            trace::start_request(&state.tracer, parent.as_ref(), transport);
        trace::set_envelope(&mut request, envelope, &envelope.payload_type);
        let span = if state.config.trace_injection {
            ServerSpan::in_context(envelope, headers, Some(&context))
        } else {
            None
        };
        Self {
            state: state.clone(),
            handler,
            span,
            request: (request, context),
            slot,
            started,
        }
    }

    /// Runs the handler in its own task and answers with its events.
    fn start(self, prepared: Prepared) -> Response {
        let (events, queue) = mpsc::channel(STREAM_BUFFER);
        let task = tokio::spawn(self.run(prepared, Sink::Events(events)));
        let running = AbortOnDrop(task);
        let body = futures_util::stream::unfold((queue, running), |(mut queue, running)| async {
            let event = queue.recv().await?;
            Some((Ok::<_, Infallible>(event), (queue, running)))
        });
        let mut response = Sse::new(body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream; charset=utf-8"),
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        response
    }

    /// The handler's run for `prepared`, emitting into `sink`, counted in the metrics;
    /// holds the handler slot and counts in `in_flight` until it ends. Its outcome is
    /// the handler's.
    pub(crate) async fn run(self, prepared: Prepared, sink: Sink) -> Result<(), HandlerError> {
        let Self {
            state,
            handler,
            span,
            request: (mut request_span, context),
            slot,
            started,
        } = self;
        let Prepared {
            envelope,
            identity,
            label,
            ..
        } = prepared;
        let out = StreamEmitter {
            sink,
            request: envelope.clone(),
            agent: state.manifest.manifest.id.clone(),
            span,
        };
        let ctx = HandlerContext {
            manifest: state.manifest.manifest.clone(),
            store: state.store.clone(),
            identity,
            push: None,
            events: state.task_events.clone(),
            metrics: Some(state.metrics.clone()),
        };
        // Held until the handler is done: a streaming request counts as in flight and
        // takes a handler slot for as long as it runs.
        let _slot = slot;
        let _in_flight = InFlight::new(&state);
        let payload_type = envelope.payload_type.clone();
        let handler_started = Instant::now();
        let running = async {
            let agent = &state.manifest.manifest.id;
            let (mut handler_span, handler_context) =
                trace::start_handler(&state.tracer, &envelope, agent);
            let outcome =
                trace_context::scope(handler_context, handler.stream(envelope, &ctx, &out)).await;
            handler_span.set_ok(outcome.is_ok());
            handler_span.end();
            outcome
        };
        let outcome = trace_context::scope(context, running).await;
        match &outcome {
            Ok(()) => trace::set_outcome(&mut request_span, "success", None),
            Err(_) => trace::set_outcome(
                &mut request_span,
                ErrorType::InternalError.as_str(),
                Some(crate::rpc::ErrorCode::InternalError.code()),
            ),
        }
        request_span.end();
        let metrics = &state.metrics;
        let handler_seconds = handler_started.elapsed().as_secs_f64();
        metrics.handler(&payload_type, handler_seconds, outcome.is_err());
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Ok(()) => metrics.success(&label, seconds),
            Err(error) => {
                tracing::warn!(%error, payload_type, "streaming handler failed; ending the stream");
                metrics.error(&label, ErrorType::InternalError, seconds);
            }
        }
        outcome
    }
}

/// Aborts the handler's task when the response body is dropped (the client is gone).
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stream counted in `in_flight` (health's `active_tasks`) while its handler runs.
struct InFlight(AppState);

impl InFlight {
    fn new(state: &AppState) -> Self {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The streaming echo of the reference's example agent
/// (`asap.examples.streaming_agent`) for `task.request`: the words of
/// `input.message` (else `input.text`, else `"one two three"`) one chunk each, with
/// `progress` and status `working`, the last one `final` and `completed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamingEcho;

impl StreamingEcho {
    /// The text whose words are streamed (Python's `a or b or c` on the input).
    fn text(task: &TaskRequest) -> String {
        let truthy = |v: &&Value| match v {
            Value::Null | Value::Bool(false) => false,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            Value::Bool(true) => true,
        };
        ["message", "text"]
            .iter()
            .find_map(|key| task.input.get(*key).filter(truthy))
            .map_or_else(|| "one two three".to_owned(), python_str)
    }
}

#[async_trait]
impl StreamingHandler for StreamingEcho {
    async fn stream(
        &self,
        request: Envelope,
        _ctx: &HandlerContext,
        out: &StreamEmitter,
    ) -> Result<(), HandlerError> {
        let task: TaskRequest = request.payload_as()?;
        let text = Self::text(&task);
        let words: Vec<&str> = text.split_whitespace().collect();
        let total = words.len().max(1);
        for (i, word) in words.iter().enumerate() {
            let last = i + 1 == total;
            let chunk = TaskStream::new(format!("{word}{}", if last { "\n" } else { " " }))
                .progress((i + 1) as f64 / total as f64);
            let chunk = if last {
                chunk.last(TaskStatus::Completed)
            } else {
                chunk.status(TaskStatus::Working)
            };
            out.chunk(chunk).await.map_err(HandlerError::internal)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use serde_json::json;

    fn emitter() -> (StreamEmitter, mpsc::Receiver<Event>) {
        let (events, queue) = mpsc::channel(STREAM_BUFFER);
        let request = Envelope::raw(
            "urn:asap:agent:client",
            "urn:asap:agent:server",
            "task.request",
            json!({}).as_object().cloned().unwrap(),
        );
        let out = StreamEmitter {
            sink: Sink::Events(events),
            request,
            agent: "urn:asap:agent:server".into(),
            span: None,
        };
        (out, queue)
    }

    #[tokio::test]
    async fn a_slow_reader_makes_the_handler_wait_instead_of_the_server_buffer() {
        let (out, mut queue) = emitter();
        for _ in 0..STREAM_BUFFER {
            let sent = out.chunk(TaskStream::new("x")).now_or_never();
            assert_eq!(sent, Some(Ok(())), "within the buffer: sent at once");
        }
        let mut blocked = Box::pin(out.chunk(TaskStream::new("y")));
        assert!((&mut blocked).now_or_never().is_none(), "beyond it: waits");
        let _taken = queue.recv().await.unwrap();
        assert_eq!(blocked.await, Ok(()), "the reader took one: room again");
        drop(queue);
        assert!(out.is_closed());
        assert_eq!(out.chunk(TaskStream::new("z")).await, Err(StreamClosed));
    }

    #[test]
    fn a_reply_answers_the_request() {
        let (out, _queue) = emitter();
        let reply = out.reply(TaskStream::new("a").last(TaskStatus::Completed));
        assert_eq!(reply.payload_type, TASK_STREAM);
        assert_eq!(reply.sender, "urn:asap:agent:server");
        assert_eq!(reply.recipient, "urn:asap:agent:client");
        assert_eq!(
            reply.correlation_id.as_deref(),
            Some(out.request.id.as_str())
        );
        assert_eq!(reply.payload["final"], true);
    }

    #[test]
    fn the_echo_streams_the_words_of_message_then_text_then_a_default() {
        let text = |input: Value| StreamingEcho::text(&TaskRequest::new("c", "echo", input));
        assert_eq!(text(json!({"message": "a b", "text": "c"})), "a b");
        assert_eq!(text(json!({"message": "", "text": "c d"})), "c d");
        assert_eq!(text(json!({"message": 0, "text": null})), "one two three");
        assert_eq!(text(json!({"text": 5})), "5");
    }
}
