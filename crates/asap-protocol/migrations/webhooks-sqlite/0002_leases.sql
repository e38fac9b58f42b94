-- Leases per worker: the worker holding a delivery and until when. While leased,
-- next_attempt_at is the lease's expiry, so a delivery is claimable exactly when
-- next_attempt_at has passed (due, or its lease expired) and one index serves both.
-- The old flag (`leased`, reset by every starting worker) goes: a row it marked is
-- claimable at once, as a delivery left in flight by a stopped process should be.
DROP INDEX IF EXISTS asap_webhook_deliveries_due;
ALTER TABLE asap_webhook_deliveries DROP COLUMN leased;
ALTER TABLE asap_webhook_deliveries ADD COLUMN lease_owner TEXT;
ALTER TABLE asap_webhook_deliveries ADD COLUMN lease_expires_at REAL;
CREATE INDEX IF NOT EXISTS asap_webhook_deliveries_next
    ON asap_webhook_deliveries (next_attempt_at);
