//! The refusal reasons that need a particular server to happen, each counted once in
//! `asap_refusals_total`: a failed TLS handshake (`serve_tls`), shared state that is
//! down (`dependency_unavailable`, on each path that needs it) and a WebSocket upgrade
//! during graceful shutdown (`shutting_down`).
//!
//! The tests run on the current-thread runtime: the server counts a refusal in the
//! same poll that ends the exchange the client observes, so the count is there once
//! the client has seen the refusal.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use asap_protocol::auth::{JwksCache, JwtPolicy, JwtValidator};
use asap_protocol::server::{
    Arrival, DEPENDENCY_UNAVAILABLE, HandlerRegistry, Metrics, OAuth2, RateLimitRule,
    RateLimitStore, RefusalReason, ReplayGuard, ReplayKind, RetransmissionCache, Server,
    ServerConfig, SharedStateBackend, SharedStateError, TlsConfig, default_skills,
};
use asap_test_support::exposition::value;
use asap_test_support::idp::MockIdp;
use asap_test_support::tls::Pki;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn refusals(metrics: &Metrics, reason: RefusalReason) -> f64 {
    let key = format!("asap_refusals_total{{reason=\"{}\"}}", reason.as_str());
    value(&metrics.render(), &key)
}

fn quiet_config() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.rate_limits.clear();
    config
}

/// A server (echo skill) recording into `metrics`, built for `listener`.
fn server(
    listener: &TcpListener,
    config: ServerConfig,
    metrics: &Metrics,
    shared_state: Option<Arc<dyn SharedStateBackend>>,
) -> Server {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut builder = Server::builder()
        .manifest(common::manifest(&base))
        .config(config)
        .registry(HandlerRegistry::agent(default_skills()))
        .metrics(metrics.clone());
    if let Some(shared_state) = shared_state {
        builder = builder.shared_state(shared_state);
    }
    builder.build().unwrap()
}

/// Serves a plain-HTTP server until the test ends; its address.
async fn serve(
    config: ServerConfig,
    metrics: &Metrics,
    shared_state: Option<Arc<dyn SharedStateBackend>>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server(&listener, config, metrics, shared_state);
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

#[tokio::test]
async fn a_failed_tls_handshake_is_counted() {
    let metrics = Metrics::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pki = Pki::new();
    let tls = TlsConfig::from_pem(pki.leaf_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let server = server(&listener, quiet_config(), &metrics, None);
    tokio::spawn(server.serve_tls(listener, tls, std::future::pending()));
    assert_eq!(refusals(&metrics, RefusalReason::TlsHandshake), 0.0);

    // Plain HTTP to the TLS port: not a TLS record, the server ends the connection.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/1.1"),
        "no HTTP answer over plain text: {answer:?}"
    );
    assert_eq!(refusals(&metrics, RefusalReason::TlsHandshake), 1.0);
}

/// Shared state that never answers: every check that needs it fails.
struct Down;

fn down() -> SharedStateError {
    SharedStateError::new("test", "down for the test")
}

#[async_trait::async_trait]
impl ReplayGuard for Down {
    async fn first_use(&self, _key: &str) -> Result<bool, SharedStateError> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl RateLimitStore for Down {
    async fn admit(
        &self,
        _client: IpAddr,
    ) -> Result<asap_protocol::server::Admission, SharedStateError> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl RetransmissionCache for Down {
    async fn arrive(&self, _envelope_id: &str) -> Result<Arrival, SharedStateError> {
        Err(down())
    }
}

#[async_trait::async_trait]
impl SharedStateBackend for Down {
    fn replay_guard(
        &self,
        _kind: ReplayKind,
        _ttl: Duration,
        _capacity: usize,
    ) -> Arc<dyn ReplayGuard> {
        Arc::new(Down)
    }

    fn rate_limiter(&self, rules: &[RateLimitRule]) -> Option<Arc<dyn RateLimitStore>> {
        (!rules.is_empty()).then(|| Arc::new(Down) as Arc<dyn RateLimitStore>)
    }

    fn retransmission_cache(
        &self,
        _window: Duration,
        _capacity: usize,
    ) -> Arc<dyn RetransmissionCache> {
        Arc::new(Down)
    }

    async fn ping(&self) -> Result<(), SharedStateError> {
        Err(down())
    }
}

/// A `task.request` to the echo skill, with a fresh id and a nonce.
fn request() -> Value {
    let mut request = common::echo_request(json!({"x": "hi"}));
    let envelope = &mut request["params"]["envelope"];
    envelope["id"] = json!(asap_protocol::model::generate_id());
    envelope["extensions"] = json!({"nonce": asap_protocol::model::generate_id()});
    request
}

/// Posts `request()` to `addr` and requires the dependency's 503.
async fn post_refused(addr: SocketAddr) {
    let reply = common::post(&format!("http://{addr}"), &request()).await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.json()["code"], DEPENDENCY_UNAVAILABLE);
}

/// A POST to a server with `config` whose shared state is down is refused, and counted
/// once as `dependency_unavailable`.
async fn a_post_counts_a_dependency_refusal(config: ServerConfig) {
    let metrics = Metrics::new();
    let addr = serve(config, &metrics, Some(Arc::new(Down))).await;
    assert_eq!(
        refusals(&metrics, RefusalReason::DependencyUnavailable),
        0.0
    );
    post_refused(addr).await;
    assert_eq!(
        refusals(&metrics, RefusalReason::DependencyUnavailable),
        1.0
    );
}

#[tokio::test]
async fn the_rate_limits_down_count_a_dependency_refusal() {
    let mut config = quiet_config();
    config.rate_limits = RateLimitRule::parse_list("100/minute").unwrap();
    a_post_counts_a_dependency_refusal(config).await;
}

#[tokio::test]
async fn the_replay_guard_down_counts_a_dependency_refusal() {
    let mut config = quiet_config();
    config.require_nonce = true;
    a_post_counts_a_dependency_refusal(config).await;
}

#[tokio::test]
async fn the_retransmission_cache_down_counts_a_dependency_refusal() {
    let metrics = Metrics::new();
    let addr = serve(quiet_config(), &metrics, Some(Arc::new(Down))).await;
    assert_eq!(
        refusals(&metrics, RefusalReason::DependencyUnavailable),
        0.0
    );
    let url = format!("ws://{addr}/asap/ws");
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut acked = request();
    acked["params"]["envelope"]["requires_ack"] = json!(true);
    let text = Message::Text(acked.to_string().into());
    socket.send(text).await.unwrap();
    // The `received` ack, then the refusal.
    let refusal = loop {
        let Message::Text(text) = socket.next().await.unwrap().unwrap() else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame.get("code").is_some() {
            break frame;
        }
    };
    assert_eq!(refusal["code"], DEPENDENCY_UNAVAILABLE);
    assert_eq!(
        refusals(&metrics, RefusalReason::DependencyUnavailable),
        1.0
    );
}

/// Reads an HTTP message's head from `stream`.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "a whole head");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads an HTTP response (with a `content-length`) from `stream`: its head.
async fn read_response(stream: &mut TcpStream) -> String {
    let head = read_head(stream).await;
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_owned)
        })
        .expect("a content-length")
        .parse::<usize>()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head
}

