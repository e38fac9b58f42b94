//! The HTTP client against scripted servers: retries, Retry-After, circuit breaking,
//! compression, authentication, and discovery caching.

use reqwest::StatusCode;
use std::io::Read;
use std::time::Duration;

use asap_protocol::client::{
    BreakerConfig, Client, ClientError, RequestError, ResponseError, RetryPolicy,
};
use asap_protocol::model::{Envelope, Model, TaskRequest, TaskResponse, TaskStatus};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn request() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        "urn:asap:agent:server",
        TaskRequest::new("c", "echo", json!({"x": 1})),
    )
}

fn success(id: &str) -> Value {
    let reply = Envelope::new(
        "urn:asap:agent:server",
        "urn:asap:agent:client",
        TaskResponse::new("t1", TaskStatus::Completed),
    )
    .with_correlation_id("x");
    json!({"jsonrpc": "2.0", "result": {"envelope": reply.to_value()}, "id": id})
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    {
        let mut value = RetryPolicy::default();
        value.max_attempts = attempts;
        value.base_delay = Duration::from_millis(10);
        value.max_delay = Duration::from_millis(50);
        value.jitter = 0.1;
        value
    }
}

fn client(attempts: u32) -> Client {
    Client::builder()
        .retry(fast_retries(attempts))
        .circuit_breaker(None)
        .build()
        .unwrap()
}

#[tokio::test]
async fn transient_failures_are_retried_with_the_same_id_and_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/asap"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/asap"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success("req-1")))
        .mount(&server)
        .await;
    let reply = client(3).send(&server.uri(), &request()).await.unwrap();
    assert_eq!(reply.payload_type, "task.response");
    let seen: Vec<Request> = server.received_requests().await.unwrap();
    assert_eq!(seen.len(), 3);
    let bodies: Vec<Value> = seen
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert!(bodies.iter().all(|b| b["id"] == "req-1"));
    let key = seen[0]
        .headers
        .get("x-idempotency-key")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        seen.iter()
            .all(|r| r.headers.get("x-idempotency-key").unwrap() == key.as_str())
    );
    assert_eq!(bodies[0]["params"]["idempotency_key"], key.as_str());
    // The body is what the reference client sends: Python's default json.dumps.
    assert!(String::from_utf8_lossy(&seen[0].body).starts_with(
        r#"{"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": {"id": ""#
    ));
}

/// A server that answers 429 with `Retry-After: retry_after` once, then succeeds.
async fn limited_once(retry_after: &str) -> MockServer {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429).insert_header("retry-after", retry_after);
    Mock::given(method("POST"))
        .respond_with(limited)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success("req-1")))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn rate_limits_honour_retry_after() {
    let server = limited_once("0").await;
    client(2).send(&server.uri(), &request()).await.unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

/// A `Retry-After` longer than the policy's `max_delay` (50 ms here) is waited only that
/// long: a server cannot hold the caller for a day.
#[tokio::test]
async fn retry_after_is_capped_by_the_policy() {
    let server = limited_once("86400").await;
    tokio::time::timeout(
        Duration::from_secs(10),
        client(2).send(&server.uri(), &request()),
    )
    .await
    .expect("the retry waited max_delay, not the day the server asked for")
    .unwrap();
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn client_errors_and_remote_errors_are_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(413).set_body_string(r#"{"detail":"too big"}"#))
        .mount(&server)
        .await;
    match client(3).send(&server.uri(), &request()).await {
        Err(ClientError::Http {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            body,
        }) => assert!(body.contains("too big")),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 1);

    let server = MockServer::start().await;
    let error = json!({"jsonrpc": "2.0", "error": {"code": -32602, "message": "Invalid params", "data": {"error": "x"}}, "id": "req-1"});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(error))
        .mount(&server)
        .await;
    let err = client(3).send(&server.uri(), &request()).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(-32602));
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = Client::builder()
        .retry(RetryPolicy::none())
        .circuit_breaker(Some({
            let mut value = BreakerConfig::default();
            value.threshold = 2;
            value.open_for = Duration::from_secs(60);
            value
        }))
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(matches!(
            client.send(&server.uri(), &request()).await,
            Err(ClientError::Http {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                ..
            })
        ));
    }
    match client.send(&server.uri(), &request()).await {
        Err(ClientError::CircuitOpen(e)) => assert_eq!(e.code(), "asap:transport/circuit_open"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        2,
        "the open circuit sent nothing"
    );
}

