//! The store contract, run against every backend.

use std::sync::Arc;

use asap_protocol::model::{StateSnapshot, Task, TaskStatus, Timestamp, UsageEvent, UsageMetrics};
use asap_protocol::store::{
    MemoryStore, SnapshotStore, SqliteStore, StorageConfig, Store, StoreError, TaskStore,
    WriteBatch,
};
use serde_json::json;
use sqlx::{Connection, Row};

fn snapshot(task: &str, version: i64, data: serde_json::Value) -> StateSnapshot {
    StateSnapshot {
        id: format!("snap_{task}_{version}"),
        task_id: task.into(),
        version,
        data: data.as_object().unwrap().clone(),
        checkpoint: version % 2 == 0,
        created_at: "2026-01-15T10:30:00.250000Z".parse().unwrap(),
    }
}

async fn contract(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
    assert_eq!(store.get("t1", None).await.unwrap(), None);
    assert_eq!(store.list_versions("t1").await.unwrap(), Vec::<i64>::new());
    for v in [2, 1, 3] {
        store
            .save(&snapshot(
                "t1",
                v,
                json!({"v": v, "note": "h\u{e9}llo", "big": 12345678901234567890_u64, "f": 0.1}),
            ))
            .await
            .unwrap();
    }
    assert_eq!(store.list_versions("t1").await.unwrap(), [1, 2, 3]);
    let latest = store.get("t1", None).await.unwrap().unwrap();
    assert_eq!(
        latest,
        snapshot(
            "t1",
            3,
            json!({"v": 3, "note": "h\u{e9}llo", "big": 12345678901234567890_u64, "f": 0.1})
        )
    );
    assert_eq!(store.get("t1", Some(2)).await.unwrap().unwrap().version, 2);
    assert_eq!(store.get("t1", Some(9)).await.unwrap(), None);
    // Upsert by (task, version).
    store
        .save(&snapshot("t1", 2, json!({"replaced": true})))
        .await
        .unwrap();
    assert_eq!(
        store.get("t1", Some(2)).await.unwrap().unwrap().data["replaced"],
        true
    );
    assert!(store.delete("t1", Some(2)).await.unwrap());
    assert!(!store.delete("t1", Some(2)).await.unwrap());
    assert_eq!(store.list_versions("t1").await.unwrap(), [1, 3]);
    assert!(store.delete("t1", None).await.unwrap());
    assert!(!store.delete("t1", None).await.unwrap());
    assert_eq!(store.get("t1", None).await.unwrap(), None);

    task_contract(store.as_ref()).await;

    let event = |ts: &str, tokens: i64| UsageEvent {
        task_id: "t".into(),
        agent_id: "urn:asap:agent:a".into(),
        consumer_id: "c".into(),
        metrics: UsageMetrics {
            tokens_in: tokens,
            tokens_out: 1,
            duration_ms: 5,
            api_calls: 1,
        },
        timestamp: ts.parse().unwrap(),
    };
    store
        .record(&event("2026-01-15T12:00:00+02:00", 10))
        .await
        .unwrap();
    store
        .record(&event("2026-01-15T09:00:00Z", 20))
        .await
        .unwrap();
    store
        .record(&event("2026-01-15T11:00:00Z", 30))
        .await
        .unwrap();
    let all = store.query("urn:asap:agent:a", None, None).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.metrics.tokens_in).collect::<Vec<_>>(),
        [20, 10, 30]
    );
    let start: Timestamp = "2026-01-15T09:30:00Z".parse().unwrap();
    let end: Timestamp = "2026-01-15T10:30:00Z".parse().unwrap();
    let window = store
        .query("urn:asap:agent:a", Some(start), Some(end))
        .await
        .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].timestamp.to_string(), "2026-01-15T12:00:00+02:00");
    let agg = store.aggregate("urn:asap:agent:a", "day").await.unwrap();
    assert_eq!(
        (
            agg.total_tokens,
            agg.total_tasks,
            agg.total_duration,
            agg.total_api_calls
        ),
        (63, 3, 15, 3)
    );
    assert!(
        store
            .query("urn:asap:agent:other", None, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Tasks: created once, updated only at the revision read, a batch all or nothing.
async fn task_contract(store: &dyn Store) {
    let mut task = Task::new("task_9", "conv");
    store
        .commit(WriteBatch::new().create_task(task.clone()))
        .await
        .unwrap();
    let stored = store.get_task("task_9").await.unwrap().unwrap();
    assert_eq!((stored.task, stored.revision), (task.clone(), 1));
    assert_eq!(store.get_task("nope").await.unwrap(), None);

    // Creating it again conflicts, and nothing else of that batch is written.
    let again = WriteBatch::new()
        .save_snapshot(snapshot("task_9", 1, json!({"lost": true})))
        .create_task(task.clone());
    let conflict = store.commit(again).await.unwrap_err();
    assert!(
        matches!(&conflict, StoreError::Conflict { task_id, expected: 0 } if task_id == "task_9"),
        "{conflict:?}"
    );
    assert_eq!(store.get("task_9", None).await.unwrap(), None);

    // An update at the revision read succeeds and moves the revision on ...
    task.transition(TaskStatus::Working).unwrap();
    store
        .commit(
            WriteBatch::new()
                .update_task(task.clone(), 1)
                .save_snapshot(snapshot("task_9", 1, json!({"kept": true}))),
        )
        .await
        .unwrap();
    let stored = store.get_task("task_9").await.unwrap().unwrap();
    assert_eq!(
        (stored.task.status, stored.revision),
        (TaskStatus::Working, 2)
    );
    assert_eq!(store.list_versions("task_9").await.unwrap(), [1]);

    // ... and a second writer still holding revision 1 loses, whole.
    let mut stale = task.clone();
    stale.transition(TaskStatus::Cancelled).unwrap();
    let lost = WriteBatch::new()
        .update_task(stale, 1)
        .save_snapshot(snapshot("task_9", 2, json!({"lost": true})));
    assert!(matches!(
        store.commit(lost).await.unwrap_err(),
        StoreError::Conflict { expected: 1, .. }
    ));
    let stored = store.get_task("task_9").await.unwrap().unwrap();
    assert_eq!(
        (stored.task.status, stored.revision),
        (TaskStatus::Working, 2)
    );
    assert_eq!(store.list_versions("task_9").await.unwrap(), [1]);

    // Updating a task nobody created conflicts too.
    assert!(matches!(
        store
            .commit(WriteBatch::new().update_task(Task::new("ghost", "c"), 1))
            .await
            .unwrap_err(),
        StoreError::Conflict { expected: 1, .. }
    ));
    assert_eq!(store.get_task("ghost").await.unwrap(), None);

    // Two conditional writes in one batch: the second's conflict undoes the first.
    task.transition(TaskStatus::Completed).unwrap();
    let both = WriteBatch::new()
        .update_task(task.clone(), 2)
        .create_task(Task::new("task_9", "dup"));
    assert!(matches!(
        store.commit(both).await.unwrap_err(),
        StoreError::Conflict { expected: 0, .. }
    ));
    assert_eq!(store.get_task("task_9").await.unwrap().unwrap().revision, 2);
    assert!(store.commit(WriteBatch::new()).await.is_ok());
}

/// Many writers committing at once (the SQLite store groups them): every batch lands,
/// each conflict is reported to its own writer only.
async fn concurrent_batches(store: Arc<dyn Store>) {
    let mut jobs = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        jobs.push(tokio::spawn(async move {
            let id = format!("task_c{}", n % 100);
            let created = store
                .commit(
                    WriteBatch::new()
                        .create_task(Task::new(&id, "c"))
                        .save_snapshot(snapshot(&id, n, json!({"n": n}))),
                )
                .await;
            created.is_ok()
        }));
    }
    let mut created = 0;
    for job in jobs {
        created += usize::from(job.await.unwrap());
    }
    // Each of the 100 ids was created exactly once; the other 100 batches conflicted
    // and left no snapshot behind.
    assert_eq!(created, 100);
    let mut snapshots = 0;
    for n in 0..100 {
        let id = format!("task_c{n}");
        assert_eq!(store.get_task(&id).await.unwrap().unwrap().revision, 1);
        snapshots += store.list_versions(&id).await.unwrap().len();
    }
    assert_eq!(snapshots, 100);

    // Then creations of new tasks beside two competing updates of each existing one,
    // each update with a snapshot and a usage event: one update per task wins, the
    // loser leaves nothing, and the creations are unaffected.
    let mut jobs = Vec::new();
    for n in 0..300 {
        let store = store.clone();
        jobs.push(tokio::spawn(async move {
            let batch = if n < 100 {
                WriteBatch::new().create_task(Task::new(format!("task_d{n}"), "d"))
            } else {
                let id = format!("task_c{}", n % 100);
                let mut task = Task::new(&id, "c");
                task.transition(TaskStatus::Working).unwrap();
                WriteBatch::new()
                    .update_task(task, 1)
                    .save_snapshot(snapshot(&id, 2, json!({"writer": n})))
                    .record_usage(UsageEvent {
                        task_id: id.clone(),
                        agent_id: "urn:asap:agent:concurrent".into(),
                        consumer_id: format!("writer_{n}"),
                        metrics: UsageMetrics::default(),
                        timestamp: "2026-01-15T10:30:00Z".parse().unwrap(),
                    })
            };
            (n, store.commit(batch).await)
        }));
    }
    let mut winners = Vec::new();
    for job in jobs {
        let (n, outcome) = job.await.unwrap();
        match outcome {
            Ok(()) if n >= 100 => winners.push(n),
            Ok(()) => {}
            Err(StoreError::Conflict { expected, .. }) if n >= 100 => assert_eq!(expected, 1),
            Err(other) => panic!("batch {n}: {other}"),
        }
    }
    assert_eq!(winners.len(), 100);
    for n in 0..100 {
        let created = store
            .get_task(&format!("task_d{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(created.revision, 1);
        let id = format!("task_c{n}");
        let updated = store.get_task(&id).await.unwrap().unwrap();
        assert_eq!(updated.revision, 2);
        assert_eq!(updated.task.status, TaskStatus::Working);
        let winner = winners.iter().find(|&&w| w % 100 == n).unwrap();
        let latest = store.get(&id, Some(2)).await.unwrap().unwrap();
        assert_eq!(latest.data["writer"], json!(winner));
    }
    let events = store
        .query("urn:asap:agent:concurrent", None, None)
        .await
        .unwrap();
    let mut consumers: Vec<String> = events.into_iter().map(|e| e.consumer_id).collect();
    consumers.sort();
    let mut expected: Vec<String> = winners.iter().map(|w| format!("writer_{w}")).collect();
    expected.sort();
    assert_eq!(consumers, expected);

    // Then fresh creations beside creations of tasks that exist, each on its own task:
    // the fresh ones land, the others conflict and leave no snapshot behind.
    let mut jobs = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        jobs.push(tokio::spawn(async move {
            let id = if n < 100 {
                format!("task_e{n}")
            } else {
                format!("task_d{}", n % 100)
            };
            let batch = WriteBatch::new()
                .create_task(Task::new(&id, "e"))
                .save_snapshot(snapshot(&id, 7, json!({"n": n})));
            (n, store.commit(batch).await)
        }));
    }
    for job in jobs {
        match job.await.unwrap() {
            (n, Ok(())) => assert!(n < 100, "batch {n} overwrote an existing task"),
            (n, Err(StoreError::Conflict { expected: 0, .. })) => assert!(n >= 100),
            (n, Err(other)) => panic!("batch {n}: {other}"),
        }
    }
    for n in 0..100 {
        assert_eq!(
            store.list_versions(&format!("task_e{n}")).await.unwrap(),
            [7]
        );
        let existing = format!("task_d{n}");
        assert!(store.list_versions(&existing).await.unwrap().is_empty());
        let kept = store.get_task(&existing).await.unwrap().unwrap();
        assert_eq!(
            (kept.revision, kept.task.conversation_id.as_str()),
            (1, "d")
        );
    }
}

/// A batch the database refuses (here a trigger aborts its snapshot) fails the group
/// it was committed with; its neighbours are written again one transaction each and
/// land, and only the refused batch gets the error.
#[tokio::test]
async fn a_batch_the_database_refuses_does_not_fail_its_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let mut admin = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON snapshots WHEN NEW.task_id = 'task_poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned snapshot'); END",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    // Spawned on this test's single thread, the batches all queue before the writer
    // runs, so they are committed as one group.
    let mut jobs = Vec::new();
    for n in 0..20 {
        let store = store.clone();
        let id = if n == 7 {
            "task_poison".to_owned()
        } else {
            format!("task_n{n}")
        };
        jobs.push(tokio::spawn(async move {
            let batch = WriteBatch::new()
                .create_task(Task::new(&id, "n"))
                .save_snapshot(snapshot(&id, 1, json!({"n": n})));
            (id, store.commit(batch).await)
        }));
    }
    for job in jobs {
        match job.await.unwrap() {
            (id, Ok(())) => {
                assert_ne!(id, "task_poison");
                assert_eq!(store.list_versions(&id).await.unwrap(), [1]);
            }
            (id, Err(StoreError::Backend(source))) => {
                assert_eq!(id, "task_poison");
                assert!(source.to_string().contains("poisoned snapshot"), "{source}");
            }
            (id, Err(other)) => panic!("{id}: {other}"),
        }
    }
    // The refused batch left nothing, its task included.
    assert!(store.get_task("task_poison").await.unwrap().is_none());
}

