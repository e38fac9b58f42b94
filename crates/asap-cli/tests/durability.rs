//! The SQLite default commits the writes of concurrent requests together; an answer is
//! sent only after the transaction holding its writes committed. So every answered
//! `task.request` survives the process being killed (SIGKILL, no shutdown at all).

mod support;

use std::sync::Arc;

use asap_protocol::store::{SnapshotStore, SqliteStore, Store, TaskStore};
use asap_test_support::rpc;
use serde_json::{Value, json};

const REQUESTS: usize = 400;
const CLIENTS: usize = 16;

fn request(n: usize) -> Value {
    let envelope = rpc::echo_request("urn:asap:agent:durability-client", json!({"n": n}));
    rpc::send_request(envelope, &format!("req-{n}"))
}

#[test]
fn every_answered_task_survives_a_kill() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = support::asap_serve(&["--rate-limit", "off"], data.path());
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for n in (c..REQUESTS).step_by(CLIENTS) {
                    let reply: Value = http
                        .post(format!("{url}/asap"))
                        .json(&request(n))
                        .send()
                        .unwrap()
                        .json()
                        .unwrap();
                    let payload = &reply["result"]["envelope"]["payload"];
                    assert_eq!(payload["status"], "completed", "{reply}");
                    let task_id = payload["task_id"].as_str().unwrap().to_owned();
                    answered.lock().unwrap().push(task_id);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // No shutdown: the process is killed, as a crash would end it.
    server.0.kill().unwrap();
    server.0.wait().unwrap();

    let task_ids = answered.lock().unwrap().clone();
    assert_eq!(task_ids.len(), REQUESTS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(data.path().join("asap_state.db"))
            .await
            .unwrap();
        for task_id in &task_ids {
            let stored = store.get_task(task_id).await.unwrap();
            let stored = stored.unwrap_or_else(|| panic!("answered task {task_id} was lost"));
            assert_eq!(stored.task.status.as_str(), "completed");
            assert_eq!(store.list_versions(task_id).await.unwrap(), [1, 2]);
        }
        store.close().await;
    });
}
