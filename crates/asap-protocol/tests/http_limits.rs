//! Size limits, compression, rate limiting, replay protection, authentication,
//! concurrency limits, discovery routes and graceful shutdown, against a real server.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use asap_protocol::model::AuthScheme;
use asap_protocol::server::{HandlerRegistry, RateLimitRule, StaticTokens};
use common::{Gate, Options, echo_request, envelope, get, post, post_raw, start};
use serde_json::{Value, json};

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
        w.write_all(data).unwrap();
    }
    out
}

#[tokio::test]
async fn size_limit_and_compression() {
    let mut options = Options::default();
    options.config.max_request_size = 2000;
    let server = start(options).await;
    let body = serde_json::to_vec(&echo_request(json!({"text": "a".repeat(1500)}))).unwrap();
    assert_eq!(post_raw(&server.base, body.clone(), &[]).await.status, 200);
    let big = serde_json::to_vec(&echo_request(json!({"text": "a".repeat(2500)}))).unwrap();
    let reply = post_raw(&server.base, big.clone(), &[]).await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.json(),
        json!({"detail": format!("Request size ({} bytes) exceeds maximum (2000 bytes)", big.len())})
    );
    for (coding, bytes) in [
        ("gzip", gzip(&body)),
        ("br", brotli(&body)),
        ("GZip ", gzip(&body)),
        ("identity", body.clone()),
    ] {
        let reply = post_raw(&server.base, bytes, &[("content-encoding", coding)]).await;
        assert_eq!(reply.status, 200, "{coding}: {}", reply.text);
        assert!(
            reply.headers.get("content-encoding").is_none(),
            "responses are never compressed"
        );
    }
    // Small on the wire, too large once decompressed.
    let reply = post_raw(&server.base, gzip(&big), &[("content-encoding", "gzip")]).await;
    assert_eq!(reply.status, 413);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .starts_with("Decompressed request size (")
    );
    let reply = post_raw(
        &server.base,
        b"no".to_vec(),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid compressed data: ")
    );
    let reply = post_raw(
        &server.base,
        body.clone(),
        &[("content-encoding", "deflate")],
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()),
        (
            415,
            json!({"detail": "Unsupported Content-Encoding: deflate. Supported: br, gzip"})
        )
    );
    let reply = post_raw(&server.base, body, &[("content-type", "text/plain")]).await;
    assert_eq!(reply.status, 200, "content type is not checked");
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let mut options = Options::default();
    options.config.rate_limits = RateLimitRule::parse_list("10/second;100/minute").unwrap();
    let server = start(options).await;
    // A burst of 15 at once: 10 admitted, the rest refused.
    let mut burst = Vec::new();
    for _ in 0..15 {
        let base = server.base.clone();
        burst.push(tokio::spawn(async move {
            post(&base, &echo_request(json!({}))).await
        }));
    }
    let mut replies = Vec::new();
    for job in burst {
        replies.push(job.await.unwrap());
    }
    let admitted = replies.iter().filter(|r| r.status == 200).count();
    assert!((10..15).contains(&admitted), "{admitted} admitted");
    let reply = replies.iter().find(|r| r.status == 429).expect("a refusal");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(
        reply.text,
        r#"{"jsonrpc":"2.0","id":null,"error":{"code":429,"message":"Rate limit exceeded","data":{"retry_after":1,"limit":"10 per 1 second"}}}"#
    );
    // GET routes are not limited.
    assert_eq!(get(&server.base, "/health", &[]).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn malformed_requests_count_against_the_limit() {
    let mut options = Options::default();
    options.config.rate_limits = RateLimitRule::parse_list("3/minute").unwrap();
    let server = start(options).await;
    assert_eq!(
        post_raw(&server.base, b"garbage".to_vec(), &[])
            .await
            .status,
        200
    );
    assert_eq!(
        post_raw(&server.base, b"[]".to_vec(), &[]).await.status,
        200
    );
    assert_eq!(
        post(&server.base, &echo_request(json!({}))).await.status,
        200
    );
    let reply = post(&server.base, &echo_request(json!({}))).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"]["data"]["limit"], "3 per 1 minute");
    let wait: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    server.stop().await;
}

#[tokio::test]
async fn replay_window_and_nonces() {
    let mut options = Options::default();
    options.config.require_nonce = true;
    let server = start(options).await;
    let mut old = envelope(
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
    );
    old["timestamp"] = json!("2020-01-01T00:00:00Z");
    old["id"] = json!("env-old");
    let reply = post(&server.base, &json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": old}, "id": "req-1"})).await;
    let data = reply.json()["error"]["data"].clone();
    assert_eq!(reply.code(), -32602);
    assert_eq!(data["error"], "Invalid envelope timestamp");
    assert_eq!(data["code"], "asap:protocol/invalid_timestamp");
    assert!(
        data["message"]
            .as_str()
            .unwrap()
            .starts_with("Envelope timestamp is too old: ")
    );
    assert_eq!(data["details"]["timestamp"], "2020-01-01T00:00:00+00:00");
    assert_eq!(data["details"]["envelope_id"], "env-old");
    assert_eq!(data["details"]["max_age_seconds"], 300);

    let mut with_nonce = envelope(
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {}}),
    );
    with_nonce["extensions"] = json!({"nonce": "nonce-123"});
    let body = json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": with_nonce}, "id": "req-1"});
    assert_eq!(post(&server.base, &body).await.status, 200);
    let reply = post(&server.base, &body).await;
    let data = reply.json()["error"]["data"].clone();
    assert_eq!(
        (reply.code(), data["code"].clone()),
        (-32602, json!("asap:protocol/invalid_nonce"))
    );
    assert_eq!(data["message"], "Duplicate nonce detected: nonce-123");
    assert_eq!(data["error"], "Invalid envelope nonce");
    server.stop().await;
}

