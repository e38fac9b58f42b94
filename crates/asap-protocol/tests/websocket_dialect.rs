//! The WebSocket binding in both dialects (`docs/asap-2.md` section 9): the dialect is
//! negotiated per connection from the handshake's `ASAP-Version` (none: 1.1, today's
//! bytes); a 2.x connection answers with the 2.x error codes, S2 result frames and
//! streams (one result frame per envelope, all with the request's id); the client
//! offers 2.x on the handshake and reads such streams.

mod common;

use std::sync::Arc;
use std::time::Duration;

use asap_protocol::client::{Client, ClientError, TransportMode};
use asap_protocol::model::{AsapError, Dialect, Envelope, Model, TaskRequest, TaskStream};
use asap_protocol::server::{HandlerError, HandlerRegistry, StreamingEcho, StreamingHandler};
use common::scripted::scripted;
use common::{AGENT, Options, Running, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, with `ASAP-Version: version` on the handshake when given; the socket and
/// the `ASAP-Version` of the `101`.
async fn connect(server: &Running, version: Option<&str>) -> (Socket, Option<String>) {
    let mut request = format!("ws://{}/asap/ws", server.addr)
        .into_client_request()
        .unwrap();
    if let Some(version) = version {
        request
            .headers_mut()
            .insert("asap-version", version.parse().unwrap());
    }
    let (socket, response) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .unwrap();
    let echoed = response
        .headers()
        .get("asap-version")
        .map(|v| v.to_str().unwrap().to_owned());
    (socket, echoed)
}

fn task(input: Value) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", input),
    )
}

