-- Outgoing webhooks (issue 4, docs/protocol.md §14): a durable outbox of
-- events for the operator's platform, the settlements already announced,
-- and indexes for consultant metrics. Times are server Unix ms. Kept in
-- step with ../sqlite/0008_webhooks.sql.

-- One row per event. `body` is the exact JSON POSTed on every attempt
-- ({"id","type","created_ms","data"}), so the signature covers the same
-- bytes each time. `dedupe_key` makes an event once per fact (e.g.
-- 'session.ended:ses_…'); NULL when the caller needs none.
-- `status`: pending (to deliver, or being delivered: `next_attempt_ms`
-- is then the lease's end), delivered, failed (gave up).
CREATE TABLE webhook_outbox (
    id              TEXT PRIMARY KEY,          -- 'evt_' + UUIDv7
    type            TEXT NOT NULL,
    body            TEXT NOT NULL,
    dedupe_key      TEXT UNIQUE,
    created_ms      BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT,
    last_status     BIGINT,                    -- HTTP status of the last attempt, if one came back
    delivered_ms    BIGINT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_ms);

-- Whether `session.settled` was stored for a finished settlement (set in
-- the same transaction as the event). Settlements finished before this
-- migration are not announced.
ALTER TABLE settlements ADD COLUMN announced BIGINT NOT NULL DEFAULT 0;
UPDATE settlements SET announced = 1 WHERE status <> 'pending';
CREATE INDEX settlements_unannounced ON settlements (status) WHERE announced = 0;

-- Consultant metrics and acceptance read sessions and calls by consultant.
CREATE INDEX IF NOT EXISTS sessions_consultant_opened ON sessions (consultant_id, opened_ms);
CREATE INDEX IF NOT EXISTS calls_consultant_created ON calls (consultant_id, created_ms);
