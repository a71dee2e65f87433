-- The money path (DESIGN.md §4–§5): prices, payout accounts, holds,
-- settlement decisions and their outbox, the ledger, meter checkpoints and
-- events, processed webhook events, and the sandbox provider's state.
-- Amounts are integer minor units with an ISO 4217 currency (B1); times
-- are server Unix ms. Flags are 0/1 integers on both backends.
-- Kept in step with ../sqlite/0003_billing.sql.

-- A consultant's price (M7): `fixed` amount per session, or `per_minute`
-- rate per started minute beyond the free window.
CREATE TABLE prices (
    consultant_id TEXT PRIMARY KEY,
    model         TEXT NOT NULL CHECK (model IN ('fixed', 'per_minute')),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    currency      TEXT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

-- A consultant's payout account (Stripe Connect Express, or the sandbox's).
CREATE TABLE payout_accounts (
    consultant_id     TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL UNIQUE,
    charges_enabled   BIGINT NOT NULL DEFAULT 0,
    payouts_enabled   BIGINT NOT NULL DEFAULT 0,
    details_submitted BIGINT NOT NULL DEFAULT 0,
    updated_ms        BIGINT NOT NULL
);

-- One payment hold per call that asked for one (B2). `status`: held,
-- requires_action, declined, failed, captured, released, expired.
CREATE TABLE holds (
    session_id        TEXT PRIMARY KEY,
    call_id           TEXT NOT NULL,
    seeker_id         TEXT NOT NULL,
    consultant_id     TEXT NOT NULL,
    provider          TEXT NOT NULL,
    intent_id         TEXT,
    status            TEXT NOT NULL,
    amount_minor      BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    price_model       TEXT NOT NULL,
    price_minor       BIGINT NOT NULL,
    max_billable_secs BIGINT NOT NULL,
    destination       TEXT,
    expires_ms        BIGINT,
    error             TEXT,
    created_ms        BIGINT NOT NULL,
    updated_ms        BIGINT NOT NULL
);
CREATE INDEX holds_intent ON holds (intent_id);
CREATE INDEX holds_seeker ON holds (seeker_id, created_ms);

-- The settlement decision of each session, made once (B3), and the outbox
-- state of carrying it out. `outcome`: free, charged, unanswered (a call
-- that never became a session: release). `status`: pending, done, failed.
CREATE TABLE settlements (
    session_id      TEXT PRIMARY KEY,
    outcome         TEXT NOT NULL,
    reason          TEXT NOT NULL,
    billable_secs   BIGINT NOT NULL,
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    decided_ms      BIGINT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error      TEXT,
    done_ms         BIGINT
);
CREATE INDEX settlements_due ON settlements (status, next_attempt_ms);

-- The ledger (B7): one row per money movement, `entry_key` unique so each
-- is recorded once. `kind`: hold, capture, fee, earnings, release, refund,
-- dispute.
CREATE TABLE ledger (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_key     TEXT NOT NULL UNIQUE,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL,
    currency      TEXT NOT NULL,
    seeker_id     TEXT NOT NULL,
    consultant_id TEXT NOT NULL,
    provider_ref  TEXT,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX ledger_session ON ledger (session_id, id);
CREATE INDEX ledger_consultant ON ledger (consultant_id, kind);
CREATE INDEX ledger_seeker ON ledger (seeker_id, kind);

-- The latest checkpoint of each metered session (M9).
CREATE TABLE meter_checkpoints (
    session_id      TEXT PRIMARY KEY,
    billable_ms     BIGINT NOT NULL,
    warned          BIGINT NOT NULL,
    billing_started BIGINT NOT NULL,
    hold_warned     BIGINT NOT NULL,
    at_ms           BIGINT NOT NULL
);

-- Meter notices, stored before the participants are told (M8, M9).
CREATE TABLE meter_events (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    billable_secs BIGINT NOT NULL,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX meter_events_session ON meter_events (session_id, id);

-- Provider webhook events processed, by event id (B5).
CREATE TABLE webhook_events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    received_ms BIGINT NOT NULL
);

-- The sandbox provider's PaymentIntents, accounts and idempotency keys (B8).
CREATE TABLE sandbox_intents (
    id              TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL,
    currency        TEXT NOT NULL,
    amount_received BIGINT NOT NULL DEFAULT 0,
    amount_refunded BIGINT NOT NULL DEFAULT 0,
    fee_minor       BIGINT,
    payment_method  TEXT NOT NULL,
    destination     TEXT,
    created_ms      BIGINT NOT NULL
);
CREATE TABLE sandbox_accounts (
    id            TEXT PRIMARY KEY,
    consultant_id TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);
CREATE TABLE sandbox_idempotency (
    key      TEXT PRIMARY KEY,
    request  TEXT NOT NULL,
    response TEXT NOT NULL
);
