//! What the webhook queue tests share: a local receiver that fails, waits or holds
//! requests on command, a resolver with test names, and the queue's database on each
//! backend (SQLite in a temporary file, PostgreSQL on a private server).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use asap_protocol::store::{SqliteStore, Store};
use asap_protocol::webhook::{
    DeliveryStore, Resolver, SqliteDeliveries, UrlPolicy, WebhookConfig, WebhookQueue,
};
use axum::http::{HeaderMap, StatusCode};
use tokio::sync::{Semaphore, mpsc};

/// Runs the async test `$name(backend)` once per backend, as `$name::sqlite` and (with
/// the `postgres` feature) `$name::postgres`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::webhook_support::Backend::Sqlite).await;
            }

            #[cfg(feature = "postgres")]
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::webhook_support::Backend::Postgres).await;
            }
        }
    )*};
}

/// What the receiver saw.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Default)]
pub struct ReceiverState {
    pub script: Mutex<VecDeque<(u16, Option<u64>)>>,
    pub seen: Mutex<Vec<Received>>,
    pub delay: Mutex<Duration>,
    pub active: AtomicUsize,
    pub most_active: AtomicUsize,
    /// When set, each request waits for a permit before it is answered.
    pub gate: Mutex<Option<Arc<Semaphore>>>,
    /// Told the delivery id of each request as it arrives.
    pub arrivals: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(ReceiverState::default());
        let shared = state.clone();
        let app = axum::Router::new().route(
            "/{*path}",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = shared.clone();
                async move {
                    if let Some(arrivals) = state.arrivals.lock().unwrap().as_ref() {
                        let id = headers
                            .get("x-asap-delivery-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        let _ = arrivals.send(id.to_owned());
                    }
                    let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
                    state.most_active.fetch_max(now, Ordering::SeqCst);
                    let gate = state.gate.lock().unwrap().clone();
                    if let Some(gate) = gate {
                        gate.acquire().await.unwrap().forget();
                    }
                    let delay = *state.delay.lock().unwrap();
                    tokio::time::sleep(delay).await;
                    state.seen.lock().unwrap().push(Received {
                        at: Instant::now(),
                        headers,
                        body: body.to_vec(),
                    });
                    state.active.fetch_sub(1, Ordering::SeqCst);
                    let (status, retry_after) = state
                        .script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((200, None));
                    let mut response = axum::response::Response::new(axum::body::Body::empty());
                    *response.status_mut() = StatusCode::from_u16(status).unwrap();
                    if let Some(seconds) = retry_after {
                        response.headers_mut().insert("retry-after", seconds.into());
                    }
                    response
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        // Through a name, so the queue's resolver (not the URL) picks the address.
        format!("http://receiver.test:{}/{path}", self.addr.port())
    }

    pub fn script(&self, steps: &[(u16, Option<u64>)]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(steps.iter().copied());
    }

    pub fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Holds every request until [`open`] lets it through; reports each arrival's
    /// delivery id.
    pub fn hold(&self) -> (Arc<Semaphore>, mpsc::UnboundedReceiver<String>) {
        let gate = Arc::new(Semaphore::new(0));
        *self.state.gate.lock().unwrap() = Some(gate.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        *self.state.arrivals.lock().unwrap() = Some(tx);
        (gate, rx)
    }
}

/// Lets every held request, and every later one, through.
pub fn open(gate: &Semaphore) {
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
}

/// `receiver.test` is loopback; `rebind.test` is public once, then loopback.
pub struct Names {
    pub rebind_calls: AtomicUsize,
}

impl Names {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            rebind_calls: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl Resolver for Names {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let ip = match host {
            "receiver.test" => "127.0.0.1",
            "rebind.test" if self.rebind_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                "93.184.216.34"
            }
            "rebind.test" => "127.0.0.1",
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "NXDOMAIN",
                ));
            }
        };
        Ok(vec![ip.parse().unwrap()])
    }
}

pub fn config() -> WebhookConfig {
    let mut value = WebhookConfig::default();
    value.policy = UrlPolicy::development(["127.0.0.1/32".parse().unwrap()]);
    value.backoff_base = Duration::from_millis(100);
    value.backoff_cap = Duration::from_millis(1600);
    value.jitter = 0.0;
    value.per_url_rate = 1000;
    value.poll_interval = Duration::from_millis(50);
    value.timeout = Duration::from_secs(2);
    value
}

pub fn header(r: &Received, name: &str) -> String {
    r.headers.get(name).unwrap().to_str().unwrap().to_owned()
}

/// Where a test's queue lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A database on a PostgreSQL server of the test's own.
    #[cfg(feature = "postgres")]
    Postgres,
}

/// The test's database; every [`open`](Self::open) is another agent's connection to it.
pub struct Database {
    backend: Backend,
    dir: tempfile::TempDir,
    #[cfg(feature = "postgres")]
    server: Option<(asap_test_support::postgres::Postgres, String)>,
}

impl Database {
    pub fn start(backend: Backend) -> Self {
        Self {
            backend,
            dir: tempfile::tempdir().unwrap(),
            #[cfg(feature = "postgres")]
            server: (backend == Backend::Postgres).then(|| {
                let pg = asap_test_support::postgres::Postgres::start();
                let url = pg.database("webhooks");
                (pg, url)
            }),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite file (of [`Backend::Sqlite`]).
    pub fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.path().join("asap_state.db")
    }

    /// A new agent's state store on the database.
    pub async fn state_store(&self) -> Arc<dyn Store> {
        match self.backend {
            Backend::Sqlite => Arc::new(SqliteStore::open(self.sqlite_path()).await.unwrap()),
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                use asap_protocol::store::{PostgresConfig, PostgresStore};
                let url = &self.server.as_ref().unwrap().1;
                Arc::new(
                    PostgresStore::connect(&PostgresConfig::new(url))
                        .await
                        .unwrap(),
                )
            }
        }
    }

    /// A new agent's webhook queue storage on the database (its own connections).
    pub async fn deliveries(&self) -> Arc<dyn DeliveryStore> {
        match self.backend {
            Backend::Sqlite => {
                let store = SqliteStore::open(self.sqlite_path()).await.unwrap();
                Arc::new(SqliteDeliveries::open(&store).await.unwrap())
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                use asap_protocol::store::{PostgresConfig, PostgresStore};
                use asap_protocol::webhook::PostgresDeliveries;
                let url = &self.server.as_ref().unwrap().1;
                let store = PostgresStore::connect(&PostgresConfig::new(url))
                    .await
                    .unwrap();
                Arc::new(PostgresDeliveries::open(&store).await.unwrap())
            }
        }
    }

    /// A queue (not running) on a new connection to the database.
    pub async fn queue(&self, config: WebhookConfig) -> WebhookQueue {
        self.queue_with(config, Names::new()).await
    }

    /// [`queue`](Self::queue) with another resolver.
    pub async fn queue_with(
        &self,
        config: WebhookConfig,
        resolver: Arc<dyn Resolver>,
    ) -> WebhookQueue {
        WebhookQueue::with_resolver(self.deliveries().await, config, resolver).unwrap()
    }
}

/// A queue on `db`, running until the returned task is aborted.
pub async fn start_queue(
    db: &Database,
    config: WebhookConfig,
) -> (WebhookQueue, tokio::task::JoinHandle<()>) {
    let queue = db.queue(config).await;
    let running = queue.clone();
    let task = tokio::spawn(async move { running.run(std::future::pending()).await.unwrap() });
    (queue, task)
}
