//! `POST /asap/stream` against a real server (docs/asap-2.md section 7): the SSE framing
//! of the 2.5.10 reference byte for byte, JSON-RPC errors before the stream, `-32012`
//! without a streaming handler, a failing handler ending the stream cleanly, a client
//! that goes away stopping the handler, and `Client::stream` on all of these.

mod common;

use std::sync::Arc;

use asap_protocol::client::{Client, ClientError, ResponseError};
use asap_protocol::model::{Envelope, TaskRequest, TaskStatus, TaskStream};
use asap_protocol::server::{
    HandlerContext, HandlerError, HandlerRegistry, StreamEmitter, StreamingEcho, StreamingHandler,
};
use common::scripted::scripted;
use common::{AGENT, Options, envelope, start};
use futures_util::StreamExt;
use serde_json::{Value, json};

const REQUEST_ID: &str = "01JSTREAMREQ0000000000001";

/// The captured -32012 answer of the 2.5.10 echo agent (no streaming handler).
const NO_STREAMING_HANDLER: &str = r#"{"jsonrpc":"2.0","error":{"code":-32012,"message":"No handler registered for payload type: task.request","data":{"code":"asap:transport/handler_not_found","rpc_code":-32012,"message":"No handler registered for payload type: task.request","details":{"payload_type":"task.request"},"recoverable":false,"asap_taxonomy_code":"asap:transport/handler_not_found","error":"No streaming handler registered for payload type"}},"id":"req-1"}"#;

fn streaming(handler: Arc<dyn StreamingHandler>) -> Options {
    let mut registry = HandlerRegistry::echo();
    registry.register_streaming("task.request", handler);
    Options {
        registry: Some(registry),
        ..Options::default()
    }
}

fn stream_request(input: Value) -> Value {
    let mut e = envelope(
        "task.request",
        json!({"conversation_id": "c1", "skill_id": "echo", "input": input}),
    );
    e["id"] = REQUEST_ID.into();
    json!({"jsonrpc": "2.0", "method": "asap.send", "id": "req-1", "params": {"envelope": e}})
}

fn task(input: Value) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", input),
    )
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

