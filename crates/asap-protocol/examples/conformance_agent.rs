//! The conformance agent: the test agent of the shared interop harness, and the most
//! complete example of an agent built from the public API (custom `task.request`
//! skills with cancellation, server push over WebSocket, snapshots, signed webhooks, a
//! custom `task.cancel`). `asap serve --conformance` runs the same code
//! (`asap_protocol::conformance`, feature `conformance`).
//!
//! ```sh
//! cargo run -p asap-protocol --example conformance_agent      # on 127.0.0.1:8020
//! asap send ws://127.0.0.1:8020 --skill push --input '{"count": 3}'
//! ```

use std::sync::Arc;

use asap_protocol::conformance as skills;
use asap_protocol::model::Manifest;
use asap_protocol::server::{Server, ServerConfig, shutdown_signal};
use asap_protocol::store::SqliteStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8020").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut manifest = Manifest::new(
        "urn:asap:agent:conformance",
        "Conformance Agent",
        "1.0.0",
        "The interop harness's test agent",
        format!("{base}/asap"),
    );
    skills::add_skills(&mut manifest);
    let mut config = ServerConfig::default();
    skills::configure(&mut config);
    let store = SqliteStore::in_memory().await?;
    let server = Server::builder()
        .manifest(manifest)
        .config(config)
        .store(Arc::new(store))
        .registry(skills::registry(skills::DEFAULT_WEBHOOK_SECRET.to_owned()))
        .build()?;
    println!("conformance agent on {base}");
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}
