//! `asap webhook` as a user runs it, and the durability test: 1,000 deliveries to a slow
//! receiver, the delivering process killed with SIGKILL mid-way and restarted; every
//! delivery must arrive at least once.

mod support;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn asap(args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

/// A receiver on its own thread: answers `status` after `delay`, records each body's
/// `seq` and `task_id` and the delivery id.
struct Receiver {
    port: u16,
    got: Arc<Recorded>,
}

/// One delivery as the receiver got it.
#[derive(Clone)]
struct Arrival {
    /// The body's `seq` (0 without one).
    seq: u64,
    /// The `X-ASAP-Delivery-Id` header.
    id: String,
    /// The body's `task_id`, for task events.
    task_id: Option<String>,
}

/// What a receiver got, with a signal for each arrival.
#[derive(Default)]
struct Recorded {
    list: Mutex<Vec<Arrival>>,
    arrived: std::sync::Condvar,
}

impl Receiver {
    /// Waits (at most `within`) until `n` deliveries arrived; panics with `what` otherwise.
    fn wait_for(&self, n: usize, within: Duration, what: &str) {
        self.wait_until(within, what, |list| list.len() >= n);
    }

    /// Waits (at most `within`) until what arrived satisfies `done`; panics with `what`
    /// otherwise.
    fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&[Arrival]) -> bool) {
        let list = self.got.list.lock().unwrap();
        let (list, _) = self
            .got
            .arrived
            .wait_timeout_while(list, within, |list| !done(list))
            .unwrap();
        assert!(done(&list), "{what}: {} arrived", list.len());
    }
}

fn receiver(status: u16, delay: Duration) -> Receiver {
    let got = Arc::new(Recorded::default());
    let seen = got.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().port()).unwrap();
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(
                    move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                        let seen = seen.clone();
                        async move {
                            tokio::time::sleep(delay).await;
                            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let id = headers["x-asap-delivery-id"].to_str().unwrap().to_owned();
                            seen.list.lock().unwrap().push(Arrival {
                                seq: value["seq"].as_u64().unwrap_or(0),
                                id,
                                task_id: value["task_id"].as_str().map(str::to_owned),
                            });
                            seen.arrived.notify_all();
                            axum::http::StatusCode::from_u16(status).unwrap()
                        }
                    },
                ),
            );
            axum::serve(listener, app).await.unwrap();
        });
    });
    Receiver {
        port: rx.recv().unwrap(),
        got,
    }
}

const LOOPBACK: [&str; 3] = ["--allow-http", "--allow-private", "127.0.0.1/32"];

