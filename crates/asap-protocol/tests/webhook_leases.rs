//! Several workers on one webhook queue (SQLite and PostgreSQL): the storage contract of
//! leases (claims are disjoint, outcomes need the lease), two workers delivering every
//! delivery, a slow delivery renewed rather than taken from its live worker, a dead
//! worker's delivery sent again with the same delivery id once its lease expired, and
//! a SQLite database from before the queue had its own migrations.

mod webhook_support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use asap_protocol::model::generate_id;
use asap_protocol::store::BoxError;
use asap_protocol::webhook::{
    DeadLetter, DeliveryStore, StoredDelivery, Webhook, WebhookConfig, WebhookQueue,
};
use serde_json::json;
use tokio::sync::mpsc;
use webhook_support::{Backend, Database, Names, Receiver, config, header, open, start_queue};

const LONG: Duration = Duration::from_secs(60);

fn delivery(n: usize) -> StoredDelivery {
    StoredDelivery {
        id: format!("d{n}-{}", generate_id()),
        url: "http://receiver.test/".into(),
        body: format!("{{\"n\":{n}}}").into_bytes(),
        headers: vec![("X-N".into(), n.to_string())],
        attempts: 0,
    }
}

fn ids(deliveries: &[StoredDelivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

async fn the_store_keeps_leases_apart(backend: Backend) {
    let db = Database::start(backend);
    let store = db.deliveries().await;
    let queued: Vec<StoredDelivery> = (0..3).map(delivery).collect();
    for d in &queued {
        store.insert(d).await.unwrap();
    }
    assert_eq!(store.next_due().await.unwrap(), Some(Duration::ZERO));
    // Oldest due first, each to one worker.
    let a = store.claim("a", 2, LONG).await.unwrap();
    assert_eq!(a, queued[..2].to_vec(), "as stored, oldest first");
    let b = store.claim("b", 10, LONG).await.unwrap();
    assert_eq!(ids(&b), ids(&queued[2..]));
    assert!(store.claim("c", 10, LONG).await.unwrap().is_empty());
    assert_eq!(store.pending().await.unwrap(), 3);
    let due = store.next_due().await.unwrap().unwrap();
    assert!(due > LONG - Duration::from_secs(10), "{due:?}");
    // Renewals and outcomes need the lease.
    let mut renewed = store.renew("a", &ids(&queued), LONG).await.unwrap();
    renewed.sort();
    let mut expected = ids(&queued[..2]);
    expected.sort();
    assert_eq!(renewed, expected);
    assert!(!store.complete("b", &queued[0].id).await.unwrap());
    assert!(
        !store
            .reschedule("b", &queued[0].id, 1, Duration::ZERO, Some("x"))
            .await
            .unwrap()
    );
    assert!(!store.bury("b", &queued[0].id, 1, "x").await.unwrap());
    assert!(store.complete("a", &queued[0].id).await.unwrap());
    assert!(
        store
            .reschedule("a", &queued[1].id, 1, Duration::ZERO, Some("HTTP 503"))
            .await
            .unwrap()
    );
    // Released: due at once, attempts recorded.
    let again = store.claim("c", 10, LONG).await.unwrap();
    assert_eq!(ids(&again), [queued[1].id.as_str()]);
    assert_eq!(again[0].attempts, 1);
    // An expired lease is claimable; its old holder can no longer record anything.
    let late = delivery(9);
    store.insert(&late).await.unwrap();
    assert_eq!(
        ids(&store.claim("a", 1, Duration::ZERO).await.unwrap()),
        [late.id.as_str()]
    );
    assert_eq!(
        ids(&store.claim("b", 1, LONG).await.unwrap()),
        [late.id.as_str()]
    );
    assert!(!store.complete("a", &late.id).await.unwrap());
    assert!(
        store
            .renew("a", std::slice::from_ref(&late.id), LONG)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.bury("b", &late.id, 6, "HTTP 410").await.unwrap());
    let letters = store.dead_letters().await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].id.as_str(),
            letters[0].attempts,
            letters[0].last_error.as_str()
        ),
        (late.id.as_str(), 6, "HTTP 410")
    );
    assert_eq!(letters[0].body, "{\"n\":9}");
    assert!(store.replay(&late.id).await.unwrap());
    assert!(!store.replay(&late.id).await.unwrap());
    assert!(store.dead_letters().await.unwrap().is_empty());
    let replayed = store.claim("d", 10, LONG).await.unwrap();
    assert_eq!(ids(&replayed), [late.id.as_str()]);
    assert_eq!(
        (replayed[0].attempts, replayed[0].headers.clone()),
        (0, late.headers)
    );
}

async fn concurrent_claims_take_disjoint_deliveries(backend: Backend) {
    let db = Database::start(backend);
    let total = 300;
    let store = db.deliveries().await;
    for n in 0..total {
        store.insert(&delivery(n)).await.unwrap();
    }
    // Four workers, each on connections of its own, claiming small batches at once.
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = db.deliveries().await;
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim(&format!("w{w}"), 7, LONG).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(ids(&batch));
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), total, "every delivery claimed");
    assert_eq!(distinct.len(), total, "none claimed twice");
}

