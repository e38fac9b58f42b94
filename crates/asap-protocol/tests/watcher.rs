//! Liveness with servers that stop and start: up, down, back up, on the manifest's
//! `ttl_seconds`, backing off while down.
//!
//! On paused time: the watcher's intervals, backoff and timeouts run on tokio's clock,
//! and the servers and the watcher share the test's runtime, so virtual time advances
//! only when all of them are idle.

mod common;

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::time::Instant;

use asap_protocol::discovery::{LivenessEvent, Watcher};
use asap_protocol::server::{Server, ServerConfig};
use common::manifest;

/// A listener on a free loopback port.
async fn listen() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// An address that takes connections and closes them at once (an agent that is down).
async fn closing_agent() -> std::net::SocketAddr {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// A server with `ttl_seconds` 1 on `listener`.
struct Serving {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), asap_protocol::server::ServerError>>,
}

impl Serving {
    /// Stops the server and waits until it has let go of its port.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

async fn serve_on(listener: TcpListener) -> Serving {
    let addr = listener.local_addr().unwrap();
    let mut m = manifest(&format!("http://{addr}"));
    m.ttl_seconds = 1;
    let server = Server::builder()
        .manifest(m)
        .config(ServerConfig::default())
        .build()
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Serving { stop, task }
}

#[track_caller]
fn next(
    events: &mut tokio::sync::mpsc::Receiver<LivenessEvent>,
) -> impl std::future::Future<Output = LivenessEvent> + '_ {
    let caller = std::panic::Location::caller();
    async move {
        tokio::time::timeout(Duration::from_secs(15), events.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within 15 s (waiting at {caller})"))
            .unwrap()
    }
}

#[tokio::test(start_paused = true)]
async fn up_down_and_back_up() {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    let nothing = closing_agent().await;
    let serving = serve_on(listener).await;
    let (mut events, _watching) = Watcher::new()
        .agent(format!("http://{addr}"))
        .max_backoff(Duration::from_secs(2))
        .start();
    match next(&mut events).await {
        LivenessEvent::Up { url, health } => {
            assert_eq!(url, format!("http://{addr}"));
            assert!(health.is_healthy());
        }
        other => panic!("{other:?}"),
    }
    serving.stop().await;
    let stopped_at = Instant::now();
    match next(&mut events).await {
        LivenessEvent::Down { reason, .. } => assert!(reason.contains("unreachable"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(3),
        "noticed within about one ttl"
    );
    // Down for a while (virtual time), then back on the same port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _restarted = serve_on(TcpListener::bind(addr).await.unwrap()).await;
    let restarted_at = Instant::now();
    assert!(matches!(next(&mut events).await, LivenessEvent::Up { .. }));
    assert!(
        restarted_at.elapsed() <= Duration::from_millis(2600),
        "within the capped backoff"
    );
    // Nothing else happens while it stays up.
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), events.recv())
            .await
            .is_err()
    );

