//! JSON-RPC batches on `POST /asap` against a real server (docs/asap-2.md section 6.2):
//! the 2.5.10 reference's answers byte for byte (empty, oversized, members that are not
//! objects, notifications), concurrency with the answers in request order, one rate-limit
//! hit per member, the 1.1 answer kept for requests without `ASAP-Version`, and
//! `Client::batch` against the server.

mod common;

use std::sync::{Arc, Mutex};

use asap_protocol::client::{Client, ClientError, RequestError};
use asap_protocol::model::{Dialect, Envelope, TaskRequest, TaskResponse, TaskStatus};
use asap_protocol::server::{
    Handler, HandlerContext, HandlerError, HandlerRegistry, RateLimitRule,
};
use common::{Gate, Options, Reply, echo_request, envelope, post_raw, start};
use serde_json::{Value, json};

const EMPTY: &str = r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"reason":"empty batch"}},"id":null}"#;
const NOT_AN_OBJECT: &str = r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":null},"id":null}"#;
const ARRAY_IN_1_1: &str = r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"error":"JSON-RPC request must be an object","received_type":"list"}},"id":null}"#;

/// An echo request with JSON-RPC id `id` and input `{"n": n}`.
fn echo(id: Value, n: u64) -> Value {
    let mut request = echo_request(json!({ "n": n }));
    request["id"] = id;
    request
}

async fn post_2x(base: &str, body: &Value) -> Reply {
    let body = serde_json::to_vec(body).unwrap();
    post_raw(base, body, &[("asap-version", "2.2")]).await
}

fn echoed_input(answer: &Value) -> &Value {
    &answer["result"]["envelope"]["payload"]["result"]["echoed"]
}

#[tokio::test]
async fn a_batch_of_envelopes_is_answered_in_request_order() {
    let server = start(Options::default()).await;
    let batch = json!([echo(json!("a"), 1), echo(json!(2), 2), echo(json!("c"), 3)]);
    let reply = post_2x(&server.base, &batch).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["asap-version"], "2.2");
    assert_eq!(reply.headers["content-type"], "application/json");
    let answers = reply.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 3, "{}", reply.text);
    for (answer, (id, n)) in answers
        .iter()
        .zip([(json!("a"), 1), (json!(2), 2), (json!("c"), 3)])
    {
        assert_eq!(answer["id"], id);
        assert_eq!(
            answer["result"]["envelope"]["payload_type"],
            "task.response"
        );
        assert_eq!(echoed_input(answer), &json!({ "n": n }));
    }
    server.stop().await;
}

#[tokio::test]
async fn members_get_the_reference_answers_one_by_one() {
    let server = start(Options::default()).await;
    let notification = json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope("task.request", json!({}))}});
    let unknown_method = json!({"jsonrpc": "2.0", "method": "nope", "id": "c"});
    let batch = json!([
        5,
        null,
        "x",
        [],
        [echo(json!(1), 1)],
        notification,
        unknown_method,
        echo(json!("ok"), 3),
    ]);
    let reply = post_2x(&server.base, &batch).await;
    assert_eq!(reply.status, 200);
    let answers = reply.json();
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 8);
    // What 2.5.10 answers (captured, docs/asap-2.md section 6.2), byte for byte.
    let expected_start = [NOT_AN_OBJECT; 5].join(",");
    assert!(
        reply.text.starts_with(&format!("[{expected_start},")),
        "{}",
        reply.text
    );
    let missing_id = format!(
        r#"{{"jsonrpc":"2.0","error":{{"code":-32600,"message":"Invalid request","data":{{"error":"Invalid JSON-RPC structure","validation_errors":[{{"type":"missing","loc":["id"],"msg":"Field required","input":{},"url":"https://errors.pydantic.dev/2.14/v/missing"}}]}}}},"id":null}}"#,
        serde_json::to_string(&batch[5]).unwrap()
    );
    assert_eq!(
        json!(answers[5]),
        serde_json::from_str::<Value>(&missing_id).unwrap()
    );
    assert!(reply.text.contains(&missing_id), "{}", reply.text);
    assert!(reply.text.contains(r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"error":"Invalid JSON-RPC structure","validation_errors":[{"type":"missing","loc":["params"],"msg":"Field required","input":{"jsonrpc":"2.0","method":"nope","id":"c"},"url":"https://errors.pydantic.dev/2.14/v/missing"}]}},"id":"c"}"#));
    assert_eq!(echoed_input(&answers[7]), &json!({"n": 3}));
    // A 2.x error code inside a batch: no handler for a payload type the reference does
    // not know either (free-form payload).
    let no_handler = json!([{"jsonrpc": "2.0", "method": "asap.send", "id": "s", "params": {"envelope": envelope("custom.thing", json!({}))}}]);
    let reply = post_2x(&server.base, &no_handler).await;
    assert_eq!(reply.json()[0]["error"]["code"], -32012, "{}", reply.text);
    server.stop().await;
}