async fn two_workers_deliver_every_delivery(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    let (first, _a) = start_queue(&db, config()).await;
    let (second, _b) = start_queue(&db, config()).await;
    let mut sent = BTreeSet::new();
    for n in 0..200 {
        let queue = if n % 2 == 0 { &first } else { &second };
        let webhook = Webhook::signed(receiver.url("both"), json!({"n": n}), "s");
        sent.insert(queue.enqueue(webhook).await.unwrap());
    }
    assert!(first.drained(Duration::from_secs(30)).await.unwrap());
    let seen = receiver.seen();
    let delivered: BTreeSet<String> = seen
        .iter()
        .map(|r| header(r, "x-asap-delivery-id"))
        .collect();
    assert_eq!(delivered, sent, "each delivered");
    assert_eq!(seen.len(), sent.len(), "none twice: no worker stalled");
    assert!(first.dead_letters().await.unwrap().is_empty());
}

/// A store that reports each claim: when it began and how many deliveries it took.
struct Observed {
    inner: Arc<dyn DeliveryStore>,
    claims: mpsc::UnboundedSender<(Instant, usize)>,
}

#[async_trait::async_trait]
impl DeliveryStore for Observed {
    async fn insert(&self, delivery: &StoredDelivery) -> Result<(), BoxError> {
        self.inner.insert(delivery).await
    }
    async fn claim(
        &self,
        worker: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<StoredDelivery>, BoxError> {
        let began = Instant::now();
        let taken = self.inner.claim(worker, limit, lease).await?;
        let _ = self.claims.send((began, taken.len()));
        Ok(taken)
    }
    async fn renew(
        &self,
        worker: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, BoxError> {
        self.inner.renew(worker, ids, lease).await
    }
    async fn complete(&self, worker: &str, id: &str) -> Result<bool, BoxError> {
        self.inner.complete(worker, id).await
    }
    async fn reschedule(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        after: Duration,
        error: Option<&str>,
    ) -> Result<bool, BoxError> {
        self.inner
            .reschedule(worker, id, attempts, after, error)
            .await
    }
    async fn bury(
        &self,
        worker: &str,
        id: &str,
        attempts: u32,
        error: &str,
    ) -> Result<bool, BoxError> {
        self.inner.bury(worker, id, attempts, error).await
    }
    async fn pending(&self) -> Result<u64, BoxError> {
        self.inner.pending().await
    }
    async fn next_due(&self) -> Result<Option<Duration>, BoxError> {
        self.inner.next_due().await
    }
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BoxError> {
        self.inner.dead_letters().await
    }
    async fn replay(&self, id: &str) -> Result<bool, BoxError> {
        self.inner.replay(id).await
    }
}

/// Attempts that outlast the lease: the lease must be renewed to hold.
fn short_lease(lease: Duration) -> WebhookConfig {
    let mut value = config();
    value.lease = lease;
    value.timeout = Duration::from_secs(30);
    value
}

async fn a_slow_delivery_is_renewed_not_taken_from_its_live_worker(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    let (gate, mut arrivals) = receiver.hold();
    let lease = Duration::from_millis(1500);
    let (holder, _a) = start_queue(&db, short_lease(lease)).await;
    let id = holder
        .enqueue(Webhook::signed(receiver.url("slow"), json!({}), "s"))
        .await
        .unwrap();
    assert_eq!(arrivals.recv().await.unwrap(), id);
    // The holder claimed before the request arrived: unrenewed, its lease would have
    // ended by `arrived + lease`.
    let arrived = Instant::now();
    let (claims, mut claimed) = mpsc::unbounded_channel();
    let other = WebhookQueue::with_resolver(
        Arc::new(Observed {
            inner: db.deliveries().await,
            claims,
        }),
        short_lease(lease),
        Names::new(),
    )
    .unwrap();
    let running = other.clone();
    let _b = tokio::spawn(async move { running.run(std::future::pending()).await });
    let mut looked = 0;
    loop {
        let (began, taken) = claimed.recv().await.unwrap();
        assert_eq!(
            taken, 0,
            "the second worker took a delivery the first one holds"
        );
        if began > arrived + lease + Duration::from_millis(200) {
            looked += 1;
            if looked == 3 {
                break;
            }
        }
    }
    open(&gate);
    assert!(holder.drained(Duration::from_secs(10)).await.unwrap());
    assert_eq!(receiver.seen().len(), 1);
    assert!(arrivals.try_recv().is_err(), "sent once");
}

async fn a_dead_workers_delivery_is_sent_again_after_its_lease(backend: Backend) {
    let db = Database::start(backend);
    let receiver = Receiver::start().await;
    let (gate, mut arrivals) = receiver.hold();
    let lease = Duration::from_secs(1);
    let (dying, run) = start_queue(&db, short_lease(lease)).await;
    let id = dying
        .enqueue(Webhook::signed(receiver.url("dies"), json!({"n": 1}), "s"))
        .await
        .unwrap();
    assert_eq!(arrivals.recv().await.unwrap(), id);
    let (survivor, _b) = start_queue(&db, short_lease(lease)).await;
    // The first worker dies mid-attempt: its attempt ends and its lease is not renewed.
    run.abort();
    assert!(run.await.unwrap_err().is_cancelled());
    drop(dying);
    let again = tokio::time::timeout(Duration::from_secs(20), arrivals.recv())
        .await
        .expect("sent again once the lease expired")
        .unwrap();
    assert_eq!(again, id, "the same X-ASAP-Delivery-Id");
    open(&gate);
    assert!(survivor.drained(Duration::from_secs(10)).await.unwrap());
    assert!(arrivals.try_recv().is_err(), "twice in all");
    let seen = receiver.seen();
    assert!(
        seen.iter().all(|r| header(r, "x-asap-delivery-id") == id),
        "one delivery"
    );
    assert!(survivor.dead_letters().await.unwrap().is_empty());
}

on_every_backend!(
    the_store_keeps_leases_apart,
    concurrent_claims_take_disjoint_deliveries,
    two_workers_deliver_every_delivery,
    a_slow_delivery_is_renewed_not_taken_from_its_live_worker,
    a_dead_workers_delivery_is_sent_again_after_its_lease,
);

/// The webhook tables as the state store's migration 2 created them, before the queue
/// had migrations of its own.
const OLD_WEBHOOK_TABLES: &str = "
CREATE TABLE IF NOT EXISTS asap_webhook_deliveries (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS asap_webhook_deliveries_due
    ON asap_webhook_deliveries (leased, next_attempt_at);
CREATE TABLE IF NOT EXISTS asap_webhook_dead_letters (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    died_at REAL NOT NULL
);
";

#[tokio::test]
async fn a_sqlite_database_from_before_the_queues_own_migrations_opens_and_delivers() {
    use asap_protocol::store::{SqliteStore, Store};
    use asap_protocol::webhook::SqliteDeliveries;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
    use sqlx::{AssertSqlSafe, SqlSafeStr};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("asap_state.db");
    let old = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    // The store's migrations as they were: today's 1 and 3, and the webhook tables as 2.
    let mut migrations: Vec<Migration> = sqlx::migrate!("./migrations/sqlite")
        .iter()
        .cloned()
        .collect();
    migrations.push(Migration::new(
        2,
        "webhooks".into(),
        MigrationType::Simple,
        AssertSqlSafe(OLD_WEBHOOK_TABLES).into_sql_str(),
        false,
    ));
    migrations.sort_by_key(|m| m.version);
    Migrator::with_migrations(migrations)
        .run(&old)
        .await
        .unwrap();
    let receiver = Receiver::start().await;
    // A delivery the old process left in flight (leased), one waiting, one dead letter.
    for (id, leased) in [("old-in-flight", 1), ("old-waiting", 0)] {
        let headers = serde_json::to_string(&[("X-ASAP-Delivery-Id", id)]).unwrap();
        sqlx::query("INSERT INTO asap_webhook_deliveries (id, url, body, headers, attempts, next_attempt_at, created_at, leased) VALUES (?, ?, ?, ?, 1, 0, 0, ?)")
            .bind(id)
            .bind(receiver.url("old"))
            .bind(b"{}".as_slice())
            .bind(headers)
            .bind(leased)
            .execute(&old)
            .await
            .unwrap();
    }
    let headers = serde_json::to_string(&[("X-ASAP-Delivery-Id", "old-dead")]).unwrap();
    sqlx::query("INSERT INTO asap_webhook_dead_letters (id, url, body, headers, attempts, last_error, created_at, died_at) VALUES ('old-dead', ?, X'7B7D', ?, 6, 'HTTP 503', 0, 0)")
        .bind(receiver.url("old"))
        .bind(headers)
        .execute(&old)
        .await
        .unwrap();
    old.close().await;

    for _ in 0..2 {
        // Opened twice: the second time every migration is in place already.
        let store = SqliteStore::open(&path).await.unwrap();
        SqliteDeliveries::open(&store).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let queue = WebhookQueue::with_resolver(
        Arc::new(SqliteDeliveries::open(&store).await.unwrap()),
        config(),
        Names::new(),
    )
    .unwrap();
    assert_eq!(queue.pending().await.unwrap(), 2);
    assert_eq!(queue.dead_letters().await.unwrap()[0].id, "old-dead");
    let running = queue.clone();
    let _run = tokio::spawn(async move { running.run(std::future::pending()).await });
    queue.replay("old-dead").await.unwrap();
    assert!(queue.drained(Duration::from_secs(10)).await.unwrap());
    let delivered: BTreeSet<String> = receiver
        .seen()
        .iter()
        .map(|r| header(r, "x-asap-delivery-id"))
        .collect();
    assert_eq!(
        delivered,
        BTreeSet::from([
            "old-dead".into(),
            "old-in-flight".into(),
            "old-waiting".into()
        ])
    );
}
