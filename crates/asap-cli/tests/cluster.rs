//! Several `asap serve` replicas behind a real load balancer (HAProxy), sharing one
//! PostgreSQL database (tasks, snapshots) and one Redis (nonces, envelope ids, rate
//! limits): what a client sees through any replica is what one agent would answer.
//! Every service is the test's own, in temporary directories, stopped at the end.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use asap_test_support::lb::LoadBalancer;
use asap_test_support::postgres::Postgres;
use asap_test_support::process::Guard;
use asap_test_support::redis::RedisServer;
use serde_json::{Value, json};

const REPLICAS: usize = 3;

/// The flags of every replica that `docs/scale-out/compose.yaml` gives its agents too
/// (the test adds `--conformance` for its test skills, and the URLs of its own
/// PostgreSQL and Redis, which compose passes as ASAP_DATABASE_URL and ASAP_REDIS_URL).
const REPLICA_FLAGS: &[&str] = &[
    "--storage=postgres",
    "--require-nonce",
    "--reject-repeated-ids",
];

struct Cluster {
    replicas: Vec<(Guard, String)>,
    balancer: LoadBalancer,
    redis: RedisServer,
    _pg: Postgres,
    _data: tempfile::TempDir,
}

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .expect("a replica URL is http://IP:PORT")
}

impl Cluster {
    /// Conformance agents (the interop harness's test skills, `slow` among them).
    fn start(extra: &[&str]) -> Self {
        let mut flags = vec!["--conformance"];
        flags.extend_from_slice(extra);
        Self::start_plain(&flags)
    }

    /// Agents as `asap serve` runs them (the echo skill with the task lifecycle).
    fn start_plain(extra: &[&str]) -> Self {
        let pg = Postgres::start();
        let database = pg.database("cluster");
        let redis = RedisServer::start();
        let data = tempfile::tempdir().unwrap();
        let redis_url = redis.url();
        let mut flags = vec![
            "--database-url",
            &database,
            "--redis-url",
            &redis_url,
            "--trusted-proxy",
            "127.0.0.1/32",
        ];
        flags.extend_from_slice(REPLICA_FLAGS);
        flags.extend_from_slice(extra);
        let replicas: Vec<(Guard, String)> = (0..REPLICAS)
            .map(|n| {
                let dir = data.path().join(format!("r{n}"));
                support::asap_serve(&flags, &dir)
            })
            .collect();
        let backends: Vec<SocketAddr> = replicas.iter().map(|(_, url)| address(url)).collect();
        let balancer = LoadBalancer::haproxy(&backends);
        Self {
            replicas,
            balancer,
            redis,
            _pg: pg,
            _data: data,
        }
    }

