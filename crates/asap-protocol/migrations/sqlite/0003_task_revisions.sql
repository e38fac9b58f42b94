-- Task revisions: a conditional update names the revision it read
-- (asap_protocol::store::Write::UpdateTask), so a concurrent change is never overwritten.
ALTER TABLE asap_tasks ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
