//! The built-in agent: task lifecycle, snapshots, cancellation, state queries and
//! restore, messages; and state that survives a restart with SQLite.

mod common;

use std::sync::Arc;

use asap_protocol::server::{HandlerRegistry, default_skills};
use asap_protocol::store::{SqliteStore, Store};
use common::{Options, envelope, post, start};
use serde_json::{Value, json};

fn send(payload_type: &str, payload: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope(payload_type, payload)}, "id": "req-1"})
}

fn agent(store: Arc<dyn Store>) -> Options {
    Options {
        registry: Some(HandlerRegistry::agent(default_skills())),
        store,
        ..Options::default()
    }
}

async fn run_echo(base: &str) -> String {
    let reply = post(
        base,
        &send(
            "task.request",
            json!({"conversation_id": "c1", "skill_id": "echo", "input": {"n": 1}}),
        ),
    )
    .await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(env["payload"]["status"], "completed", "{}", reply.text);
    assert_eq!(env["payload"]["result"], json!({"echoed": {"n": 1}}));
    env["payload"]["task_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn task_lifecycle_snapshots_and_cancellation() {
    let store: Arc<dyn Store> = Arc::new(asap_protocol::store::MemoryStore::new());
    let server = start(agent(store.clone())).await;
    let task_id = run_echo(&server.base).await;
    let stored = store.get_task(&task_id).await.unwrap().unwrap();
    assert_eq!(stored.task.status.as_str(), "completed");
    // The echo skill is immediate: its task is written once, with its outcome.
    assert_eq!(stored.revision, 1);
    assert_eq!(store.list_versions(&task_id).await.unwrap(), [1, 2]);

    // state.query: latest and a given version; unknown task is an error.
    let reply = post(
        &server.base,
        &send("state.query", json!({"task_id": task_id})),
    )
    .await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(env["payload_type"], "state.snapshot");
    assert_eq!(
        (
            env["payload"]["version"].clone(),
            env["payload"]["checkpoint"].clone()
        ),
        (json!(2), json!(true))
    );
    assert_eq!(
        env["payload"]["data"]["result"],
        json!({"echoed": {"n": 1}})
    );
    let reply = post(
        &server.base,
        &send("state_query", json!({"task_id": task_id, "version": 1})),
    )
    .await;
    assert_eq!(
        reply.json()["result"]["envelope"]["payload"]["data"]["status"],
        "submitted"
    );
    let reply = post(
        &server.base,
        &send("state.query", json!({"task_id": "task_nope"})),
    )
    .await;
    assert_eq!(reply.code(), -32602);
    assert_eq!(reply.json()["error"]["data"]["code"], "asap:task/not_found");

    // state.restore: the old snapshot becomes the newest version.
    let first_id = store.get(&task_id, Some(1)).await.unwrap().unwrap().id;
    let reply = post(
        &server.base,
        &send(
            "state.restore",
            json!({"task_id": task_id, "snapshot_id": first_id}),
        ),
    )
    .await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(env["payload_type"], "state_restore.ack");
    assert_eq!(
        (
            env["payload"]["ok"].clone(),
            env["payload"]["version"].clone()
        ),
        (json!(true), json!(1))
    );
    assert_eq!(store.list_versions(&task_id).await.unwrap(), [1, 2, 3]);
    let reply = post(
        &server.base,
        &send(
            "state.restore",
            json!({"task_id": task_id, "snapshot_id": "snap_none"}),
        ),
    )
    .await;
    assert_eq!(reply.code(), -32602);

    // task.cancel on a completed task: refused by the state machine.
    let reply = post(
        &server.base,
        &send("task.cancel", json!({"task_id": task_id})),
    )
    .await;
    assert_eq!(
        reply.json()["error"]["data"]["code"],
        "asap:task/already_completed"
    );
    let reply = post(
        &server.base,
        &send("task.cancel", json!({"task_id": "task_nope"})),
    )
    .await;
    assert_eq!(reply.json()["error"]["data"]["code"], "asap:task/not_found");
    // A task still running can be cancelled.
    let mut running = asap_protocol::model::Task::new("task_live", "c1");
    running
        .transition(asap_protocol::model::TaskStatus::Working)
        .unwrap();
    store
        .commit(asap_protocol::store::WriteBatch::new().create_task(running))
        .await
        .unwrap();
    let reply = post(
        &server.base,
        &send(
            "TaskCancel",
            json!({"task_id": "task_live", "reason": "stop"}),
        ),
    )
    .await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(
        (
            env["payload_type"].clone(),
            env["payload"]["status"].clone()
        ),
        (json!("task.response"), json!("cancelled"))
    );
    assert_eq!(
        store
            .get_task("task_live")
            .await
            .unwrap()
            .unwrap()
            .task
            .status
            .as_str(),
        "cancelled"
    );

    // message.send: acknowledged as processed.
    let msg = json!({"task_id": task_id, "message_id": "m1", "sender": "me", "role": "user", "parts": []});
    let reply = post(&server.base, &send("message.send", msg)).await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(env["payload_type"], "MessageAck");
    assert_eq!(env["payload"]["status"], "processed");

    // An unknown skill is a protocol error, not a crash.
    let reply = post(
        &server.base,
        &send(
            "task.request",
            json!({"conversation_id": "c", "skill_id": "nope", "input": {}}),
        ),
    )
    .await;
    assert_eq!(reply.code(), -32602);
    assert!(
        reply.json()["error"]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown skill 'nope'")
    );
    server.stop().await;
}

#[tokio::test]
async fn sqlite_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let server = start(agent(Arc::new(SqliteStore::open(&path).await.unwrap()))).await;
    let task_id = run_echo(&server.base).await;
    server.stop().await;

    let server = start(agent(Arc::new(SqliteStore::open(&path).await.unwrap()))).await;
    let reply = post(
        &server.base,
        &send("state.query", json!({"task_id": task_id})),
    )
    .await;
    let env = reply.json()["result"]["envelope"].clone();
    assert_eq!(env["payload"]["task_id"], json!(task_id), "{}", reply.text);
    assert_eq!(env["payload"]["version"], 2);
    server.stop().await;
}