#[tokio::test]
async fn memory_store_meets_the_contract() {
    contract(Arc::new(MemoryStore::new())).await;
    concurrent_batches(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    contract(Arc::new(SqliteStore::in_memory().await.unwrap())).await;
    let dir = tempfile::tempdir().unwrap();
    contract(
        StorageConfig::Sqlite(dir.path().join("state.db"))
            .open()
            .await
            .unwrap(),
    )
    .await;
    let store = SqliteStore::open(dir.path().join("concurrent.db"))
        .await
        .unwrap();
    concurrent_batches(Arc::new(store)).await;
}

#[tokio::test]
async fn sqlite_state_survives_reopening_and_uses_the_reference_row_format() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let mut s = snapshot("task_01", 1, json!({"step": 1, "note": "h\u{e9}llo"}));
        s.id = "snap_01".into();
        s.checkpoint = false;
        s.created_at = "2026-01-15T10:30:00Z".parse().unwrap();
        store.save(&s).await.unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let back = store.get("task_01", None).await.unwrap().unwrap();
    assert_eq!(back.data["note"], "h\u{e9}llo");
    store.close().await;
    // The row exactly as the reference writes it (S2 data, isoformat timestamp).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let row =
        sqlx::query("SELECT task_id, id, version, data, checkpoint, created_at FROM snapshots")
            .fetch_one(&pool)
            .await
            .unwrap();
    let cells = (
        row.get::<String, _>(0),
        row.get::<String, _>(1),
        row.get::<i64, _>(2),
        row.get::<String, _>(3),
        row.get::<i64, _>(4),
        row.get::<String, _>(5),
    );
    assert_eq!(
        cells,
        (
            "task_01".into(),
            "snap_01".into(),
            1,
            r#"{"step": 1, "note": "h\u00e9llo"}"#.into(),
            0,
            "2026-01-15T10:30:00+00:00".into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sqlite_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    // Two independent handles on one file, as two processes would have.
    let a = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(SqliteStore::open(&path).await.unwrap());
    let mut jobs = Vec::new();
    for writer in 0..8i64 {
        let store = if writer % 2 == 0 {
            a.clone()
        } else {
            b.clone()
        };
        jobs.push(tokio::spawn(async move {
            for version in 1..=50i64 {
                store
                    .save(&snapshot(
                        &format!("task_{writer}"),
                        version,
                        json!({"w": writer, "v": version}),
                    ))
                    .await
                    .unwrap();
            }
        }));
    }
    for job in jobs {
        job.await.unwrap();
    }
    for writer in 0..8i64 {
        let versions = a.list_versions(&format!("task_{writer}")).await.unwrap();
        assert_eq!(versions, (1..=50).collect::<Vec<_>>());
        assert_eq!(
            b.get(&format!("task_{writer}"), None)
                .await
                .unwrap()
                .unwrap()
                .data["v"],
            50
        );
    }
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn sqlite_files_are_shared_with_the_reference() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/sqlite_compat.py");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let python = asap_test_support::process::reference_python();
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("write")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.list_versions("task_ref").await.unwrap(), [1, 2]);
    let theirs = store.get("task_ref", None).await.unwrap().unwrap();
    assert_eq!(
        asap_protocol::model::Model::to_json(&theirs),
        r#"{"id":"snap_ref_2","task_id":"task_ref","version":2,"data":{"step":2,"note":"héllo ✓","big":12345678901234567890,"f":0.1},"checkpoint":true,"created_at":"2026-01-15T10:30:02.250000Z"}"#
    );
    let mut ours = snapshot("task_rs", 1, json!({"note": "日本", "n": [1, 2.5]}));
    ours.created_at = "2026-01-15T10:30:00+02:00".parse().unwrap();
    store.save(&ours).await.unwrap();
    store
        .save(&snapshot("task_rs", 2, json!({})))
        .await
        .unwrap();
    store.close().await;

    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg("read")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], asap_protocol::model::Model::to_json(&ours));
}

