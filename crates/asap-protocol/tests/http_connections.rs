//! Connection-level defences: the header read timeout (slowloris), the idle timeout,
//! the connection cap, the bearer token checked before the body is read, and the bound
//! on request bytes held in memory. Timers run on paused tokio time.

mod common;

use std::time::Duration;

use common::{Options, echo_request, post_raw, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Reads until the server closes the connection (or resets it); returns what arrived.
/// Bounded: a server that never closes fails the test after `limit` of tokio time.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for {limit:?}"
    );
    out
}

fn request_bytes(body: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(body).unwrap();
    let mut out = format!(
        "POST /asap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(7);
    let server = start(options).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let began = Instant::now();
    slow.write_all(b"POST /asap HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow, Duration::from_secs(3600)).await;
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    // hyper answers a header timeout by closing, with or without a 408.
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_kept_alive_connection_waits_for_its_next_request_at_most_the_header_timeout() {
    let mut options = Options::default();
    options.config.header_read_timeout = Duration::from_secs(5);
    let server = start(options).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(&request_bytes(&echo_request(json!({"n": 1}))))
        .await
        .unwrap();
    let began = Instant::now();
    let answer = read_until_closed(&mut client, Duration::from_secs(3600)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));
    assert!(began.elapsed() >= Duration::from_secs(5));
    assert!(began.elapsed() < Duration::from_secs(6));
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_its_response_is_cut_off_after_the_idle_timeout() {
    let mut options = Options::default();
    options.config.idle_timeout = Duration::from_secs(20);
    options.config.header_read_timeout = Duration::from_secs(3600);
    let server = start(options).await;
    // An 8 MiB echo: far more than the loopback socket buffers hold.
    let input = "x".repeat(8 * 1024 * 1024);
    let request = request_bytes(&echo_request(json!({"blob": input})));
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(&request).await.unwrap();
    // Not reading: the server's write stalls. Let tokio time run past the idle timeout.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let answer = read_until_closed(&mut client, Duration::from_secs(3600)).await;
    assert!(String::from_utf8_lossy(&answer[..12]).starts_with("HTTP/1.1 200"));
    assert!(
        answer.len() < request.len(),
        "the whole response ({} bytes) was delivered to a client that stopped reading",
        answer.len()
    );
    server.stop().await;
}

#[tokio::test(start_paused = true)]
async fn connections_beyond_the_cap_are_closed_and_a_freed_slot_is_reused() {
    let mut options = Options::default();
    options.config.max_connections = 2;
    let server = start(options).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    // Both are served (one request each, kept alive).
    for stream in [&mut first, &mut second] {
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // A third is closed at once, with nothing written.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let _ = third
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    assert!(
        read_until_closed(&mut third, Duration::from_secs(1))
            .await
            .is_empty()
    );
    // Closing one frees its slot (the server sees the close and ends the connection).
    drop(first);
    let mut served = false;
    for _ in 0..100 {
        let mut next = TcpStream::connect(server.addr).await.unwrap();
        let _ = next
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await;
        let answer = read_until_closed(&mut next, Duration::from_secs(1)).await;
        if String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        // The slot is returned when the server's connection task ends: let it run.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(served, "the freed slot was never reused");
    drop(second);
    server.stop().await;
}

fn bearer_options() -> Options {
    Options::default().bearer_tokens(&[("good-token", "urn:asap:agent:client")])
}

#[tokio::test]
async fn a_wrong_token_gets_its_answer_without_the_large_body_being_read() {
    let server = start(bearer_options()).await;
    // 1 MiB declared, under max_request_size, over the unauthenticated limit (64 KiB).
    let big = request_bytes(&echo_request(json!({"blob": "y".repeat(1024 * 1024)})));
    let split = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, _body) = big.split_at(split);
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    // Only the head is sent: the answer must not wait for the body.
    let head = String::from_utf8_lossy(head).replace(
        "Content-Type",
        "Authorization: Bearer wrong\r\nContent-Type",
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), client.read(&mut buf)).await;
    let n = read.expect("no answer until the body arrives").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let json_start = text.find("\r\n\r\n").unwrap() + 4;
    let answer: Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request", "data": {"error": "Invalid authentication token", "status_code": 401}}, "id": null})
    );
    // Small bodies keep the reference's order: a parse error comes before the token.
    let reply = post_raw(&server.base, b"{nope".to_vec(), &[]).await;
    assert_eq!(reply.code(), -32700);
    // A good token may send the large body.
    let reply = post_raw(
        &server.base,
        big[split..].to_vec(),
        &[
            ("authorization", "Bearer good-token"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(
        reply.json()["result"]["envelope"]["payload_type"],
        "task.response"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_streamed_body_without_a_token_is_read_only_up_to_the_unauthenticated_limit() {
    let mut options = bearer_options();
    options.config.unauthenticated_body_limit = 1000;
    let server = start(options).await;
    let body = serde_json::to_vec(&echo_request(json!({"blob": "z".repeat(5000)}))).unwrap();
    // No Content-Length: chunked, so only reading reveals the size.
    let mut request =
        b"POST /asap HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(500) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(&request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = client.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    let json_start = text.find("\r\n\r\n").unwrap() + 4;
    let answer: Value = serde_json::from_str(&text[json_start..]).unwrap();
    assert_eq!(answer["error"]["data"]["error"], "Authentication required");
    assert_eq!(answer["id"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn request_bytes_in_memory_are_bounded_across_requests() {
    let mut options = Options::default();
    options.config.max_buffered_bytes = 2000;
    let server = start(options).await;
    let big = serde_json::to_vec(&echo_request(json!({"blob": "q".repeat(3000)}))).unwrap();
    let reply = post_raw(&server.base, big, &[]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.json(),
        json!({"detail": "Server busy: request bodies in memory would exceed 2000 bytes"})
    );
    // What a request held is given back: small requests keep working.
    for _ in 0..3 {
        let small = serde_json::to_vec(&echo_request(json!({"n": 1}))).unwrap();
        assert_eq!(post_raw(&server.base, small, &[]).await.status, 200);
    }
    server.stop().await;
}

#[tokio::test]
async fn an_answer_given_before_the_body_was_read_says_the_connection_closes() {
    let server = start(Options::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    // Declared larger than max_request_size: 413 at once, the body never read.
    client
        .write_all(
            b"POST /asap HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20000000\r\n\r\n{\"partial\"",
        )
        .await
        .unwrap();
    let answer = read_until_closed(&mut client, Duration::from_secs(30)).await;
    let text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    // A request whose body was read keeps its connection.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(&request_bytes(&echo_request(json!({"n": 1}))))
        .await
        .unwrap();
    let mut buf = vec![0u8; 8192];
    let n = client.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("connection: close"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn absurd_connection_limits_are_clamped_not_a_panic() {
    let mut options = Options::default();
    options.config.max_connections = usize::MAX;
    let server = start(options).await;
    let reply = post_raw(
        &server.base,
        serde_json::to_vec(&echo_request(json!({"n": 1}))).unwrap(),
        &[],
    )
    .await;
    assert_eq!(reply.status, 200);
    server.stop().await;
}
