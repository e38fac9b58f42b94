-- The durable webhook queue (asap_protocol::webhook::WebhookQueue): deliveries waiting
-- or in flight, and the ones that will not be attempted again.
CREATE TABLE IF NOT EXISTS asap_webhook_deliveries (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at REAL NOT NULL,
    leased INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS asap_webhook_deliveries_due
    ON asap_webhook_deliveries (leased, next_attempt_at);
CREATE TABLE IF NOT EXISTS asap_webhook_dead_letters (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at REAL NOT NULL,
    died_at REAL NOT NULL
);
