-- The durable webhook queue (asap_protocol::webhook::WebhookQueue): deliveries waiting
-- or in flight, and the ones that will not be attempted again. Times are the database
-- server's clock, so the workers' clocks do not matter. A leased delivery's
-- next_attempt_at is its lease's expiry: claimable means next_attempt_at has passed.
CREATE TABLE IF NOT EXISTS asap_webhook_deliveries (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BYTEA NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS asap_webhook_deliveries_next
    ON asap_webhook_deliveries (next_attempt_at);
CREATE TABLE IF NOT EXISTS asap_webhook_dead_letters (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BYTEA NOT NULL,
    headers TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    died_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS asap_webhook_dead_letters_died
    ON asap_webhook_dead_letters (died_at);
