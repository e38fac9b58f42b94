//! The reads SQLite and PostgreSQL stores share: the same tables and the same SQL
//! (`$N` placeholders, which both accept), over each backend's pool and row type.
//! Writes differ (the SQLite store's group writer, PostgreSQL's transaction per batch)
//! and go through [`Store::commit`](super::Store::commit).

/// Implements [`TaskStore`](super::TaskStore), [`SnapshotStore`](super::SnapshotStore)
/// and [`MeteringStore`](super::MeteringStore) for `$store`, a struct with a sqlx
/// `pool` field whose rows are `$row`; `$checkpoint` reads a snapshot row's checkpoint
/// flag (an integer in SQLite, a boolean in PostgreSQL).
macro_rules! sql_reads {
    ($store:ty, $row:ty, $checkpoint:expr) => {
        fn snapshot_from_row(row: &$row) -> Result<StateSnapshot, StoreError> {
            let data = json::parse(row.get::<String, _>("data").as_bytes()).map_err(corrupt)?;
            let serde_json::Value::Object(data) = data else {
                return Err(StoreError::Corrupt(
                    "snapshot data is not a JSON object".into(),
                ));
            };
            let checkpoint: fn(&$row) -> bool = $checkpoint;
            Ok(StateSnapshot {
                id: row.get("id"),
                task_id: row.get("task_id"),
                version: row.get("version"),
                data,
                checkpoint: checkpoint(row),
                created_at: row
                    .get::<String, _>("created_at")
                    .parse::<Timestamp>()
                    .map_err(corrupt)?,
            })
        }

        #[async_trait]
        impl TaskStore for $store {
            async fn get_task(&self, task_id: &str) -> Result<Option<StoredTask>, StoreError> {
                let row = sqlx::query("SELECT record, revision FROM asap_tasks WHERE id = $1")
                    .bind(task_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
                row.map(|r| {
                    Ok(StoredTask {
                        task: Task::from_json(r.get::<String, _>(0).as_bytes()).map_err(corrupt)?,
                        revision: u64::try_from(r.get::<i64, _>(1)).map_err(corrupt)?,
                    })
                })
                .transpose()
            }
        }

        #[async_trait]
        impl SnapshotStore for $store {
            async fn save(&self, snapshot: &StateSnapshot) -> Result<(), StoreError> {
                Store::commit(self, WriteBatch::new().save_snapshot(snapshot.clone())).await
            }

            async fn get(
                &self,
                task_id: &str,
                version: Option<i64>,
            ) -> Result<Option<StateSnapshot>, StoreError> {
                let query = match version {
                    Some(v) => {
                        sqlx::query("SELECT * FROM snapshots WHERE task_id = $1 AND version = $2")
                            .bind(task_id)
                            .bind(v)
                    }
                    None => sqlx::query(
                        "SELECT * FROM snapshots WHERE task_id = $1 ORDER BY version DESC LIMIT 1",
                    )
                    .bind(task_id),
                };
                let row = query.fetch_optional(&self.pool).await.map_err(backend)?;
                row.as_ref().map(snapshot_from_row).transpose()
            }

            async fn list_versions(&self, task_id: &str) -> Result<Vec<i64>, StoreError> {
                let rows = sqlx::query(
                    "SELECT version FROM snapshots WHERE task_id = $1 ORDER BY version",
                )
                .bind(task_id)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
                Ok(rows.iter().map(|r| r.get::<i64, _>(0)).collect())
            }

            async fn delete(
                &self,
                task_id: &str,
                version: Option<i64>,
            ) -> Result<bool, StoreError> {
                let query = match version {
                    Some(v) => {
                        sqlx::query("DELETE FROM snapshots WHERE task_id = $1 AND version = $2")
                            .bind(task_id)
                            .bind(v)
                    }
                    None => sqlx::query("DELETE FROM snapshots WHERE task_id = $1").bind(task_id),
                };
                let deleted = query.execute(&self.pool).await.map_err(backend)?;
                Ok(deleted.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl MeteringStore for $store {
            async fn record(&self, event: &UsageEvent) -> Result<(), StoreError> {
                Store::commit(self, WriteBatch::new().record_usage(event.clone())).await
            }

            async fn query(
                &self,
                agent_id: &str,
                start: Option<Timestamp>,
                end: Option<Timestamp>,
            ) -> Result<Vec<UsageEvent>, StoreError> {
                let rows = sqlx::query("SELECT * FROM usage_events WHERE agent_id = $1")
                    .bind(agent_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(backend)?;
                let mut events = Vec::with_capacity(rows.len());
                for row in &rows {
                    events.push(UsageEvent {
                        task_id: row.get("task_id"),
                        agent_id: row.get("agent_id"),
                        consumer_id: row.get("consumer_id"),
                        metrics: UsageMetrics::from_json(
                            row.get::<String, _>("metrics").as_bytes(),
                        )
                        .map_err(corrupt)?,
                        timestamp: row
                            .get::<String, _>("timestamp")
                            .parse::<Timestamp>()
                            .map_err(corrupt)?,
                    });
                }
                Ok(super::within(events, start, end))
            }
        }
    };
}

pub(super) use sql_reads;