#[test]
fn verify_checks_signatures_like_the_reference() {
    // Cross-implementation vectors are in the interop suite; here the CLI checks what
    // the library signs.
    let body = br#"{"a":1}"#;
    let good = asap_protocol::webhook::sign(b"s3cret", body);
    let ok = asap(
        &[
            "webhook",
            "verify",
            "--secret",
            "s3cret",
            "--signature",
            &good,
        ],
        Some(body),
    );
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "ok");
    let bad = asap(
        &[
            "webhook",
            "verify",
            "--secret",
            "other",
            "--signature",
            &good,
        ],
        Some(body),
    );
    assert_eq!(bad.status.code(), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, body).unwrap();
    let from_file = asap(
        &[
            "webhook",
            "verify",
            "--secret",
            "s3cret",
            "--signature",
            &good,
            file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(from_file.status.code(), Some(0));
}

#[test]
fn enqueue_refuses_blocked_urls_and_dead_letters_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let refused = asap(
        &[
            "webhook",
            "enqueue",
            "https://169.254.169.254/",
            "--data-dir",
            data,
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("link-local"));

    let gone = receiver(404, Duration::ZERO);
    let url = format!("http://127.0.0.1:{}/hook", gone.port);
    let mut args = vec![
        "webhook",
        "enqueue",
        &url,
        "--payload",
        r#"{"seq": 7}"#,
        "--data-dir",
        data,
    ];
    args.extend(LOOPBACK);
    let queued = asap(&args, None);
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let id = String::from_utf8_lossy(&queued.stdout).trim().to_owned();
    let mut deliver = vec!["webhook", "deliver", "--until-empty", "--data-dir", data];
    deliver.extend(LOOPBACK);
    assert!(asap(&deliver, None).status.success());
    assert_eq!(
        gone.got.list.lock().unwrap().len(),
        1,
        "a 404 is not retried"
    );
    let letters = asap(&["webhook", "dead-letters", "--data-dir", data], None);
    let letter: serde_json::Value = serde_json::from_slice(&letters.stdout).unwrap();
    assert_eq!(letter["id"], id);
    assert!(letter["last_error"].as_str().unwrap().contains("404"));
    let replayed = asap(&["webhook", "replay", &id, "--data-dir", data], None);
    assert!(replayed.status.success());
    assert!(
        asap(&["webhook", "dead-letters", "--data-dir", data], None)
            .stdout
            .is_empty()
    );
    assert!(asap(&deliver, None).status.success());
    assert_eq!(
        gone.got.list.lock().unwrap().len(),
        2,
        "replayed and sent again"
    );
    assert_eq!(
        asap(&["webhook", "replay", "nope", "--data-dir", data], None)
            .status
            .code(),
        Some(3),
        "no such dead letter"
    );
}

#[test]
fn deliveries_survive_sigkill_of_the_delivering_process() {
    const TOTAL: u64 = 1000;
    let slow = receiver(200, Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let url = format!("http://127.0.0.1:{}/hook", slow.port);
    let total = TOTAL.to_string();
    let mut args = vec![
        "webhook",
        "enqueue",
        &url,
        "--payload",
        r#"{"event": "bulk"}"#,
        "--count",
        &total,
        "--data-dir",
        data,
    ];
    args.extend(LOOPBACK);
    let queued = asap(&args, None);
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&queued.stdout).lines().count() as u64,
        TOTAL
    );

    // About 200 deliveries a second: kill the deliverer a third of the way in.
    let deliver_args = |extra: &[&'static str]| {
        let mut args = vec![
            "webhook",
            "deliver",
            "--data-dir",
            data,
            "--per-url-rate",
            "200",
            "--max-in-flight",
            "16",
            // The killed worker's deliveries in flight are sent again once their leases
            // (not renewed any more) expire.
            "--lease",
            "2",
        ];
        args.extend(LOOPBACK);
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let mut first = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(deliver_args(&[]))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    slow.wait_for(
        (TOTAL / 3) as usize,
        Duration::from_secs(60),
        "deliveries did not start",
    );
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = slow.got.list.lock().unwrap().len();
    assert!(
        (at_kill as u64) < TOTAL,
        "killed mid-way ({at_kill} delivered)"
    );

    let again = deliver_args(&["--until-empty"]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let second = asap(&again, None);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let got = slow.got.list.lock().unwrap().clone();
    let mut per_seq: HashMap<u64, u32> = HashMap::new();
    let mut ids_per_seq: HashMap<u64, std::collections::HashSet<String>> = HashMap::new();
    for arrival in &got {
        *per_seq.entry(arrival.seq).or_default() += 1;
        ids_per_seq
            .entry(arrival.seq)
            .or_default()
            .insert(arrival.id.clone());
    }
    let missing: Vec<u64> = (0..TOTAL).filter(|s| !per_seq.contains_key(s)).collect();
    assert!(missing.is_empty(), "lost deliveries: {missing:?}");
    assert!(
        ids_per_seq.values().all(|ids| ids.len() == 1),
        "a duplicate keeps its delivery id"
    );
    let duplicates = got.len() as u64 - TOTAL;
    println!(
        "durability: {TOTAL} enqueued, {at_kill} received before SIGKILL, {} received in all, {duplicates} duplicated, 0 lost",
        got.len()
    );
    assert!(
        asap(&["webhook", "dead-letters", "--data-dir", data], None)
            .stdout
            .is_empty()
    );
}

/// `asap serve --webhook URL=SECRET`: task events are delivered to the callback; a
/// blocked callback stops the start-up with the rule's name.
#[test]
fn serve_sends_task_events_to_registered_callbacks() {
    let hook = receiver(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let callback = format!("http://127.0.0.1:{}/hook=cb-secret", hook.port);
    let (agent, url) = support::asap_serve(
        &[
            "--webhook",
            &callback,
            "--webhook-allow-http",
            "--webhook-allow-private",
            "127.0.0.1/32",
        ],
        dir.path(),
    );
    let sent = asap(&["send", &url, "--skill", "echo"], None);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    hook.wait_for(4, Duration::from_secs(20), "task events did not arrive");
    drop(agent);
    let blocked = asap(
        &[
            "serve",
            "--port",
            "0",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--webhook",
            "https://169.254.169.254/=s",
        ],
        None,
    );
    assert_eq!(blocked.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&blocked.stderr).contains("link-local"));
}

/// `asap serve --storage postgres --webhook URL=SECRET`: the queue lives in PostgreSQL
/// (`--storage memory` has none and refuses `--webhook`: tests/cli.rs).
#[test]
fn serve_on_postgres_sends_task_events_to_registered_callbacks() {
    let pg = asap_test_support::postgres::Postgres::start();
    let database = pg.database("agent");
    let hook = receiver(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let callback = format!("http://127.0.0.1:{}/hook=cb-secret", hook.port);
    let flags = [
        "--storage",
        "postgres",
        "--database-url",
        &database,
        "--webhook",
        &callback,
        "--webhook-allow-http",
        "--webhook-allow-private",
        "127.0.0.1/32",
    ];
    let (agent, url) = support::asap_serve(&flags, dir.path());
    let sent = asap(&["send", &url, "--skill", "echo"], None);
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stdout)
    );
    hook.wait_for(4, Duration::from_secs(20), "task events did not arrive");
    drop(agent);
    let pending = asap(
        &["webhook", "dead-letters", "--database-url", &database],
        None,
    );
    assert!(pending.status.success() && pending.stdout.is_empty());
}

/// `asap send URL --skill SKILL --input INPUT` against a conformance agent; the reply.
fn skill(url: &str, skill: &str, input: &str) -> (Output, serde_json::Value) {
    let out = asap(
        &[
            "send",
            url,
            "--skill",
            skill,
            "--input",
            input,
            "--attempts",
            "1",
        ],
        None,
    );
    let reply = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out, reply)
}