/// A WebSocket upgrade held in the OAuth2 check (its first JWKS fetch, which the
/// test answers) while graceful shutdown begins reaches the upgrade handler during
/// shutdown: refused `503`, counted as `shutting_down`.
#[tokio::test]
async fn an_upgrade_during_shutdown_is_counted() {
    let idp = MockIdp::start();
    let token = idp.issue("asap-client", "asap:execute");
    let jwks = reqwest::get(idp.jwks_uri())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The JWKS endpoint the server asks: this test, answering when it chooses.
    let keys = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache = JwksCache::new(format!("http://{}/jwks", keys.local_addr().unwrap())).unwrap();
    let validator = JwtValidator::new(Arc::new(cache), common::AGENT, JwtPolicy::default());

    let metrics = Metrics::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let server = Server::builder()
        .manifest(common::manifest(&base))
        .config(quiet_config())
        .oauth2(OAuth2::new(validator))
        .metrics(metrics.clone())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    assert_eq!(refusals(&metrics, RefusalReason::ShuttingDown), 0.0);

    // A keep-alive connection, closed once graceful shutdown has begun.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut upgrade = format!("ws://{addr}/asap/ws")
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {token}").parse().unwrap();
    upgrade.headers_mut().insert("authorization", bearer);
    let upgrading = tokio::spawn(tokio_tungstenite::connect_async(upgrade));
    // The upgrade is in the OAuth2 check, fetching the keys.
    let (mut fetch, _) = keys.accept().await.unwrap();
    stop.send(()).unwrap();
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "closed by the shutdown");

    read_head(&mut fetch).await;
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
        jwks.len()
    );
    fetch.write_all(answer.as_bytes()).await.unwrap();
    match upgrading.await.unwrap() {
        Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("the upgrade must be refused: {other:?}"),
    }
    assert_eq!(refusals(&metrics, RefusalReason::ShuttingDown), 1.0);
    serving.await.unwrap().unwrap();
}