#[tokio::test]
async fn empty_and_oversized_batches_get_one_error() {
    let mut options = Options::default();
    options.config.max_batch_size = 2;
    let small = start(options).await;
    let server = start(Options::default()).await;
    for body in [&b"[]"[..], b" [ ]\n"] {
        let reply = post_raw(&server.base, body.to_vec(), &[("asap-version", "2.1")]).await;
        assert_eq!((reply.status, reply.text.as_str()), (200, EMPTY));
        assert_eq!(reply.headers["asap-version"], "2.1");
    }
    let fifty_one: Vec<Value> = (0..51).map(|n| echo(json!(n), n)).collect();
    let reply = post_2x(&server.base, &json!(fifty_one)).await;
    assert_eq!(
        reply.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"reason":"batch size 51 exceeds max 50"}},"id":null}"#
    );
    let fifty = post_2x(&server.base, &json!(fifty_one[..50])).await;
    assert_eq!(fifty.json().as_array().unwrap().len(), 50);
    let three = post_2x(&small.base, &json!(fifty_one[..3])).await;
    assert_eq!(
        three.text,
        r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"reason":"batch size 3 exceeds max 2"}},"id":null}"#
    );
    let two = post_2x(&small.base, &json!(fifty_one[..2])).await;
    assert_eq!(two.json().as_array().unwrap().len(), 2);
    server.stop().await;
    small.stop().await;
}

#[tokio::test]
async fn a_batch_counts_one_rate_limit_hit_per_member() {
    let mut options = Options::default();
    // Per hour: nothing refills while the test runs.
    options.config.rate_limits = RateLimitRule::parse_list("10/hour").unwrap();
    let server = start(options).await;
    let base = &server.base;
    let batch = |n: u64| json!((0..n).map(|i| echo(json!(i), i)).collect::<Vec<_>>());
    // More members than the limit ever admits at once.
    let eleven = post_2x(base, &batch(11)).await;
    assert_eq!(eleven.status, 429);
    assert_eq!(eleven.headers["retry-after"], "3600");
    assert_eq!(eleven.headers["asap-version"], "2.2");
    assert_eq!(
        eleven.text,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":429,"message":"Rate limit exceeded","data":{"retry_after":3600,"limit":"10 per 1 hour"}}}"#
    );
    // As the reference (captured): 6 pass, then 5 are refused without counting, 4 pass.
    assert_eq!(post_2x(base, &batch(6)).await.status, 200);
    let five = post_2x(base, &batch(5)).await;
    assert_eq!(five.status, 429);
    assert_eq!(five.json()["error"]["data"]["limit"], "10 per 1 hour");
    assert_eq!(post_2x(base, &batch(4)).await.status, 200);
    // Spent: single requests are refused in both dialects, but an empty batch is
    // answered without counting (as the reference).
    assert_eq!(post_2x(base, &echo(json!(1), 1)).await.status, 429);
    let plain = serde_json::to_vec(&echo(json!(1), 1)).unwrap();
    assert_eq!(post_raw(base, plain, &[]).await.status, 429);
    let empty = post_raw(base, b"[]".to_vec(), &[("asap-version", "2.2")]).await;
    assert_eq!((empty.status, empty.text.as_str()), (200, EMPTY));
    server.stop().await;
}

/// The limits in Redis (shared by replicas) count a batch the same way, in one step.
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_batch_counts_one_hit_per_member_in_redis_too() {
    use asap_protocol::server::{RedisConfig, RedisSharedState};
    let redis = asap_test_support::redis::RedisServer::start();
    let shared = RedisSharedState::connect(RedisConfig::new(redis.url()))
        .await
        .expect("Redis answers");
    let mut options = Options {
        shared_state: Some(Arc::new(shared)),
        ..Options::default()
    };
    options.config.rate_limits = RateLimitRule::parse_list("10/hour").unwrap();
    let server = start(options).await;
    let base = &server.base;
    let batch = |n: u64| json!((0..n).map(|i| echo(json!(i), i)).collect::<Vec<_>>());
    assert_eq!(post_2x(base, &batch(11)).await.status, 429);
    assert_eq!(post_2x(base, &batch(6)).await.status, 200);
    let five = post_2x(base, &batch(5)).await;
    assert_eq!(five.status, 429);
    // One request every 360 s refills the bucket; the fifth member is one too many.
    assert_eq!(five.headers["retry-after"], "360");
    assert_eq!(post_2x(base, &batch(4)).await.status, 200);
    assert_eq!(post_2x(base, &echo(json!(1), 1)).await.status, 429);
    server.stop().await;
}

