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
    let task = store.get_task(&task_id).await.unwrap().unwrap();
    assert_eq!(task.status.as_str(), "completed");
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
    store.put_task(&running).await.unwrap();
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