#[tokio::test]
async fn large_bodies_are_compressed_and_tokens_attached() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer s3cret"))
        .and(header("content-encoding", "br"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success("req-1")))
        .mount(&server)
        .await;
    let client = Client::builder().bearer_token("s3cret").build().unwrap();
    let big = Envelope::new(
        "urn:asap:agent:client",
        "urn:asap:agent:server",
        TaskRequest::new("c", "echo", json!({"text": "y".repeat(5000)})),
    );
    client.send(&server.uri(), &big).await.unwrap();
    let seen = server.received_requests().await.unwrap();
    let mut plain = Vec::new();
    brotli::Decompressor::new(seen[0].body.as_slice(), 4096)
        .read_to_end(&mut plain)
        .unwrap();
    let body: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(
        body["params"]["envelope"]["payload"]["input"]["text"]
            .as_str()
            .unwrap()
            .len(),
        5000
    );
    assert!(seen[0].body.len() < plain.len());
}

#[tokio::test]
async fn responses_that_are_not_asap_are_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success("req-99")))
        .mount(&server)
        .await;
    assert!(matches!(
        client(1).send(&server.uri(), &request()).await,
        Err(ClientError::InvalidResponse(
            ResponseError::IdMismatch { .. }
        ))
    ));
    let unanswered = Client::builder().retry(fast_retries(2)).build().unwrap();
    assert!(matches!(
        unanswered.send("http://127.0.0.1:9", &request()).await,
        Err(ClientError::Transport(_))
    ));
    let strict = Client::builder().build().unwrap();
    assert!(matches!(
        strict.send("http://example.com", &request()).await,
        Err(ClientError::InvalidRequest(RequestError::InsecureTransport { url }))
            if url == "http://example.com"
    ));
    let mut response_without_correlation = Envelope::new(
        "urn:asap:agent:a",
        "urn:asap:agent:b",
        TaskResponse::new("t", TaskStatus::Completed),
    );
    response_without_correlation.correlation_id = None;
    assert!(matches!(
        strict
            .send(&server.uri(), &response_without_correlation)
            .await,
        Err(ClientError::InvalidRequest(RequestError::Envelope(_)))
    ));
}

const MANIFEST: &str = r#"{"id":"urn:asap:agent:echo","name":"Echo","version":"1.0.0","description":"d","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo"}]},"endpoints":{"asap":"http://x/asap"},"ttl_seconds":60}"#;