#[tokio::test]
async fn requests_without_the_header_keep_the_1_1_answer_to_an_array() {
    let server = start(Options::default()).await;
    let batch = serde_json::to_vec(&json!([echo(json!(1), 1)])).unwrap();
    for headers in [&[][..], &[("asap-version", "1.1")]] {
        let reply = post_raw(&server.base, batch.clone(), headers).await;
        assert_eq!((reply.status, reply.text.as_str()), (200, ARRAY_IN_1_1));
        assert!(reply.headers.get("asap-version").is_none());
        let empty = post_raw(&server.base, b"[]".to_vec(), headers).await;
        assert_eq!(empty.text, ARRAY_IN_1_1);
    }
    // Without 1.1 among the dialects, no header means 2.2, as the reference: a batch.
    let mut options = Options::default();
    options.config.dialects = vec![Dialect::V2_1, Dialect::V2_2];
    let v2_only = start(options).await;
    let reply = post_raw(&v2_only.base, batch, &[]).await;
    assert_eq!(reply.headers["asap-version"], "2.2");
    assert_eq!(echoed_input(&reply.json()[0]), &json!({"n": 1}));
    server.stop().await;
    v2_only.stop().await;
}

#[tokio::test]
async fn a_compressed_batch_is_refused_as_the_reference_refuses_it() {
    use std::io::Write;
    let server = start(Options::default()).await;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&serde_json::to_vec(&json!([echo(json!(1), 1)])).unwrap())
        .unwrap();
    let body = gzip.finish().unwrap();
    let headers = [("asap-version", "2.2"), ("content-encoding", "gzip")];
    let reply = post_raw(&server.base, body, &headers).await;
    assert_eq!((reply.status, reply.text.as_str()), (200, ARRAY_IN_1_1));
    server.stop().await;
}

/// A `task.request` handler for two members: the one whose input is `{"role": "slow"}`
/// waits until the `fast` one has answered, so the members finish in reverse order (a
/// batch run one member after the other would never finish).
#[derive(Clone, Default)]
struct SlowThenFast {
    fast_done: Arc<tokio::sync::Notify>,
    finished: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl Handler for SlowThenFast {
    async fn handle(
        &self,
        envelope: Envelope,
        _ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let role = envelope.payload["input"]["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if role == "slow" {
            self.fast_done.notified().await;
        }
        self.finished.lock().unwrap().push(role.clone());
        if role == "fast" {
            self.fast_done.notify_one();
        }
        let mut response = TaskResponse::new(format!("task-{role}"), TaskStatus::Completed);
        response.result = Some(serde_json::Map::from_iter([("role".into(), role.into())]));
        Ok(Envelope::response_to(&envelope, response))
    }
}

#[tokio::test]
async fn members_finishing_out_of_order_keep_their_places() {
    let handler = SlowThenFast::default();
    let mut registry = HandlerRegistry::new();
    registry.register("task.request", Arc::new(handler.clone()));
    let server = start(Options {
        registry: Some(registry),
        ..Options::default()
    })
    .await;
    let member = |id: &str| {
        let mut request = echo_request(json!({ "role": id }));
        request["id"] = json!(id);
        request
    };
    let batch = json!([member("slow"), member("fast")]);
    let reply = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        post_2x(&server.base, &batch),
    )
    .await
    .expect("the members run concurrently");
    assert_eq!(*handler.finished.lock().unwrap(), ["fast", "slow"]);
    let answers = reply.json();
    let roles: Vec<&Value> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["result"]["envelope"]["payload"]["result"]["role"])
        .collect();
    assert_eq!(roles, [&json!("slow"), &json!("fast")]);
    assert_eq!(answers[0]["id"], "slow");
    server.stop().await;
}