    fn replica(&self, n: usize) -> &str {
        &self.replicas[n].1
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn envelope(id: &str, payload_type: &str, payload: Value) -> Value {
    json!({
        "id": id,
        "asap_version": "0.1",
        "sender": "urn:asap:agent:cluster-client",
        "recipient": "urn:asap:agent:asap-rs",
        "payload_type": payload_type,
        "payload": payload,
        "extensions": {"nonce": format!("nonce-{id}")},
    })
}

/// POSTs an envelope to `base`/asap; the HTTP status and the JSON body.
fn send(base: &str, envelope: &Value) -> (u16, Value) {
    let body = asap_test_support::rpc::send_request(envelope.clone(), "c-1");
    let response = client()
        .post(format!("{base}/asap"))
        .json(&body)
        .send()
        .expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn echo(id: &str) -> Value {
    envelope(
        id,
        "task.request",
        json!({"conversation_id": "c", "skill_id": "echo", "input": {"n": id}}),
    )
}

#[test]
fn an_envelope_replayed_through_another_replica_is_refused() {
    let cluster = Cluster::start(&["--rate-limit", "off"]);
    let first = echo("env-replay-1");
    let (status, body) = send(cluster.replica(0), &first);
    assert_eq!(status, 200, "{body}");
    assert!(body.get("result").is_some(), "{body}");
    for replica in 1..REPLICAS {
        let (_, again) = send(cluster.replica(replica), &first);
        assert!(again.get("error").is_some(), "replica {replica}: {again}");
    }
    // The same id with a fresh nonce: refused as a repeated envelope id.
    let mut renewed = first.clone();
    renewed["extensions"]["nonce"] = json!("another-nonce");
    let (_, again) = send(&cluster.balancer.url(), &renewed);
    assert!(again.get("error").is_some(), "{again}");
}

#[test]
fn a_burst_is_limited_across_the_cluster() {
    // 12 per minute per client: through three replicas in turn the client still gets
    // 12 (give or take one replica's burst), not 36.
    let cluster = Cluster::start(&["--rate-limit", "12/minute"]);
    let mut accepted = 0;
    let mut limited = 0;
    for n in 0..36 {
        let (status, body) = send(&cluster.balancer.url(), &echo(&format!("env-burst-{n}")));
        match status {
            200 if body.get("result").is_some() => accepted += 1,
            429 => limited += 1,
            other => panic!("request {n}: HTTP {other}: {body}"),
        }
    }
    assert!(
        (12..=12 + 1).contains(&accepted),
        "accepted {accepted}, limited {limited}"
    );
    assert_eq!(accepted + limited, 36);
}

#[test]
fn a_task_started_on_one_replica_is_cancelled_on_a_second_and_read_on_a_third() {
    let cluster = Cluster::start(&["--rate-limit", "off"]);
    let slow = envelope(
        "env-slow-1",
        "task.request",
        json!({"conversation_id": "c", "skill_id": "slow", "input": {"task_id": "task_cluster", "seconds": 60}}),
    );
    let first = cluster.replica(0).to_owned();
    let running = std::thread::spawn(move || send(&first, &slow));
    // Wait until the task is in the shared store: the third replica can read its first
    // snapshot.
    let query = |id: &str| {
        send(
            cluster.replica(2),
            &envelope(id, "state.query", json!({"task_id": "task_cluster"})),
        )
        .1
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut polls = 0;
    loop {
        polls += 1;
        let answer = query(&format!("env-query-wait-{polls}"));
        if answer["result"]["envelope"]["payload"]["data"]["status"] == "working" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the task never appeared: {answer}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, cancelled) = send(
        cluster.replica(1),
        &envelope(
            "env-cancel-1",
            "task.cancel",
            json!({"task_id": "task_cluster"}),
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(
        cancelled["result"]["envelope"]["payload"]["status"], "cancelled",
        "{cancelled}"
    );
    // The first replica's running skill sees the cancellation in the shared store.
    let (_, answer) = running.join().unwrap();
    assert_eq!(
        answer["result"]["envelope"]["payload"]["status"], "cancelled",
        "{answer}"
    );
    let read = query("env-query-final");
    let data = &read["result"]["envelope"]["payload"]["data"];
    assert_eq!(data["status"], "cancelled", "{read}");
    assert_eq!(read["result"]["envelope"]["payload"]["version"], 2);
}

#[test]
fn a_redis_outage_turns_readiness_red_then_green_and_nothing_passes_unchecked() {
    let mut cluster = Cluster::start(&["--rate-limit", "off"]);
    let ready = |cluster: &Cluster, n: usize| {
        client()
            .get(format!("{}/ready", cluster.replica(n)))
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    for n in 0..REPLICAS {
        assert_eq!(ready(&cluster, n), 200);
    }
    cluster.redis.stop();
    for n in 0..REPLICAS {
        assert_eq!(ready(&cluster, n), 503, "replica {n} during the outage");
    }
    // A request needing the replay check is refused, never accepted unchecked.
    let during = echo("env-outage-1");
    let (status, body) = send(cluster.replica(0), &during);
    assert_eq!(status, 503, "{body}");
    cluster.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0..REPLICAS {
        while ready(&cluster, n) != 200 {
            assert!(Instant::now() < deadline, "replica {n} did not recover");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The envelope refused during the outage was never recorded: it goes through now,
    // and its replay is refused again.
    let (status, body) = send(&cluster.balancer.url(), &during);
    assert_eq!(status, 200, "{body}");
    assert!(body.get("result").is_some(), "{body}");
    let (_, again) = send(cluster.replica(1), &during);
    assert!(again.get("error").is_some(), "{again}");
}

/// `docs/scale-out/compose.yaml` starts the topology this test starts: as many agents,
/// with the same flags, and HAProxy configured as `asap_test_support::lb` configures it.
#[test]
fn the_compose_file_keeps_the_tested_topology() {
    let docs = asap_test_support::process::workspace().join("docs/scale-out");
    let compose = std::fs::read_to_string(docs.join("compose.yaml")).unwrap();
    for flag in REPLICA_FLAGS {
        assert!(
            compose.contains(&format!("- {flag}\n")),
            "compose.yaml lacks {flag}"
        );
    }
    for n in 1..=REPLICAS {
        assert!(compose.contains(&format!("agent-{n}: *agent")), "agent-{n}");
    }
    assert!(!compose.contains(&format!("agent-{}: *agent", REPLICAS + 1)));
    let haproxy = std::fs::read_to_string(docs.join("haproxy.cfg")).unwrap();
    for line in asap_test_support::lb::CONFIG_LINES {
        assert!(haproxy.contains(line), "haproxy.cfg lacks {line:?}");
    }
    assert_eq!(
        haproxy.matches("check inter 200ms fall 2 rise 1").count(),
        REPLICAS
    );
}

/// One delivery as the receiver saw it: delivery id, event, task id, status.
type Arrival = (String, String, String, String);

/// A webhook receiver on a socket the test bound: records every delivery (its
/// `X-ASAP-Delivery-Id`, event, task and status) and wakes waiters. After
/// `answer_first` deliveries it records but holds every further request unanswered
/// until [`Receiver::release`], so deliveries are certainly in flight when the test
/// kills a replica.
struct Receiver {
    url: String,
    arrivals: Arc<(Mutex<Vec<Arrival>>, Condvar)>,
    gate: tokio::sync::watch::Sender<bool>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start(answer_first: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let arrivals: Arc<(Mutex<Vec<_>>, Condvar)> = Arc::default();
        let record = arrivals.clone();
        let (gate, open) = tokio::sync::watch::channel(false);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::Json<Value>| {
                    let record = record.clone();
                    let mut open = open.clone();
                    async move {
                        let id = headers
                            .get("x-asap-delivery-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
                        let (list, arrived) = &*record;
                        let count = {
                            let mut list = list.lock().unwrap();
                            list.push((id, field("event"), field("task_id"), field("status")));
                            list.len()
                        };
                        arrived.notify_all();
                        if count > answer_first {
                            let _ = open.wait_for(|open| *open).await;
                        }
                        "ok"
                    }
                },
            ),
        );
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            arrivals,
            gate,
            _runtime: runtime,
        }
    }

    /// Answers the held requests, and every one after.
    fn release(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until `done` holds for the arrivals so far (at most `limit`).
    fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[(String, String, String, String)]) -> bool,
    ) {
        let (list, arrived) = &*self.arrivals;
        let deadline = Instant::now() + limit;
        let mut got = list.lock().unwrap();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out with {} arrivals", got.len());
            got = arrived.wait_timeout(got, left).unwrap().0;
        }
    }

    fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.0.lock().unwrap().clone()
    }
}

/// 1,000 webhook deliveries (four task events for each of 250 tasks) enqueued across
/// the replicas into the shared PostgreSQL queue; one replica is SIGKILLed while they
/// are being delivered. Every delivery arrives; a delivery the killed replica had in
/// flight may arrive twice, with the same delivery id (at least once: it is sent again
/// once its lease expires), and no more of them than one worker has in flight.
#[test]
fn webhooks_survive_a_replica_killed_mid_delivery() {
    const TASKS: usize = 250;
    const EVENTS_PER_TASK: usize = 4; // submitted, working, completed + task.completed
    const MAX_IN_FLIGHT: usize = 64; // WebhookConfig's default, per worker
    // The first quarter is answered at once; then deliveries are held in flight.
    let receiver = Receiver::start(TASKS * EVENTS_PER_TASK / 4);
    let subscription = format!("{}=cluster-secret", receiver.url);
    let mut cluster = Cluster::start_plain(&[
        "--rate-limit",
        "off",
        "--webhook",
        &subscription,
        "--webhook-allow-http",
        "--webhook-allow-private",
        "127.0.0.0/8",
        "--webhook-rate",
        "1000",
        "--webhook-lease",
        "2",
    ]);
    let mut task_ids = std::collections::HashSet::new();
    for n in 0..TASKS {
        let (status, body) = send(&cluster.balancer.url(), &echo(&format!("env-hook-{n}")));
        assert_eq!(status, 200, "{body}");
        let task_id = body["result"]["envelope"]["payload"]["task_id"]
            .as_str()
            .unwrap()
            .to_owned();
        task_ids.insert(task_id);
    }
    let expected = TASKS * EVENTS_PER_TASK;
    // Every event was in the queue before its request was answered. Wait until every
    // replica's worker has deliveries held in flight (more arrivals than were
    // answered), then kill a replica and let the receiver answer again.
    receiver.wait_until(Duration::from_secs(60), |got| {
        got.len() >= expected / 4 + REPLICAS
    });
    let (victim, _) = &mut cluster.replicas[0];
    victim.0.kill().unwrap(); // SIGKILL
    victim.0.wait().unwrap();
    let delivered_before_kill = receiver.arrivals().len();
    receiver.release();
    receiver.wait_until(Duration::from_secs(90), |got| {
        got.iter()
            .map(|(id, ..)| id)
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= expected
    });
    let arrivals = receiver.arrivals();
    let mut by_id: std::collections::HashMap<&str, Vec<&Arrival>> =
        std::collections::HashMap::new();
    for arrival in &arrivals {
        by_id.entry(arrival.0.as_str()).or_default().push(arrival);
    }
    assert_eq!(by_id.len(), expected, "distinct deliveries");
    // Each delivery id stands for one event of one answered task, and every event of
    // every task arrived.
    let mut events = std::collections::HashSet::new();
    for copies in by_id.values() {
        assert!(
            copies.windows(2).all(|w| w[0] == w[1]),
            "a duplicate is the same delivery"
        );
        let (_, event, task_id, status) = copies[0];
        assert!(
            task_ids.contains(task_id),
            "an event of an unknown task {task_id}"
        );
        events.insert((task_id.clone(), event.clone(), status.clone()));
    }
    assert_eq!(events.len(), expected);
    let duplicates = arrivals.len() - expected;
    assert!(
        duplicates <= MAX_IN_FLIGHT,
        "{duplicates} duplicates: more than one worker's deliveries in flight"
    );
    eprintln!(
        "cluster webhooks: {expected} enqueued, {} arrivals ({duplicates} duplicates), {delivered_before_kill} arrived before the SIGKILL",
        arrivals.len()
    );
}
