-- The state tables of asap_protocol::store::PostgresStore: the same rows as the SQLite
-- schema (snapshot data and records kept as the exact JSON text written, so numbers
-- beyond 64 bits and key order survive), plus task revisions for conditional updates.
CREATE TABLE IF NOT EXISTS asap_tasks (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    task_id TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    data TEXT NOT NULL,
    checkpoint BOOLEAN NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (task_id, version)
);
CREATE TABLE IF NOT EXISTS usage_events (
    id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    consumer_id TEXT NOT NULL,
    metrics TEXT NOT NULL,
    timestamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_events_agent ON usage_events (agent_id);