#[tokio::test]
async fn a_member_refused_for_lack_of_a_handler_slot_gets_the_503_body_in_its_place() {
    let gate = Gate::new();
    let mut options = Options {
        registry: Some(gate.registry()),
        ..Options::default()
    };
    options.config.max_concurrent_handlers = Some(1);
    let server = start(options).await;
    let base = server.base.clone();
    let batch = json!([echo(json!(1), 1), echo(json!(2), 2)]);
    let pending = tokio::spawn(async move { post_2x(&base, &batch).await });
    gate.entered().await;
    gate.release(1);
    let reply = pending.await.unwrap();
    assert_eq!(reply.status, 200);
    let answers = reply.json();
    assert_eq!(
        answers[0]["result"]["envelope"]["payload_type"],
        "task.response"
    );
    assert_eq!(
        json!(answers[1]),
        json!({"error":"Service Temporarily Unavailable","code":"asap:transport/thread_pool_exhausted","rpc_code":-32031,"message":"Thread pool exhausted: 1/1 threads in use. Service temporarily unavailable.","details":{"max_threads":1,"active_threads":1},"recoverable":true,"retry_after_ms":1000,"fallback_action":"retry_later"})
    );
    assert_eq!(gate.finished(), 1);
    server.stop().await;
}

fn client() -> Client {
    Client::builder().build().unwrap()
}

fn request(n: u64) -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        common::AGENT,
        TaskRequest::new("c1", "echo", json!({ "n": n })),
    )
}

#[tokio::test]
async fn client_batch_returns_the_answers_in_order_with_typed_member_errors() {
    let server = start(Options::default()).await;
    let mut unknown = request(9);
    unknown.payload_type = "custom.thing".into();
    let envelopes = [request(1), unknown, request(3)];
    let answers = client().batch(&server.base, &envelopes).await.unwrap();
    assert_eq!(answers.len(), 3);
    for (i, n) in [(0, 1), (2, 3)] {
        let answer = answers[i].as_ref().unwrap();
        assert_eq!(
            answer.correlation_id.as_deref(),
            Some(envelopes[i].id.as_str())
        );
        assert_eq!(answer.payload["result"]["echoed"], json!({ "n": n }));
    }
    assert!(matches!(
        &answers[1],
        Err(ClientError::Remote { code: -32012, message, .. })
            if message == "No handler registered for payload type: custom.thing"
    ));
    server.stop().await;
}

#[tokio::test]
async fn client_batch_refuses_empty_and_oversized_batches_before_sending() {
    // Nothing listens there: an attempt to send would fail with a transport error.
    let nowhere = "http://127.0.0.1:9";
    let empty = client().batch(nowhere, &[]).await.unwrap_err();
    assert!(matches!(
        empty,
        ClientError::InvalidRequest(RequestError::EmptyBatch)
    ));
    let many: Vec<Envelope> = (0..51).map(request).collect();
    let too_many = client().batch(nowhere, &many).await.unwrap_err();
    assert_eq!(
        too_many.to_string(),
        "invalid request: batch size 51 exceeds max 50"
    );
    let small = Client::builder().max_batch_size(2).build().unwrap();
    assert!(matches!(
        small.batch(nowhere, &many[..3]).await.unwrap_err(),
        ClientError::InvalidRequest(RequestError::BatchTooLarge { size: 3, max: 2 })
    ));
}

#[tokio::test]
async fn client_batch_reports_a_batch_refused_as_a_whole() {
    // A 1.1 server (no 2.x dialect) answers an array with one -32600.
    let mut options = Options::default();
    options.config.dialects = vec![Dialect::V1_1];
    let old = start(options).await;
    let refused = client().batch(&old.base, &[request(1)]).await.unwrap_err();
    assert!(matches!(
        &refused,
        ClientError::Remote { code: -32600, data: Some(data), .. } if data["received_type"] == "list"
    ));
    // A server whose limit is smaller than the client's.
    let mut options = Options::default();
    options.config.max_batch_size = 1;
    let small = start(options).await;
    let refused = client()
        .batch(&small.base, &[request(1), request(2)])
        .await
        .unwrap_err();
    assert!(matches!(
        &refused,
        ClientError::Remote { code: -32600, data: Some(data), .. } if data["reason"] == "batch size 2 exceeds max 1"
    ));
    // Over the rate limit: HTTP 429, not retried.
    let mut options = Options::default();
    options.config.rate_limits = RateLimitRule::parse_list("1/hour").unwrap();
    let limited = start(options).await;
    let refused = client()
        .batch(&limited.base, &[request(1), request(2)])
        .await
        .unwrap_err();
    assert!(matches!(&refused, ClientError::Http { status, .. } if status.as_u16() == 429));
    old.stop().await;
    small.stop().await;
    limited.stop().await;
}
