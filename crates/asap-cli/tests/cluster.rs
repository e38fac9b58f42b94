//! Several `asap serve` replicas behind a real load balancer (HAProxy), sharing one
//! PostgreSQL database (tasks, snapshots) and one Redis (nonces, envelope ids, rate
//! limits): what a client sees through any replica is what one agent would answer.
//! Every service is the test's own, in temporary directories, stopped at the end.

mod support;

use std::net::SocketAddr;
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
    fn start(extra: &[&str]) -> Self {
        let pg = Postgres::start();
        let database = pg.database("cluster");
        let redis = RedisServer::start();
        let data = tempfile::tempdir().unwrap();
        let redis_url = redis.url();
        let mut flags = vec![
            "--conformance",
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
    let body = json!({"jsonrpc": "2.0", "method": "asap.send", "params": {"envelope": envelope}, "id": "c-1"});
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
