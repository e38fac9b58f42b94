//! WebSocket load client for `bench/ws.sh`.
//!
//! `asap-bench-wsload URL CONNECTIONS SECONDS` opens CONNECTIONS sockets to URL
//! (`ws://…/asap/ws`), and on each sends an `asap.send` echo request, waits for the frame
//! with its id (skipping acks, pings and pushes), and sends the next, until SECONDS have
//! passed (closed loop: one request in flight per connection). Prints one line:
//! `BENCH msgs_per_s=… p50_ms=… p99_ms=… replies=… errors=…`. Bounded by SECONDS plus a
//! 10 s allowance for the last answers; loopback only by intent.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Outcome {
    rtts_us: Vec<u32>,
    errors: u64,
}

fn frame(id: u64) -> String {
    json!({
        "jsonrpc": "2.0",
        "method": "asap.send",
        "id": format!("b-{id}"),
        "params": {"envelope": {
            "asap_version": "0.1",
            "sender": "urn:asap:agent:bench-client",
            "recipient": "urn:asap:agent:echo-agent",
            "payload_type": "task.request",
            "payload": {"conversation_id": "c", "skill_id": "echo", "input": {"message": "hello"}},
        }},
    })
    .to_string()
}

async fn connection(url: String, until: Instant) -> Outcome {
    let mut outcome = Outcome { rtts_us: Vec::new(), errors: 0 };
    let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        outcome.errors += 1;
        return outcome;
    };
    let hard_stop = until + Duration::from_secs(10);
    let mut next = 0u64;
    while Instant::now() < until {
        next += 1;
        let id = format!("b-{next}");
        let started = Instant::now();
        if socket.send(Message::Text(frame(next).into())).await.is_err() {
            outcome.errors += 1;
            return outcome;
        }
        loop {
            let left = hard_stop.saturating_duration_since(Instant::now());
            let Ok(Some(Ok(message))) = tokio::time::timeout(left, socket.next()).await else {
                outcome.errors += 1;
                return outcome;
            };
            let Message::Text(text) = message else { continue };
            let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else { continue };
            if reply.get("type").is_some() {
                let _ = socket.send(Message::Text(r#"{"type": "pong"}"#.into())).await;
                continue;
            }
            if reply.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                continue;
            }
            if reply.get("result").is_some() {
                let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                outcome.rtts_us.push(us);
            } else {
                outcome.errors += 1;
            }
            break;
        }
    }
    let _ = socket.close(None).await;
    outcome
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(connections), Some(seconds)) = (
        args.get(1),
        args.get(2).and_then(|c| c.parse::<usize>().ok()),
        args.get(3).and_then(|s| s.parse::<f64>().ok()),
    ) else {
        eprintln!("usage: asap-bench-wsload ws://HOST:PORT/asap/ws CONNECTIONS SECONDS");
        std::process::exit(2);
    };
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(connection(url.clone(), until)))
        .collect();
    let mut rtts = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok(outcome) = task.await {
            rtts.extend(outcome.rtts_us);
            errors += outcome.errors;
        } else {
            errors += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds);
    rtts.sort_unstable();
    println!(
        "BENCH msgs_per_s={:.1} p50_ms={:.3} p99_ms={:.3} replies={} errors={}",
        rtts.len() as f64 / elapsed,
        percentile(&rtts, 50.0),
        percentile(&rtts, 99.0),
        rtts.len(),
        errors
    );
}