#[tokio::test]
async fn discovery_is_cached_and_revalidated_with_the_etag() {
    let server = MockServer::start().await;
    let etag = "\"abc\"";
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/manifest.json"))
        .and(header("if-none-match", etag))
        .respond_with(
            ResponseTemplate::new(304)
                .insert_header("etag", etag)
                .insert_header("cache-control", "public, max-age=300"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/manifest.json"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string(MANIFEST)
                .insert_header("etag", etag)
                .insert_header("cache-control", "max-age=0"),
        )
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let first = client.discover(&server.uri()).await.unwrap();
    assert_eq!(first.skill("echo").unwrap().description, "Echo");
    let second = client
        .discover(&format!("{}/", server.uri()))
        .await
        .unwrap();
    assert_eq!(first, second);
    let third = client.discover(&server.uri()).await.unwrap();
    assert_eq!(first, third);
    let seen = server.received_requests().await.unwrap();
    assert_eq!(
        seen.len(),
        2,
        "one fetch, one revalidation, then fresh for 300 s"
    );
    assert_eq!(seen[1].headers.get("if-none-match").unwrap(), etag);
}

#[tokio::test]
async fn invalid_and_incompatible_manifests_are_errors() {
    let server = MockServer::start().await;
    let future = MANIFEST.replace(r#""asap_version":"0.1""#, r#""asap_version":"2.0""#);
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(future))
        .mount(&server)
        .await;
    assert!(matches!(
        Client::builder()
            .build()
            .unwrap()
            .discover(&server.uri())
            .await,
        Err(ClientError::Incompatible { agent, asap_version })
            if agent == "urn:asap:agent:echo" && asap_version == "2.0"
    ));
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(r#"{"id": "x"}"#))
        .mount(&server)
        .await;
    let invalid = Client::builder()
        .build()
        .unwrap()
        .discover(&server.uri())
        .await
        .unwrap_err();
    assert!(matches!(
        &invalid,
        ClientError::InvalidResponse(ResponseError::Manifest(_))
    ));
    let decode = std::error::Error::source(&invalid).and_then(std::error::Error::source);
    assert!(decode.is_some_and(|e| e.is::<asap_protocol::model::DecodeError>()));
}

#[tokio::test]
async fn health_checks_report_unhealthy_agents_and_cache_healthy_ones() {
    let server = MockServer::start().await;
    let healthy = r#"{"status":"healthy","agent_id":"urn:asap:agent:echo","version":"1.0.0","asap_version":"0.1","uptime_seconds":3.5,"load":null}"#;
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/health"))
        .respond_with(ResponseTemplate::new(200).set_body_string(healthy))
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    assert!(
        client
            .health_check(&server.uri())
            .await
            .unwrap()
            .is_healthy()
    );
    assert!(
        client
            .health_check(&server.uri())
            .await
            .unwrap()
            .is_healthy()
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "cached");

    let sick = MockServer::start().await;
    let body = healthy.replace("\"healthy\"", "\"unhealthy\"");
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_string(body))
        .mount(&sick)
        .await;
    assert!(!client.health_check(&sick.uri()).await.unwrap().is_healthy());
    let broken = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&broken)
        .await;
    assert!(matches!(
        client.health_check(&broken.uri()).await,
        Err(ClientError::Http {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..
        })
    ));
}

/// JSON-RPC sends follow no redirect: a 307 would re-POST the envelope (and its token)
/// to wherever it points.
#[tokio::test]
async fn sends_follow_no_redirect() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(success("req-1")))
        .mount(&elsewhere)
        .await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(307)
                .insert_header("location", format!("{}/asap", elsewhere.uri())),
        )
        .mount(&server)
        .await;
    let sent = client(1).send(&server.uri(), &request()).await;
    assert!(
        matches!(
            sent,
            Err(ClientError::Http {
                status: StatusCode::TEMPORARY_REDIRECT,
                ..
            })
        ),
        "{sent:?}"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

/// Discovery follows redirects within the agent's origin only: never to another host
/// (a cloud metadata address, an internal service).
#[tokio::test]
async fn discovery_follows_same_origin_redirects_only() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(MANIFEST))
        .mount(&elsewhere)
        .await;
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/manifest.json"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/m.json", elsewhere.uri())),
        )
        .mount(&server)
        .await;
    let client = Client::builder().build().unwrap();
    let refused = client.discover(&server.uri()).await;
    assert!(
        matches!(refused, Err(ClientError::Transport(_))),
        "{refused:?}"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());

    let same = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/.well-known/asap/manifest.json"))
        .respond_with(ResponseTemplate::new(301).insert_header("location", "/moved/manifest.json"))
        .mount(&same)
        .await;
    Mock::given(method("GET"))
        .and(path("/moved/manifest.json"))
        .respond_with(ResponseTemplate::new(200).set_body_string(MANIFEST))
        .mount(&same)
        .await;
    assert_eq!(
        client.discover(&same.uri()).await.unwrap().id,
        "urn:asap:agent:echo"
    );
}

