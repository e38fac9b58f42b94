//! A WebSocket call cancelled by its caller (a timeout around it, a `select!`) must not
//! leave its connection counted as busy: the pool closes idle connections, and a
//! connection with a leaked call never idled out. Timers run on paused tokio time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use asap_protocol::client::{Client, TransportMode, WebSocketOptions};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::server::{Handler, HandlerContext, HandlerError, HandlerRegistry};
use common::{AGENT, Options, start};
use serde_json::json;

/// Never answers.
struct Never;

#[async_trait::async_trait]
impl Handler for Never {
    async fn handle(&self, _: Envelope, _: &HandlerContext) -> Result<Envelope, HandlerError> {
        std::future::pending().await
    }
}

fn task() -> Envelope {
    Envelope::new(
        "urn:asap:agent:client",
        AGENT,
        TaskRequest::new("c1", "echo", json!({})),
    )
}

fn options(registry: Option<HandlerRegistry>) -> Options {
    let mut options = Options {
        registry,
        ..Options::default()
    };
    options.config.websocket.message_rate = None;
    options
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_lets_its_connection_idle_out() {
    let mut never = HandlerRegistry::echo();
    never.register("task.request", Arc::new(Never));
    let hanging = start(options(Some(never))).await;
    let echo = start(options(None)).await;
    let client = Client::builder()
        .transport(TransportMode::WebSocket)
        .websocket({
            let mut value = WebSocketOptions::default();
            value.idle_timeout = Duration::from_secs(60);
            value
        })
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let to = |addr| format!("ws://{addr}");
    // The caller gives up long before the client's own timeout.
    let gave_up = tokio::time::timeout(
        Duration::from_secs(5),
        client.send(&to(hanging.addr), &task()),
    )
    .await;
    assert!(gave_up.is_err(), "the hanging agent answered: {gave_up:?}");
    assert_eq!(client.websocket_connections(), 1);
    // Past the idle timeout, using another agent closes the idle connection.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let reply = client.send(&to(echo.addr), &task()).await.unwrap();
    assert_eq!(reply.payload_type, "task.response");
    assert_eq!(
        client.websocket_connections(),
        1,
        "the connection with the cancelled call was kept as busy"
    );
    echo.stop().await;
    drop(client);
    drop(hanging);
}