#[tokio::test]
async fn bearer_authentication_and_sender_binding() {
    let options = Options {
        validator: Some(Arc::new(StaticTokens::new([(
            "good-token",
            "urn:asap:agent:client",
        )]))),
        edit_manifest: Some(Box::new(|m| {
            m.auth = Some(AuthScheme {
                schemes: vec!["bearer".into()],
                oauth2: None,
            })
        })),
        ..Options::default()
    };
    let server = start(options).await;
    let body = serde_json::to_vec(&echo_request(json!({}))).unwrap();
    let reply = post_raw(&server.base, body.clone(), &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json()["error"],
        json!({"code": -32600, "message": "Invalid request", "data": {"error": "Authentication required", "status_code": 401}})
    );
    let reply = post_raw(
        &server.base,
        body.clone(),
        &[("authorization", "Basic abc")],
    )
    .await;
    assert_eq!(
        reply.json()["error"]["data"]["error"],
        "Authentication required"
    );
    let reply = post_raw(
        &server.base,
        body.clone(),
        &[("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(
        reply.json()["error"]["data"]["error"],
        "Invalid authentication token"
    );
    let reply = post_raw(
        &server.base,
        body.clone(),
        &[("authorization", "bearer good-token")],
    )
    .await;
    assert!(reply.json()["result"].is_object(), "{}", reply.text);
    // Authentication runs before envelope validation.
    let reply = post_raw(
        &server.base,
        br#"{"jsonrpc":"2.0","method":"asap.send","params":{"envelope":{}},"id":"r"}"#.to_vec(),
        &[],
    )
    .await;
    assert_eq!(
        reply.json()["error"]["data"]["error"],
        "Authentication required"
    );
    let mut other = echo_request(json!({}));
    other["params"]["envelope"]["sender"] = json!("urn:asap:agent:someone-else");
    let reply = post_raw(
        &server.base,
        serde_json::to_vec(&other).unwrap(),
        &[("authorization", "Bearer good-token")],
    )
    .await;
    assert_eq!(
        reply.json()["error"],
        json!({"code": -32602, "message": "Invalid params", "data": {"error": "Sender does not match authenticated identity", "status_code": 403}})
    );
    // The manifest stays public.
    assert_eq!(
        get(&server.base, "/.well-known/asap/manifest.json", &[])
            .await
            .status,
        200
    );
    server.stop().await;
}

#[tokio::test]
async fn discovery_routes_and_caching() {
    let server = start(Options::default()).await;
    let reply = get(&server.base, "/.well-known/asap/manifest.json", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["cache-control"], "public, max-age=300");
    let etag = reply.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.len() == 66 && etag.starts_with('"'));
    assert_eq!(reply.json()["id"], common::AGENT);
    let not_modified = get(
        &server.base,
        "/.well-known/asap/manifest.json",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!((not_modified.status, not_modified.text.as_str()), (304, ""));
    assert_eq!(not_modified.headers["etag"].to_str().unwrap(), etag);
    let weak = get(
        &server.base,
        "/.well-known/asap/manifest.json",
        &[("if-none-match", &format!("W/{etag}"))],
    )
    .await;
    assert_eq!(weak.status, 200);
    let health = get(&server.base, "/.well-known/asap/health", &[]).await;
    let body = health.json();
    assert_eq!(
        (
            health.status,
            body["status"].clone(),
            body["agent_id"].clone()
        ),
        (200, json!("healthy"), json!(common::AGENT))
    );
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        get(&server.base, "/health", &[]).await.json(),
        json!({"status": "ok"})
    );
    assert_eq!(
        get(&server.base, "/ready", &[]).await.json(),
        json!({"status": "ok"})
    );
    let missing = get(&server.base, "/nothing-here", &[]).await;
    assert_eq!(
        (missing.status, missing.json()),
        (404, json!({"detail": "Not Found"}))
    );
    let wrong = get(&server.base, "/asap", &[]).await;
    assert_eq!(
        (wrong.status, wrong.json()),
        (405, json!({"detail": "Method Not Allowed"}))
    );
    assert_eq!(wrong.headers["allow"], "POST");
    let head = reqwest::Client::new()
        .head(format!("{}/.well-known/asap/manifest.json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 405);
    assert_eq!(head.headers()["allow"], "GET");
    post(&server.base, &echo_request(json!({}))).await;
    post_raw(&server.base, b"{".to_vec(), &[]).await;
    let metrics = get(&server.base, "/asap/metrics", &[]).await;
    assert_eq!(
        metrics.headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(
        metrics
            .text
            .contains(r#"asap_requests_total{payload_type="task.request",status="success"} 1"#),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains(
            r#"asap_requests_error_total{error_type="parse_error",payload_type="other"} 1"#
        )
    );
    assert!(
        metrics
            .text
            .contains(r#"asap_handler_executions_total{payload_type="task.request"} 1"#)
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrency_limit_answers_503() {
    let gate = Gate::new();
    let mut options = Options {
        registry: Some(gate.registry()),
        ..Options::default()
    };
    options.config.max_concurrent_handlers = Some(1);
    let server = start(options).await;
    let base = server.base.clone();
    let first = tokio::spawn(async move { post(&base, &echo_request(json!({}))).await });
    gate.entered().await;
    let second = post(&server.base, &echo_request(json!({}))).await;
    assert_eq!(second.status, 503);
    assert_eq!(
        second.json()["code"],
        "asap:transport/thread_pool_exhausted"
    );
    assert_eq!(
        second.json()["details"],
        json!({"max_threads": 1, "active_threads": 1})
    );
    gate.release(1);
    assert_eq!(first.await.unwrap().status, 200);
    server.stop().await;
}

/// Paused time: `sleep` returns once every task (server and client run on the test's
/// runtime) is idle, so the server has taken the stop before the handler is released.
#[tokio::test(start_paused = true)]
async fn graceful_shutdown_finishes_requests_in_flight() {
    let gate = Gate::new();
    let options = Options {
        registry: Some(gate.registry()),
        ..Options::default()
    };
    let mut server = start(options).await;
    let base = server.base.clone();
    let in_flight = tokio::spawn(async move { post(&base, &echo_request(json!({}))).await });
    gate.entered().await;
    server.signal_stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !server.task.is_finished(),
        "the server waits for the request"
    );
    assert!(
        tokio::net::TcpStream::connect(server.addr).await.is_err(),
        "stopping: new connections are refused"
    );
    gate.release(1);
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text);
    server.task.await.unwrap().unwrap();
}

/// Paused time: the grace runs on tokio's clock.
#[tokio::test(start_paused = true)]
async fn shutdown_deadline_bounds_the_wait() {
    let gate = Gate::new();
    let mut options = Options {
        registry: Some(gate.registry()),
        ..Options::default()
    };
    options.config.shutdown_grace = Duration::from_secs(30);
    let mut server = start(options).await;
    let base = server.base.clone();
    let _stuck = tokio::spawn(async move { post(&base, &echo_request(json!({}))).await });
    gate.entered().await;
    let started = tokio::time::Instant::now();
    server.signal_stop();
    server.task.await.unwrap().unwrap();
    assert_eq!(
        started.elapsed().as_secs(),
        30,
        "stopped at the grace, never released"
    );
    assert_eq!(gate.finished(), 0);
}

#[tokio::test]
async fn payload_validation_in_handlers_reports_32602() {
    let server = start(Options {
        registry: Some(HandlerRegistry::agent(
            asap_protocol::server::default_skills(),
        )),
        ..Options::default()
    })
    .await;
    let mut body = echo_request(json!({}));
    body["params"]["envelope"]["payload"] = json!({"conversation_id": "c"});
    let reply = post(&server.base, &body).await;
    assert_eq!(reply.code(), -32602);
    let errors: Vec<Value> = reply.json()["error"]["data"]["validation_errors"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        errors.iter().map(|e| e["loc"].clone()).collect::<Vec<_>>(),
        [json!(["skill_id"]), json!(["input"])]
    );
    server.stop().await;
}

/// A store whose backend is gone.
struct BrokenStore;

fn gone() -> asap_protocol::store::StoreError {
    asap_protocol::store::StoreError::Backend("disk unplugged".into())
}

#[async_trait::async_trait]
impl asap_protocol::store::TaskStore for BrokenStore {
    async fn get_task(
        &self,
        _: &str,
    ) -> Result<Option<asap_protocol::store::StoredTask>, asap_protocol::store::StoreError> {
        Err(gone())
    }
}

#[async_trait::async_trait]
impl asap_protocol::store::SnapshotStore for BrokenStore {
    async fn save(
        &self,
        _: &asap_protocol::model::StateSnapshot,
    ) -> Result<(), asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn get(
        &self,
        _: &str,
        _: Option<i64>,
    ) -> Result<Option<asap_protocol::model::StateSnapshot>, asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn list_versions(&self, _: &str) -> Result<Vec<i64>, asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn delete(
        &self,
        _: &str,
        _: Option<i64>,
    ) -> Result<bool, asap_protocol::store::StoreError> {
        Err(gone())
    }
}

#[async_trait::async_trait]
impl asap_protocol::store::MeteringStore for BrokenStore {
    async fn record(
        &self,
        _: &asap_protocol::model::UsageEvent,
    ) -> Result<(), asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn query(
        &self,
        _: &str,
        _: Option<asap_protocol::model::Timestamp>,
        _: Option<asap_protocol::model::Timestamp>,
    ) -> Result<Vec<asap_protocol::model::UsageEvent>, asap_protocol::store::StoreError> {
        Err(gone())
    }
}

#[async_trait::async_trait]
impl asap_protocol::store::Store for BrokenStore {
    async fn commit(
        &self,
        _: asap_protocol::store::WriteBatch,
    ) -> Result<(), asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn ping(&self) -> Result<(), asap_protocol::store::StoreError> {
        Err(gone())
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn an_unavailable_store_makes_the_agent_unhealthy() {
    let options = Options {
        store: Arc::new(BrokenStore),
        registry: Some(HandlerRegistry::agent(
            asap_protocol::server::default_skills(),
        )),
        ..Options::default()
    };
    let server = start(options).await;
    let health = get(&server.base, "/.well-known/asap/health", &[]).await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (503, json!("unhealthy"))
    );
    assert_eq!(get(&server.base, "/ready", &[]).await.status, 503);
    assert_eq!(
        get(&server.base, "/health", &[]).await.status,
        200,
        "liveness does not depend on the store"
    );
    let reply = post(&server.base, &echo_request(json!({}))).await;
    assert_eq!(reply.code(), -32603, "{}", reply.text);
    assert_eq!(
        reply.json()["error"]["data"],
        json!({"error": "Internal server error"})
    );
    server.stop().await;
}

#[tokio::test]
async fn responses_are_compressed_only_when_switched_on() {
    let plain = start(Options::default()).await;
    let body = serde_json::to_vec(&echo_request(json!({"text": "z".repeat(4000)}))).unwrap();
    let reply = post_raw(
        &plain.base,
        body.clone(),
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert!(reply.headers.get("content-encoding").is_none());
    plain.stop().await;
    let mut options = Options::default();
    options.config.compress_responses = true;
    let compressing = start(options).await;
    let response = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap()
        .post(format!("{}/asap", compressing.base))
        .header("accept-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let compressed = response.bytes().await.unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(compressed.as_ref()),
        &mut text,
    )
    .unwrap();
    assert!(text.contains(&"z".repeat(4000)));
    compressing.stop().await;
}

/// Paused time: the body timeout is a tokio timer.
#[tokio::test(start_paused = true)]
async fn a_body_that_never_arrives_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut options = Options::default();
    options.config.body_read_timeout = Duration::from_millis(300);
    let server = start(options).await;
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    socket
        .write_all(b"POST /asap HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server must not wait forever");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.contains("Request body not received within 0.3 seconds"),
        "{text}"
    );
    server.stop().await;
}

#[test]
fn a_server_needs_a_manifest_with_supported_auth_schemes() {
    use asap_protocol::server::{Server, ServerError};
    assert!(matches!(
        Server::builder().build(),
        Err(ServerError::MissingManifest)
    ));
    let mut manifest = common::manifest("http://127.0.0.1:1");
    manifest.auth = Some(AuthScheme {
        schemes: vec!["bearer".into(), "oauth2".into()],
        oauth2: None,
    });
    match Server::builder().manifest(manifest).build() {
        Err(ServerError::Manifest(error)) => {
            assert_eq!(error.code(), "asap:auth/unsupported_scheme")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("built a server whose manifest locks every client out"),
    }
}