/// Serves each request: `head`, then chunks of 64 KiB (chunked encoding,
/// no length), until the client hangs up. Bounded: at most 1,024 chunks (64 MiB).
async fn endless(head: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", "a".repeat(0x10000));
                for _ in 0..1024 {
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// Bodies beyond the limits are refused while they stream (no Content-Length), and at
/// once when Content-Length says so; the limits are settings.
#[tokio::test]
async fn response_bodies_are_capped_while_streaming() {
    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let url = endless(CHUNKED).await;
    let client = Client::builder()
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let manifest = client.discover(&url).await;
    assert!(
        matches!(
            manifest,
            Err(ClientError::ResponseTooLarge {
                what: "manifest",
                limit: 1_048_576
            })
        ),
        "{manifest:?}"
    );
    let health = client.health_check(&url).await;
    assert!(
        matches!(
            health,
            Err(ClientError::ResponseTooLarge {
                what: "health document",
                ..
            })
        ),
        "{health:?}"
    );
    let sent = client.send(&url, &request()).await;
    assert!(
        matches!(
            sent,
            Err(ClientError::ResponseTooLarge {
                what: "response envelope",
                ..
            })
        ),
        "{sent:?}"
    );

    // Declared too large: refused before reading.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string(MANIFEST))
        .mount(&server)
        .await;
    let tight = Client::builder()
        .response_limits(asap_protocol::client::ResponseLimits::all(64))
        .build()
        .unwrap();
    assert!(matches!(
        tight.discover(&server.uri()).await,
        Err(ClientError::ResponseTooLarge { limit: 64, .. })
    ));
}

/// The identity documents a server fetches (JWKS, OIDC discovery) are capped too: a
/// provider streaming gigabytes of "keys" used to take `asap serve` past 2.5 GB.
#[tokio::test]
async fn identity_documents_are_capped() {
    const CHUNKED: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let url = endless(CHUNKED).await;
    use asap_protocol::auth::{DocumentError, JwksError, OidcError};
    let too_large = |e: &DocumentError| {
        matches!(e, DocumentError::Body(body)
            if matches!(**body, ClientError::ResponseTooLarge { limit: 1048576, .. }))
    };
    let keys = asap_protocol::auth::JwksCache::new(format!("{url}/jwks"))
        .unwrap()
        .keys()
        .await;
    match keys {
        Err(JwksError::Fetch { source, .. }) => assert!(too_large(&source), "{source:?}"),
        other => panic!("{other:?}"),
    }
    let oidc = asap_protocol::auth::OidcDiscovery::new(&url)
        .unwrap()
        .config()
        .await;
    let error = oidc.unwrap_err();
    assert!(
        chain(&error).ends_with(
            "the body could not be read: the OIDC discovery document is larger than 1048576 bytes"
        ),
        "{}",
        chain(&error)
    );
    assert!(matches!(&error, OidcError::Fetch { source, .. } if too_large(source)));
    // Each cap is the caller's to set.
    let keys = asap_protocol::auth::JwksCache::new(format!("{url}/jwks"))
        .unwrap()
        .max_document_size(4096)
        .keys()
        .await;
    let Err(JwksError::Fetch { source, .. }) = keys else {
        panic!("{keys:?}")
    };
    assert!(
        matches!(&source, DocumentError::Body(body)
            if matches!(**body, ClientError::ResponseTooLarge { limit: 4096, .. })),
        "{source:?}"
    );
    let registry = asap_protocol::discovery::RegistryClient::new()
        .unwrap()
        .max_document_size(4096)
        .fetch(&format!("{url}/registry.json"))
        .await
        .unwrap_err();
    assert!(registry.to_string().contains("4096"), "{registry}");
}

/// An error and its sources, joined with `: `.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}
