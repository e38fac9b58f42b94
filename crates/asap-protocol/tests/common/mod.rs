//! A real server on an ephemeral loopback port, for integration tests.

#![allow(dead_code)]

pub mod scripted;

use std::net::SocketAddr;
use std::sync::Arc;

use asap_protocol::model::{Manifest, Skill};
use asap_protocol::server::{HandlerRegistry, Server, ServerConfig, TokenValidator};
use asap_protocol::store::{MemoryStore, Store};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const AGENT: &str = "urn:asap:agent:test-server";

pub fn manifest(base: &str) -> Manifest {
    let mut m = Manifest::new(
        AGENT,
        "Test",
        "1.0.0",
        "integration tests",
        format!("{base}/asap"),
    );
    m.capabilities
        .skills
        .push(Skill::new("echo", "Echo back the input"));
    m
}

pub struct Running {
    pub base: String,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), asap_protocol::server::ServerError>>,
}

impl Running {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Changes the generated manifest before the server starts.
pub type ManifestEdit = Box<dyn FnOnce(&mut Manifest) + Send>;

pub struct Options {
    pub config: ServerConfig,
    pub registry: Option<HandlerRegistry>,
    pub store: Arc<dyn Store>,
    pub validator: Option<Arc<dyn TokenValidator>>,
    pub edit_manifest: Option<ManifestEdit>,
    pub oauth2: Option<asap_protocol::server::OAuth2>,
    pub shared_state: Option<Arc<dyn asap_protocol::server::SharedStateBackend>>,
}

impl Default for Options {
    fn default() -> Self {
        let mut config = ServerConfig::default();
        config.rate_limits.clear();
        Self {
            config,
            registry: None,
            store: Arc::new(MemoryStore::new()),
            validator: None,
            edit_manifest: None,
            oauth2: None,
            shared_state: None,
        }
    }
}

impl Options {
    /// Manifest bearer authentication on: the manifest declares `bearer`, and each
    /// `(token, identity)` pair is accepted.
    pub fn bearer_tokens(mut self, pairs: &[(&str, &str)]) -> Self {
        let tokens = asap_protocol::server::StaticTokens::new(pairs.iter().copied());
        self.validator = Some(Arc::new(tokens));
        self.edit_manifest = Some(Box::new(|m| {
            m.auth = Some(asap_protocol::model::AuthScheme {
                schemes: vec!["bearer".into()],
                oauth2: None,
            });
        }));
        self
    }
}

pub async fn start(options: Options) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let mut m = manifest(&base);
    if let Some(edit) = options.edit_manifest {
        edit(&mut m);
    }
    let mut builder = Server::builder()
        .manifest(m)
        .config(options.config)
        .store(options.store);
    if let Some(registry) = options.registry {
        builder = builder.registry(registry);
    }
    if let Some(validator) = options.validator {
        builder = builder.token_validator(validator);
    }
    if let Some(oauth2) = options.oauth2 {
        builder = builder.oauth2(oauth2);
    }
    if let Some(shared_state) = options.shared_state {
        builder = builder.shared_state(shared_state);
    }
    let server = builder.build().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    Running {
        base,
        addr,
        stop: Some(tx),
        task,
    }
}

pub fn envelope(payload_type: &str, payload: Value) -> Value {
    json!({
        "asap_version": "0.1",
        "sender": "urn:asap:agent:client",
        "recipient": AGENT,
        "payload_type": payload_type,
        "payload": payload,
    })
}

pub fn echo_request(input: Value) -> Value {
    json!({
        "jsonrpc": "2.0", "method": "asap.send", "id": "req-1",
        "params": {"envelope": envelope("task.request", json!({"conversation_id": "c1", "skill_id": "echo", "input": input}))}
    })
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn code(&self) -> i64 {
        self.json()["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
    }
}

pub async fn post_raw(base: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.post(format!("{base}/asap")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

pub async fn post(base: &str, body: &Value) -> Reply {
    post_raw(base, serde_json::to_vec(body).unwrap(), &[]).await
}

pub async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

/// A `task.request` handler that answers (a completed `task.response`) only when the
/// test lets it: the test waits until a request is inside ([`Gate::entered`]), does what
/// it must while the request is in flight, then lets it answer ([`Gate::release`]).
/// Never released, it is a handler that never answers.
#[derive(Clone)]
pub struct Gate {
    entered: Arc<tokio::sync::Semaphore>,
    released: Arc<tokio::sync::Semaphore>,
    finished: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            entered: Arc::new(tokio::sync::Semaphore::new(0)),
            released: Arc::new(tokio::sync::Semaphore::new(0)),
            finished: Arc::default(),
        }
    }

    /// A registry with this gate as its `task.request` handler.
    pub fn registry(&self) -> HandlerRegistry {
        let mut registry = HandlerRegistry::new();
        registry.register("task.request", Arc::new(self.clone()));
        registry
    }

    /// Waits until one more request has entered the handler.
    pub async fn entered(&self) {
        self.entered.acquire().await.unwrap().forget();
    }

    /// Lets `n` requests (waiting now or arriving later) answer.
    pub fn release(&self, n: usize) {
        self.released.add_permits(n);
    }

    /// What the handler does before it answers: tells the test it entered, waits to be
    /// released, counts itself finished. For handlers that hold in the gate and then
    /// answer on their own.
    pub async fn pass(&self) {
        self.entered.add_permits(1);
        self.released.acquire().await.unwrap().forget();
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests that have answered.
    pub fn finished(&self) -> usize {
        self.finished.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl asap_protocol::server::Handler for Gate {
    async fn handle(
        &self,
        envelope: asap_protocol::model::Envelope,
        _ctx: &asap_protocol::server::HandlerContext,
    ) -> Result<asap_protocol::model::Envelope, asap_protocol::server::HandlerError> {
        self.pass().await;
        Ok(asap_protocol::model::Envelope::response_to(
            &envelope,
            asap_protocol::model::TaskResponse::new(
                "task-1",
                asap_protocol::model::TaskStatus::Completed,
            ),
        ))
    }
}