async fn post_stream(base: &str, body: Vec<u8>, version: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/asap/stream"))
        .body(body);
    if let Some(version) = version {
        request = request.header("asap-version", version);
    }
    let response = request.send().await.unwrap();
    Answer {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
    answer.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn chunks_then_the_end_framed_as_the_reference() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let body = serde_json::to_vec(&stream_request(json!({"message": "h\u{e9}llo big world"})));
    let answer = post_stream(&server.base, body.unwrap(), Some("2.2, 2.1")).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        header(&answer, "content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert_eq!(header(&answer, "cache-control"), Some("no-cache"));
    assert_eq!(header(&answer, "asap-version"), Some("2.2"));
    // One `data:` line per envelope, a blank line after each, nothing else, no end marker.
    let events: Vec<&str> = answer.text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 3, "{:?}", answer.text);
    assert!(answer.text.ends_with("\n\n"));
    let mut expected = vec![
        ("h\u{e9}llo ", 1.0 / 3.0, false, "working"),
        ("big ", 2.0 / 3.0, false, "working"),
        ("world\n", 1.0, true, "completed"),
    ]
    .into_iter();
    for event in events {
        let data = event.strip_prefix("data: ").expect("only data lines");
        assert!(!data.contains('\n'));
        // S2: `", "` and `": "` separators, non-ASCII escaped.
        assert!(data.starts_with(r#"{"id": ""#), "{data}");
        assert!(data.is_ascii(), "{data}");
        let envelope: Value = serde_json::from_str(data).unwrap();
        let (chunk, progress, last, status) = expected.next().unwrap();
        assert_eq!(
            envelope["payload"],
            json!({"chunk": chunk, "progress": progress, "final": last, "status": status})
        );
        assert_eq!(envelope["payload_type"], "TaskStream");
        assert_eq!(envelope["correlation_id"], REQUEST_ID);
        assert_eq!(envelope["sender"], AGENT);
        assert_eq!(envelope["recipient"], "urn:asap:agent:client");
        assert_eq!(envelope["extensions"]["trace_id"], envelope["trace_id"]);
    }
    assert!(answer.text.contains(r#""chunk": "h\u00e9llo ""#));
    // The same through the client.
    let client = Client::builder().build().unwrap();
    let request = task(json!({"text": "one two"}));
    let streamed: Vec<Envelope> = client
        .stream(&server.base, &request)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let chunks: Vec<TaskStream> = streamed
        .iter()
        .map(|e| serde_json::from_value(Value::Object(e.payload.clone())).unwrap())
        .collect();
    assert_eq!(
        chunks,
        [
            TaskStream::new("one ")
                .progress(0.5)
                .status(TaskStatus::Working),
            TaskStream::new("two\n")
                .progress(1.0)
                .last(TaskStatus::Completed),
        ]
    );
    assert!(
        streamed
            .iter()
            .all(|e| e.correlation_id.as_deref() == Some(request.id.as_str()))
    );
}

#[tokio::test]
async fn errors_before_the_stream_are_json_rpc_answers() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let base = &server.base;
    let cases: [(&[u8], Option<&str>, i64); 4] = [
        (b"not json", None, -32700),
        (
            br#"{"jsonrpc":"2.0","method":"asap.send","params":{},"id":"e"}"#,
            Some("2.2"),
            -32602,
        ),
        (
            br#"{"jsonrpc":"2.0","method":"nope","params":{},"id":"e"}"#,
            None,
            -32601,
        ),
        (b"{}", Some("9.9"), -32000),
    ];
    for (body, version, code) in cases {
        let answer = post_stream(base, body.to_vec(), version).await;
        assert_eq!(answer.status, 200);
        assert_eq!(header(&answer, "content-type"), Some("application/json"));
        let value: Value = serde_json::from_str(&answer.text).unwrap();
        assert_eq!(value["error"]["code"], code, "{}", answer.text);
    }
    // A stale envelope through the client, which offers 2.x: -32002, a typed error.
    let mut stale = task(json!({}));
    stale.timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let client = Client::builder().build().unwrap();
    let error = client.stream(base, &stale).await.err().unwrap();
    assert_eq!(error.rpc_code(), Some(-32002), "{error}");
}

/// A JSON array is no batch on the stream route: one request, refused as the object it
/// is not, counted once by the rate limits (not once per member, nor not at all).
#[tokio::test]
async fn an_array_on_the_stream_route_is_one_refused_request() {
    let mut options = streaming(Arc::new(StreamingEcho));
    // Per hour: nothing refills while the test runs.
    options.config.rate_limits =
        asap_protocol::server::RateLimitRule::parse_list("2/hour").unwrap();
    let server = start(options).await;
    let array = serde_json::to_vec(&vec![stream_request(json!(1)); 3]).unwrap();
    for _ in 0..2 {
        let answer = post_stream(&server.base, array.clone(), Some("2.2")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let value: Value = serde_json::from_str(&answer.text).unwrap();
        assert_eq!(value["error"]["code"], -32600, "{}", answer.text);
    }
    let third = post_stream(&server.base, array, Some("2.2")).await;
    assert_eq!(third.status, 429, "{}", third.text);
}

#[tokio::test]
async fn without_a_streaming_handler_the_answer_is_32012() {
    // The default registry: a unary echo for task.request, nothing that streams.
    let server = start(Options::default()).await;
    let body = serde_json::to_vec(&stream_request(json!({}))).unwrap();
    for version in [None, Some("2.2")] {
        let answer = post_stream(&server.base, body.clone(), version).await;
        assert_eq!(
            (answer.status, answer.text.as_str()),
            (200, NO_STREAMING_HANDLER)
        );
    }
    let client = Client::builder().build().unwrap();
    let error = client
        .stream(&server.base, &task(json!({})))
        .await
        .err()
        .unwrap();
    match error {
        ClientError::Remote { code, data, .. } => {
            assert_eq!(code, -32012);
            assert_eq!(data.unwrap()["details"]["payload_type"], "task.request");
        }
        other => panic!("expected a remote error, got {other}"),
    }
    // `POST /asap` is not affected by the route.
    let sent = client.send(&server.base, &task(json!({"a": 1}))).await;
    assert_eq!(sent.unwrap().payload["result"]["echoed"], json!({"a": 1}));
}

#[tokio::test]
async fn a_failing_handler_ends_the_stream_after_its_chunks() {
    let (handler, _stopped) = scripted(
        TaskStream::new("first").progress(0.1),
        Some(|| HandlerError::internal("the model went away")),
    );
    let server = start(streaming(handler)).await;
    let body = serde_json::to_vec(&stream_request(json!({}))).unwrap();
    let answer = post_stream(&server.base, body, Some("2.2")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text.matches("data: ").count(), 1, "{}", answer.text);
    assert!(answer.text.ends_with("}\n\n"));
    let client = Client::builder().build().unwrap();
    let items: Vec<_> = client
        .stream(&server.base, &task(json!({})))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap().payload["chunk"], "first");
}

#[tokio::test]
async fn a_client_that_goes_away_stops_the_handler() {
    let (handler, stopped) = scripted(TaskStream::new("first").progress(0.1), None);
    let server = start(streaming(handler)).await;
    let client = Client::builder().build().unwrap();
    let mut stream = client.stream(&server.base, &task(json!({}))).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.payload["chunk"], "first");
    drop(stream);
    // The handler waits forever unless its work is dropped when the client leaves.
    tokio::time::timeout(std::time::Duration::from_secs(30), stopped)
        .await
        .expect("the handler was not stopped")
        .unwrap();
}

/// Emits a chunk that answers another request.
struct Misdirected;

#[async_trait::async_trait]
impl StreamingHandler for Misdirected {
    async fn stream(
        &self,
        _request: Envelope,
        _ctx: &HandlerContext,
        out: &StreamEmitter,
    ) -> Result<(), HandlerError> {
        let mut chunk = out.reply(TaskStream::new("not yours"));
        chunk.correlation_id = Some("someone-else".into());
        out.emit(chunk).await.map_err(HandlerError::internal)
    }
}

#[tokio::test]
async fn the_client_refuses_chunks_of_another_request() {
    let server = start(streaming(Arc::new(Misdirected))).await;
    let client = Client::builder().build().unwrap();
    let items: Vec<_> = client
        .stream(&server.base, &task(json!({})))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    match &items[0] {
        Err(ClientError::InvalidResponse(ResponseError::Uncorrelated { received, .. })) => {
            assert_eq!(received.as_deref(), Some("someone-else"));
        }
        other => panic!("expected an uncorrelated chunk, got {other:?}"),
    }
}