#[tokio::test]
async fn a_backend_failure_keeps_the_backends_error_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the database file should be: SQLite cannot open it.
    let error = asap_protocol::store::SqliteStore::open(dir.path())
        .await
        .unwrap_err();
    let source = std::error::Error::source(&error).expect("a source");
    assert!(
        source.downcast_ref::<sqlx::Error>().is_some(),
        "{error}: {source:?}"
    );
}

/// The same contract on a real PostgreSQL server, started for the test.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_meets_the_contract() {
    use asap_protocol::store::{PostgresConfig, PostgresStore};
    let pg = asap_test_support::postgres::Postgres::start();
    let url = pg.database("contract");
    let store = PostgresStore::connect(&PostgresConfig::new(&url))
        .await
        .unwrap();
    contract(Arc::new(store.clone())).await;
    concurrent_batches(Arc::new(store.clone())).await;
    // A second agent on the same database (a replica) sees the first one's writes, and
    // its stale conditional write conflicts: the state machine holds across replicas.
    let replica = StorageConfig::Postgres(PostgresConfig::new(&url))
        .open()
        .await
        .unwrap();
    let seen = replica.get_task("task_9").await.unwrap().unwrap();
    assert_eq!(seen.revision, 2);
    let mut done = seen.task.clone();
    done.transition(TaskStatus::Completed).unwrap();
    store
        .commit(WriteBatch::new().update_task(done.clone(), 2))
        .await
        .unwrap();
    let mut cancelled = seen.task;
    cancelled.transition(TaskStatus::Cancelled).unwrap();
    assert!(matches!(
        replica
            .commit(WriteBatch::new().update_task(cancelled, 2))
            .await
            .unwrap_err(),
        StoreError::Conflict { .. }
    ));
    assert_eq!(
        replica.get_task("task_9").await.unwrap().unwrap().task,
        done
    );
    store.close().await;
    replica.close().await;
}

/// A statement that runs past the configured timeout is cancelled by the server and
/// reported as a backend error (the pool is not left hanging).
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_statement_timeout_holds() {
    use asap_protocol::store::{PostgresConfig, PostgresStore};
    let pg = asap_test_support::postgres::Postgres::start();
    let mut config = PostgresConfig::new(pg.database("timeouts"));
    config.statement_timeout = std::time::Duration::from_millis(100);
    let store = PostgresStore::connect(&config).await.unwrap();
    let error = sqlx::query("SELECT pg_sleep(5)")
        .execute(store.pool())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("statement timeout"), "{error}");
    store.ping().await.unwrap();
}