#[test]
fn conformance_skills_answer_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    // Task events tell the test when `slow` has registered its task (and can be cancelled).
    let events = receiver(200, Duration::ZERO);
    let callback = format!("http://127.0.0.1:{}/hook=cb-secret", events.port);
    let (_agent, url) = support::asap_serve(
        &[
            "--conformance",
            "--webhook",
            &callback,
            "--webhook-allow-http",
            "--webhook-allow-private",
            "127.0.0.1/32",
        ],
        dir.path(),
    );

    let (failed, answer) = skill(&url, "fail", "{}");
    assert_eq!(failed.status.code(), Some(5), "an error answer");
    assert_eq!(answer["error"]["code"], -32603, "printed once, on stdout");

    for version in 1..=2 {
        let (_, reply) = skill(
            &url,
            "checkpoint",
            r#"{"task_id": "t-cp", "data": {"k": 1}}"#,
        );
        assert_eq!(reply["payload"]["result"]["version"], version, "{reply}");
    }

    let hook = receiver(200, Duration::ZERO);
    let target = format!("http://127.0.0.1:{}/hook", hook.port);
    let (_, reply) = skill(
        &url,
        "webhook",
        &format!(r#"{{"url": "{target}", "payload": {{"seq": 9}}}}"#),
    );
    assert_eq!(
        reply["payload"]["result"],
        serde_json::json!({"delivered": true, "status_code": 200, "attempts": 1}),
        "{reply}"
    );
    assert_eq!(hook.got.list.lock().unwrap()[0].seq, 9);

    // `slow` ends as soon as task.cancel for its task arrives.
    let started = Instant::now();
    let slow = {
        let url = url.clone();
        std::thread::spawn(move || skill(&url, "slow", r#"{"task_id": "t-slow", "seconds": 20}"#))
    };
    events.wait_until(Duration::from_secs(20), "t-slow did not start", |list| {
        list.iter()
            .any(|arrival| arrival.task_id.as_deref() == Some("t-slow"))
    });
    let cancel = asap(
        &[
            "send",
            &url,
            "--payload-type",
            "task.cancel",
            "--payload",
            r#"{"task_id": "t-slow"}"#,
        ],
        None,
    );
    assert!(
        cancel.status.success(),
        "{}",
        String::from_utf8_lossy(&cancel.stderr)
    );
    let (_, reply) = slow.join().unwrap();
    assert_eq!(reply["payload"]["status"], "cancelled", "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancelled early"
    );
}

#[test]
fn the_queue_commands_use_the_state_file_asap_serve_uses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("elsewhere.db");
    let mut args = vec![
        "webhook",
        "enqueue",
        "http://127.0.0.1:9/hook",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend(LOOPBACK);
    let queued = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(&args)
        .env("ASAP_STORAGE_PATH", &file)
        .output()
        .unwrap();
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    assert!(
        file.exists(),
        "ASAP_STORAGE_PATH names the file, as for serve"
    );
    assert!(!data.join("asap_state.db").exists());
}

/// Two `asap webhook deliver` workers on one PostgreSQL queue, one SIGKILLed mid-way:
/// every delivery arrives, and only what the killed worker had in flight (at most its
/// `--max-in-flight`) can arrive twice, with its delivery id.
#[test]
fn two_deliverers_on_postgres_survive_sigkill_of_one() {
    const TOTAL: u64 = 600;
    const IN_FLIGHT: &str = "8";
    let pg = asap_test_support::postgres::Postgres::start();
    let database = pg.database("hooks");
    let slow = receiver(200, Duration::from_millis(20));
    let url = format!("http://127.0.0.1:{}/hook", slow.port);
    let total = TOTAL.to_string();
    let mut args = vec![
        "webhook",
        "enqueue",
        &url,
        "--payload",
        r#"{"event": "bulk"}"#,
        "--count",
        &total,
        "--database-url",
        &database,
    ];
    args.extend(LOOPBACK);
    let queued = asap(&args, None);
    assert!(
        queued.status.success(),
        "{}",
        String::from_utf8_lossy(&queued.stderr)
    );
    let deliver = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_asap"));
        command
            .args(["webhook", "deliver", "--database-url", &database])
            .args(["--per-url-rate", "200", "--max-in-flight", IN_FLIGHT])
            .args(["--lease", "2"])
            .args(LOOPBACK)
            .args(extra)
            .stderr(Stdio::null());
        command
    };
    let mut doomed = deliver(&[]).spawn().unwrap();
    let survivor = deliver(&["--until-empty"]).spawn().unwrap();
    slow.wait_for(
        (TOTAL / 3) as usize,
        Duration::from_secs(60),
        "deliveries did not start",
    );
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    let finished = survivor.wait_with_output().unwrap();
    assert!(finished.status.success());
    let got = slow.got.list.lock().unwrap().clone();
    let mut ids_per_seq: HashMap<u64, std::collections::HashSet<String>> = HashMap::new();
    for Arrival { seq, id, .. } in &got {
        ids_per_seq.entry(*seq).or_default().insert(id.clone());
    }
    let missing: Vec<u64> = (0..TOTAL)
        .filter(|s| !ids_per_seq.contains_key(s))
        .collect();
    assert!(missing.is_empty(), "lost deliveries: {missing:?}");
    assert!(
        ids_per_seq.values().all(|ids| ids.len() == 1),
        "a duplicate keeps its delivery id"
    );
    let duplicates = got.len() as u64 - TOTAL;
    assert!(
        duplicates <= IN_FLIGHT.parse().unwrap(),
        "{duplicates} duplicates: more than the killed worker had in flight"
    );
    println!(
        "two workers on PostgreSQL: {TOTAL} enqueued, {} received, {duplicates} duplicated, 0 lost",
        got.len()
    );
}