/// A store that holds the first task read back until the test lets it go: the read
/// returns what was stored before the pause, so a write made during the pause is one
/// the reader has not seen.
struct PausingStore {
    inner: asap_protocol::store::MemoryStore,
    paused: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<String>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

#[async_trait::async_trait]
impl asap_protocol::store::TaskStore for PausingStore {
    async fn get_task(
        &self,
        task_id: &str,
    ) -> Result<Option<asap_protocol::store::StoredTask>, asap_protocol::store::StoreError> {
        let read = self.inner.get_task(task_id).await?;
        let pause = self.paused.lock().unwrap().take();
        if let Some((reached, resume)) = pause {
            reached.send(task_id.to_owned()).unwrap();
            resume.await.unwrap();
        }
        Ok(read)
    }
}

#[async_trait::async_trait]
impl asap_protocol::store::SnapshotStore for PausingStore {
    async fn save(
        &self,
        snapshot: &asap_protocol::model::StateSnapshot,
    ) -> Result<(), asap_protocol::store::StoreError> {
        self.inner.save(snapshot).await
    }
    async fn get(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<Option<asap_protocol::model::StateSnapshot>, asap_protocol::store::StoreError> {
        self.inner.get(task_id, version).await
    }
    async fn list_versions(
        &self,
        task_id: &str,
    ) -> Result<Vec<i64>, asap_protocol::store::StoreError> {
        self.inner.list_versions(task_id).await
    }
    async fn delete(
        &self,
        task_id: &str,
        version: Option<i64>,
    ) -> Result<bool, asap_protocol::store::StoreError> {
        self.inner.delete(task_id, version).await
    }
}

#[async_trait::async_trait]
impl asap_protocol::store::MeteringStore for PausingStore {
    async fn record(
        &self,
        event: &asap_protocol::model::UsageEvent,
    ) -> Result<(), asap_protocol::store::StoreError> {
        self.inner.record(event).await
    }
    async fn query(
        &self,
        agent_id: &str,
        start: Option<asap_protocol::model::Timestamp>,
        end: Option<asap_protocol::model::Timestamp>,
    ) -> Result<Vec<asap_protocol::model::UsageEvent>, asap_protocol::store::StoreError> {
        self.inner.query(agent_id, start, end).await
    }
}

#[async_trait::async_trait]
impl Store for PausingStore {
    async fn commit(
        &self,
        batch: asap_protocol::store::WriteBatch,
    ) -> Result<(), asap_protocol::store::StoreError> {
        self.inner.commit(batch).await
    }
    async fn ping(&self) -> Result<(), asap_protocol::store::StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) {}
}

/// Echo, but not declared immediate: its task is stored as working before it runs and
/// updated after, as any skill doing I/O.
struct StoredEcho;

#[async_trait::async_trait]
impl asap_protocol::server::Skill for StoredEcho {
    async fn run(
        &self,
        task: &asap_protocol::model::Task,
        request: &asap_protocol::model::TaskRequest,
        ctx: &asap_protocol::server::HandlerContext,
    ) -> Result<asap_protocol::json::JsonObject, asap_protocol::server::HandlerError> {
        asap_protocol::server::EchoSkill
            .run(task, request, ctx)
            .await
    }
}

/// A `task.cancel` that lands after the task handler read the task back from its skill
/// and before it wrote the outcome: the cancellation stands (the handler's write
/// conflicts, it reads again and records what holds). Before conditional writes the
/// handler's `completed` silently replaced `cancelled`.
#[tokio::test]
async fn a_cancel_between_the_handlers_read_and_write_is_not_overwritten() {
    let (reached_tx, reached) = tokio::sync::oneshot::channel();
    let (resume, resume_rx) = tokio::sync::oneshot::channel();
    let store = Arc::new(PausingStore {
        inner: asap_protocol::store::MemoryStore::new(),
        paused: std::sync::Mutex::new(Some((reached_tx, resume_rx))),
    });
    let mut skills = asap_protocol::server::Skills::new();
    skills.insert("echo".into(), Arc::new(StoredEcho));
    let server = start(Options {
        registry: Some(HandlerRegistry::agent(skills)),
        store: store.clone(),
        ..Options::default()
    })
    .await;
    let store: Arc<dyn Store> = store;
    let base = server.base.clone();
    let request = tokio::spawn(async move {
        post(
            &base,
            &send(
                "task.request",
                json!({"conversation_id": "c1", "skill_id": "echo", "input": {}}),
            ),
        )
        .await
    });
    // The skill has run; the handler has read the task (working) and waits.
    let task_id = tokio::time::timeout(std::time::Duration::from_secs(30), reached)
        .await
        .expect("the handler reads the task back after its skill")
        .unwrap();
    let cancel = post(
        &server.base,
        &send("task.cancel", json!({"task_id": task_id})),
    )
    .await;
    assert_eq!(
        cancel.json()["result"]["envelope"]["payload"]["status"],
        "cancelled",
        "{}",
        cancel.text
    );
    resume.send(()).unwrap();
    let reply = request.await.unwrap();
    let payload = reply.json()["result"]["envelope"]["payload"].clone();
    assert_eq!(payload["status"], "cancelled", "{}", reply.text);
    let stored = store.get_task(&task_id).await.unwrap().unwrap();
    assert_eq!(stored.task.status.as_str(), "cancelled");
    // Created, then cancelled; the handler, finding it cancelled, wrote only its snapshot.
    assert_eq!(stored.revision, 2);
    let outcome = store.get(&task_id, Some(2)).await.unwrap().unwrap();
    assert_eq!(outcome.data["status"], "cancelled");
    // Only committed transitions are counted: the handler's conflicting write to
    // `completed` is not (it was, once per attempt, when counted inside the retry).
    let metrics = common::get(&server.base, "/asap/metrics", &[]).await.text;
    let count = |from: &str, to: &str| {
        let series =
            format!("asap_state_transitions_total{{from_status=\"{from}\",to_status=\"{to}\"}} ");
        let line = metrics.lines().find(|l| l.starts_with(&series));
        line.unwrap_or_else(|| panic!("no {series} in\n{metrics}"))[series.len()..]
            .trim()
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(count("submitted", "working"), 1.0);
    assert_eq!(count("working", "cancelled"), 1.0);
    assert_eq!(count("working", "completed"), 0.0);
}