async fn send(socket: &mut Socket, id: &str, envelope: &Value) {
    let frame = json!({"jsonrpc": "2.0", "method": "asap.send", "id": id, "params": {"envelope": envelope}});
    socket
        .send(Message::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next text frame that is no heartbeat and no ack.
async fn next_text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s")
            .expect("the connection is open")
            .unwrap();
        if let Message::Text(text) = message {
            if text.as_str() == r#"{"type": "ping"}"# || text.contains(r#""asap.ack""#) {
                continue;
            }
            return text.to_string();
        }
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn streaming(handler: Arc<dyn StreamingHandler>) -> Options {
    let mut registry = HandlerRegistry::echo();
    registry.register_streaming("task.request", handler);
    Options {
        registry: Some(registry),
        ..Options::default()
    }
}

fn old(envelope: &Envelope) -> Value {
    let mut value = envelope.to_value();
    value["timestamp"] = "2020-01-01T00:00:00Z".into();
    value
}

#[tokio::test]
async fn without_the_header_a_connection_is_1_1_as_before() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let (mut socket, echoed) = connect(&server, None).await;
    assert_eq!(echoed, None, "a 1.1 upgrade is answered as before");
    // A streaming handler does not change a 1.1 connection: the unary answer, S1.
    let request = task(json!({"message": "a b"}));
    send(&mut socket, "r1", &request.to_value()).await;
    let text = next_text(&mut socket).await;
    assert!(
        text.starts_with(r#"{"jsonrpc":"2.0","result":{"envelope":{"#),
        "{text}"
    );
    assert_eq!(
        parse(&text)["result"]["envelope"]["payload_type"],
        "task.response"
    );
    // The 1.1 codes.
    send(&mut socket, "r2", &old(&task(json!({})))).await;
    assert_eq!(
        parse(&next_text(&mut socket).await)["error"]["code"],
        -32602
    );
    let mut unknown = task(json!({})).to_value();
    unknown["payload_type"] = "state.query".into();
    send(&mut socket, "r3", &unknown).await;
    assert_eq!(
        parse(&next_text(&mut socket).await)["error"]["code"],
        -32601
    );
}

#[tokio::test]
async fn a_2x_connection_answers_with_the_2x_codes_and_s2_results() {
    let server = start(Options::default()).await;
    let (mut socket, echoed) = connect(&server, Some("3.0, 2.1, 2.2")).await;
    assert_eq!(echoed.as_deref(), Some("2.1"), "the first accepted token");
    let request = task(json!({"n": 1}));
    send(&mut socket, "ws-req-1", &request.to_value()).await;
    let text = next_text(&mut socket).await;
    // S2, as the reference's `json.dumps(JsonRpcResponse(...).model_dump())`.
    assert!(
        text.starts_with(r#"{"jsonrpc": "2.0", "result": {"envelope": {"id": ""#),
        "{text}"
    );
    assert!(text.ends_with(r#"}}}, "id": "ws-req-1"}"#), "{text}");
    let answer = parse(&text);
    assert_eq!(answer["result"]["envelope"]["correlation_id"], request.id);
    // The timestamp (-32002) and no handler (-32012) as on HTTP in 2.x, S1 as the
    // reference forwards them.
    send(&mut socket, "ws-req-2", &old(&task(json!({})))).await;
    let text = next_text(&mut socket).await;
    assert!(
        text.starts_with(r#"{"jsonrpc":"2.0","error":{"code":-32002,"#),
        "{text}"
    );
    assert_eq!(
        parse(&text)["error"]["data"]["fallback_action"],
        "resend_with_fresh_timestamp"
    );
    assert_eq!(parse(&text)["id"], "ws-req-2");
    // A TaskRequest payload under `state.query`: refused by the 2.x typing (-32602,
    // payload-relative `loc`), as the reference answers it (docs/asap-2.md section 9).
    let mut mistyped = task(json!({})).to_value();
    mistyped["payload_type"] = "state.query".into();
    send(&mut socket, "ws-req-3", &mistyped).await;
    let answer = parse(&next_text(&mut socket).await);
    assert_eq!(answer["error"]["code"], -32602);
    let locs: Vec<Value> = answer["error"]["data"]["validation_errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"].clone())
        .collect();
    // `task()` writes every TaskRequest member, `null` ones included: each is unknown.
    let expected = [
        "task_id",
        "conversation_id",
        "parent_task_id",
        "skill_id",
        "input",
        "config",
    ];
    assert_eq!(locs, expected.map(|member| json!([member])));
    let mut unknown = mistyped.clone();
    unknown["payload"] = json!({"task_id": "t"});
    send(&mut socket, "ws-req-4", &unknown).await;
    let answer = parse(&next_text(&mut socket).await);
    assert_eq!(answer["error"]["code"], -32012);
    assert_eq!(
        answer["error"]["data"]["asap_taxonomy_code"],
        "asap:transport/handler_not_found"
    );
}

#[tokio::test]
async fn an_unsupported_version_refuses_the_upgrade_as_http_refuses_a_request() {
    let server = start(Options::default()).await;
    let mut request = format!("ws://{}/asap/ws", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("asap-version", "9.9".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP answer, got {refused:?}");
    };
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["asap-version"], "2.2");
    let body = String::from_utf8(response.body().clone().unwrap()).unwrap();
    assert_eq!(
        body,
        r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"ASAP protocol version incompatible","data":{"requested":"9.9","supported":["2.1","2.2"]}},"id":null}"#
    );
    // Our client reports a refused offer as the remote error it is.
    let mut options = Options::default();
    options.config.dialects = vec![Dialect::V1_1, Dialect::V2_2];
    let server = start(options).await;
    let client = Client::builder()
        .transport(TransportMode::WebSocket)
        .asap_versions(&[Dialect::V2_1])
        .build()
        .unwrap();
    match client.send(&server.base, &task(json!({}))).await {
        Err(ClientError::Remote { code, data, .. }) => {
            assert_eq!(code, -32000);
            assert_eq!(data.unwrap()["supported"], json!(["2.2"]));
        }
        other => panic!("expected -32000, got {other:?}"),
    }
}

#[tokio::test]
async fn a_2x_connection_streams_one_result_frame_per_envelope() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let (mut socket, _) = connect(&server, Some("2.2")).await;
    let request = task(json!({"message": "h\u{e9} big world"}));
    send(&mut socket, "ws-req-7", &request.to_value()).await;
    let mut chunks = Vec::new();
    for _ in 0..3 {
        let text = next_text(&mut socket).await;
        assert!(
            text.starts_with(r#"{"jsonrpc": "2.0", "result": {"envelope": {"id": ""#),
            "{text}"
        );
        assert!(text.ends_with(r#""id": "ws-req-7"}"#), "{text}");
        chunks.push(parse(&text)["result"]["envelope"].clone());
    }
    assert!(chunks[0]["payload"].to_string().contains("h\u{e9} "));
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["payload_type"], "TaskStream");
        assert_eq!(chunk["correlation_id"], request.id);
        assert_eq!(chunk["payload"]["final"], i == 2);
    }
    // The connection goes on: the next request is answered after the stream.
    send(&mut socket, "ws-req-8", &task(json!({})).to_value()).await;
    assert_eq!(parse(&next_text(&mut socket).await)["id"], "ws-req-8");
}

#[tokio::test]
async fn a_failure_mid_stream_is_an_error_frame_with_the_request_id() {
    let (handler, _stopped) = scripted(
        TaskStream::new("first"),
        Some(|| HandlerError::internal("the model went away")),
    );
    let server = start(streaming(handler)).await;
    let (mut socket, _) = connect(&server, Some("2.2")).await;
    send(&mut socket, "s1", &task(json!({})).to_value()).await;
    let first = parse(&next_text(&mut socket).await);
    assert_eq!(first["result"]["envelope"]["payload"]["chunk"], "first");
    // Any failure but an `asap:*` error: the reference's S2 internal-error frame.
    assert_eq!(
        next_text(&mut socket).await,
        r#"{"jsonrpc": "2.0", "error": {"code": -32603, "message": "Internal error", "data": {"error": "Internal server error"}}, "id": "s1"}"#
    );

    let (handler, _stopped) = scripted(
        TaskStream::new("first"),
        Some(|| {
            HandlerError::Protocol(AsapError::TaskNotFound {
                task_id: "t1".into(),
            })
        }),
    );
    let server = start(streaming(handler)).await;
    let (mut socket, _) = connect(&server, Some("2.2")).await;
    send(&mut socket, "s2", &task(json!({})).to_value()).await;
    next_text(&mut socket).await;
    let error = parse(&next_text(&mut socket).await);
    assert_eq!(error["error"]["code"], -32010, "{error}");
    assert_eq!(error["id"], "s2");
}

#[tokio::test]
async fn a_client_that_disconnects_stops_the_stream() {
    let (handler, stopped) = scripted(TaskStream::new("first"), None);
    let server = start(streaming(handler)).await;
    let (mut socket, _) = connect(&server, Some("2.2")).await;
    send(&mut socket, "s1", &task(json!({})).to_value()).await;
    next_text(&mut socket).await;
    drop(socket);
    // The handler waits forever unless it is aborted when the client leaves.
    tokio::time::timeout(Duration::from_secs(30), stopped)
        .await
        .expect("the handler was not stopped")
        .unwrap();
}

fn client_2x() -> Client {
    Client::builder()
        .transport(TransportMode::WebSocket)
        .asap_versions(&[Dialect::V2_2, Dialect::V2_1])
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_client_streams_over_the_websocket_until_the_final_chunk() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let client = Client::builder().build().unwrap();
    let request = task(json!({"message": "one two three"}));
    let chunks: Vec<Envelope> = client
        .stream_websocket(&server.base, &request)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let words: Vec<&str> = chunks
        .iter()
        .map(|c| c.payload["chunk"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["one ", "two ", "three\n"]);
    assert!(
        chunks
            .iter()
            .all(|c| c.correlation_id.as_deref() == Some(request.id.as_str()))
    );
    // `Client::stream` takes the WebSocket in that transport mode; an error before the
    // stream is returned, not streamed.
    let refused = client_2x()
        .stream(&server.base, &Envelope::from_value(&old(&request)).unwrap())
        .await;
    match refused {
        Err(ClientError::Remote { code, .. }) => assert_eq!(code, -32002),
        Err(other) => panic!("expected -32002, got {other}"),
        Ok(_) => panic!("expected -32002, got a stream"),
    }
}

#[tokio::test]
async fn a_unary_answer_is_a_stream_of_one() {
    // No streaming handler: one frame, the task.response, ends the stream.
    let server = start(Options::default()).await;
    let items: Vec<_> = client_2x()
        .stream(&server.base, &task(json!({"n": 2})))
        .await
        .unwrap()
        .collect()
        .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].as_ref().unwrap().payload_type, "task.response");
}

#[tokio::test]
async fn a_unary_send_in_2x_takes_the_first_frame_and_drops_the_rest() {
    let server = start(streaming(Arc::new(StreamingEcho))).await;
    let client = client_2x();
    let mut pushes = client.subscribe(&server.base).await.unwrap();
    let first = client
        .send(&server.base, &task(json!({"message": "x y z"})))
        .await
        .unwrap();
    assert_eq!(first.payload["chunk"], "x ");
    // The rest of that stream arrives before the next answer on the same connection,
    // and is dropped rather than taken for pushes.
    let second = client
        .send(&server.base, &task(json!({"message": "solo"})))
        .await
        .unwrap();
    assert_eq!(second.payload["chunk"], "solo\n");
    assert!(matches!(
        pushes.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
    assert_eq!(
        client.websocket_connections(),
        1,
        "one connection per offer"
    );
}
