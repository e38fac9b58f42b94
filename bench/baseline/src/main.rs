//! Bare baseline for `bench/run.sh`: reads the JSON-RPC body, answers a response
//! envelope of the same shape as the echo agent's, with nothing else (no validation,
//! limits, metrics), over `POST /asap` and over WebSocket frames on `/asap/ws`.
//! Usage: `asap-bench-baseline PORT`.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::routing::{get, post};
use serde_json::{Value, json};

async fn asap(body: Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], answer(&body))
}

/// The same answer per text frame, one frame at a time per connection.
async fn ws(upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            if let Message::Text(text) = message {
                let reply = String::from_utf8(answer(text.as_bytes())).unwrap_or_default();
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    return;
                }
            }
        }
    })
}

fn answer(body: &[u8]) -> Vec<u8> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let envelope = &request["params"]["envelope"];
    let response = json!({
        "jsonrpc": "2.0",
        "result": {"envelope": {
            "id": "01BASELINE0000000000000000",
            "asap_version": envelope["asap_version"],
            "timestamp": "2026-01-01T00:00:00Z",
            "sender": envelope["recipient"],
            "recipient": envelope["sender"],
            "payload_type": "task.response",
            "payload": {"task_id": "task_baseline", "status": "completed",
                        "result": {"echoed": envelope["payload"]["input"]}, "final_state": null, "metrics": null},
            "correlation_id": envelope["id"],
            "trace_id": null,
            "requires_ack": false,
            "extensions": null,
        }},
        "id": request["id"],
    });
    serde_json::to_vec(&response).unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18003);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    println!("baseline listening on http://127.0.0.1:{port}");
    axum::serve(listener, Router::new().route("/asap", post(asap)).route("/asap/ws", get(ws))).await.expect("serve");
}