    // An agent that never answers is reported down once, not on every check.
    let (mut quiet, _w) = Watcher::new()
        .agent(format!("http://{nothing}"))
        .default_interval(Duration::from_millis(100))
        .min_interval(Duration::from_millis(100))
        .start();
    assert!(matches!(next(&mut quiet).await, LivenessEvent::Down { .. }));
    assert!(
        tokio::time::timeout(Duration::from_millis(800), quiet.recv())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn agents_from_a_registry_are_watched() {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    let _serving = serve_on(listener).await;
    let registry = asap_protocol::discovery::LiteRegistry::parse(
        serde_json::json!({"version": "1.0", "updated_at": "2026-11-30T00:00:00Z", "agents": [
            {"id": "urn:asap:agent:a", "name": "A", "description": "a", "asap_version": "0.1",
             "endpoints": {"http": format!("http://{addr}/asap")}}]})
        .to_string()
        .as_bytes(),
        "inline",
    )
    .unwrap();
    let (mut events, _watching) = Watcher::new().registry(&registry).start();
    match next(&mut events).await {
        LivenessEvent::Up { url, .. } => assert_eq!(url, format!("http://{addr}")),
        other => panic!("{other:?}"),
    }
}

/// Three servers; their addresses and handles.
async fn three_servers() -> ([std::net::SocketAddr; 3], Vec<Serving>) {
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let listener = listen().await;
        addrs.push(listener.local_addr().unwrap());
        servers.push(serve_on(listener).await);
    }
    (addrs.try_into().unwrap(), servers)
}

/// No event arrives within `window`.
async fn quiet_for(events: &mut tokio::sync::mpsc::Receiver<LivenessEvent>, window: Duration) {
    if let Ok(event) = tokio::time::timeout(window, events.recv()).await {
        panic!("expected no event, got {event:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn agents_are_added_and_removed_while_watching() {
    let listener = listen().await;
    let addr = listener.local_addr().unwrap();
    let serving = serve_on(listener).await;
    let url = format!("http://{addr}");
    let (mut events, watching) = Watcher::new()
        .min_interval(Duration::from_millis(100))
        .start();
    assert!(watching.urls().is_empty());
    assert!(watching.watch(&format!("{url}/")), "a new agent");
    assert!(
        !watching.watch(&url),
        "already watched: counted, not doubled"
    );
    assert_eq!(watching.urls(), std::slice::from_ref(&url));
    assert!(matches!(next(&mut events).await, LivenessEvent::Up { url: u, .. } if u == url));

    assert!(!watching.unwatch(&url).await, "still asked for once");
    assert!(watching.unwatch(&url).await);
    assert_eq!(
        next(&mut events).await,
        LivenessEvent::Unwatched { url: url.clone() }
    );
    assert!(watching.urls().is_empty());
    assert!(!watching.unwatch(&url).await, "not watched any more");
    // Once unwatched, its going away is nobody's concern.
    serving.stop().await;
    quiet_for(&mut events, Duration::from_millis(1500)).await;
}

fn registry_document(addrs: &[std::net::SocketAddr]) -> String {
    let agents: Vec<serde_json::Value> = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            serde_json::json!({"id": format!("urn:asap:agent:a{i}"), "name": "A",
                "description": "a", "asap_version": "0.1",
                "endpoints": {"http": format!("http://{addr}/asap")}})
        })
        .collect();
    serde_json::json!({"version": "1.0", "updated_at": "2026-11-30T00:00:00Z", "agents": agents})
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn a_followed_registry_adds_and_removes_agents() {
    let (listener_a, listener_b) = (listen().await, listen().await);
    let (a, b) = (
        listener_a.local_addr().unwrap(),
        listener_b.local_addr().unwrap(),
    );
    let _serving = (serve_on(listener_a).await, serve_on(listener_b).await);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registry.json");
    std::fs::write(&file, registry_document(&[a])).unwrap();

    let (mut events, watching) = Watcher::new().start();
    watching.follow_registry(
        asap_protocol::discovery::RegistryClient::new().unwrap(),
        file.to_str().unwrap(),
        Duration::from_millis(100),
    );
    assert!(
        matches!(next(&mut events).await, LivenessEvent::Up { url, .. } if url == format!("http://{a}"))
    );

    // b joins and a leaves in one update.
    std::fs::write(&file, registry_document(&[b])).unwrap();
    let mut seen = [next(&mut events).await, next(&mut events).await];
    seen.sort_by_key(|e| matches!(e, LivenessEvent::Up { .. }));
    assert_eq!(
        seen[0],
        LivenessEvent::Unwatched {
            url: format!("http://{a}")
        }
    );
    assert!(matches!(&seen[1], LivenessEvent::Up { url, .. } if *url == format!("http://{b}")));
    assert_eq!(watching.urls(), [format!("http://{b}")]);

    // A registry that cannot be read leaves the agents last read watched.
    std::fs::write(&file, "{ not json").unwrap();
    quiet_for(&mut events, Duration::from_millis(800)).await;
    assert_eq!(watching.urls(), [format!("http://{b}")]);

    // Dropping the handle stops the follower and every check.
    drop(watching);
    std::fs::write(&file, registry_document(&[a, b])).unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .expect("the channel closes");
    assert_eq!(closed, None);
}

#[tokio::test(start_paused = true)]
async fn a_full_event_buffer_delays_events_and_loses_none() {
    let (addrs, _servers) = three_servers().await;
    let mut watcher = Watcher::new().event_buffer(1);
    for addr in addrs {
        watcher = watcher.agent(format!("http://{addr}"));
    }
    let (mut events, _watching) = watcher.start();
    assert_eq!(events.max_capacity(), 1);
    // Nobody reads while all three agents answer: two checks wait for room (paused
    // time: the sleep ends once the watcher and the servers are idle).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events.len(), 1);
    let mut up = Vec::new();
    for _ in 0..3 {
        match next(&mut events).await {
            LivenessEvent::Up { url, .. } => up.push(url),
            other => panic!("{other:?}"),
        }
    }
    up.sort();
    let mut want: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    want.sort();
    assert_eq!(up, want);
}

#[tokio::test(start_paused = true)]
async fn unwatching_from_the_reader_never_blocks_and_ends_each_agent_last() {
    let (addrs, _servers) = three_servers().await;
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let mut watcher = Watcher::new().event_buffer(1);
    for url in &urls {
        watcher = watcher.agent(url.clone());
    }
    let (mut events, watching) = watcher.start();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events.len(), 1, "the channel is full");
    // The reader itself unwatches while the channel is full.
    for url in &urls {
        tokio::time::timeout(Duration::from_secs(2), watching.unwatch(url))
            .await
            .expect("unwatch does not wait for the reader");
    }
    let mut ended = std::collections::HashSet::new();
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
        match event {
            LivenessEvent::Up { url, .. } => {
                assert!(!ended.contains(&url), "{url}: Up after Unwatched")
            }
            LivenessEvent::Unwatched { url } => assert!(ended.insert(url)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ended.len(), 3);
    assert!(watching.urls().is_empty());
}
