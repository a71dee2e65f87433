-- Escrowed engagements (issue 19): a package of sessions or a list of
-- milestones, funded up front into the platform's balance (a PaymentIntent
-- with automatic capture, no destination) and paid out to the consultant
-- by Connect transfers as the work is done (rules E1–E8). Times are server
-- Unix ms; amounts integer minor units. Kept in step with the other
-- backend's 0013_engagements.sql.

-- `state`: funding (the charge was or is being asked), active, failed (the
-- charge was refused), cancelled, completed (nothing left in escrow).
-- `request_key`: the seeker's Idempotency-Key, so a retried creation
-- resumes the same funding (provider key `fund:<id>`) instead of charging
-- twice. A package has `sessions` × `session_minutes` at `session_price_minor`.
CREATE TABLE engagements (
    id                  TEXT PRIMARY KEY,
    seeker_id           TEXT NOT NULL,
    consultant_id       TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('package', 'milestones')),
    state               TEXT NOT NULL CHECK (state IN ('funding', 'active', 'failed', 'cancelled', 'completed')),
    title               TEXT NOT NULL,
    amount_minor        BIGINT NOT NULL CHECK (amount_minor > 0),
    currency            TEXT NOT NULL,
    sessions            BIGINT,
    session_minutes     BIGINT,
    session_price_minor BIGINT,
    payment_method      TEXT NOT NULL,
    destination         TEXT NOT NULL,
    intent_id           TEXT,
    charge_id           TEXT,
    error               TEXT,
    cancel_fee_minor    BIGINT,
    cancelled_by        TEXT,
    request_key         TEXT,
    created_ms          BIGINT NOT NULL,
    updated_ms          BIGINT NOT NULL,
    UNIQUE (seeker_id, request_key)
);
CREATE INDEX engagements_seeker ON engagements (seeker_id, created_ms);
CREATE INDEX engagements_consultant ON engagements (consultant_id, created_ms);

-- A milestone's `state`: open, submitted (by the consultant; released on
-- its own at `release_due_ms`), disputed, released, refunded, split (the
-- last three are final: `released_minor` + `refunded_minor` = amount).
CREATE TABLE milestones (
    id              TEXT PRIMARY KEY,
    engagement_id   TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    description     TEXT NOT NULL,
    amount_minor    BIGINT NOT NULL CHECK (amount_minor > 0),
    state           TEXT NOT NULL CHECK (state IN ('open', 'submitted', 'disputed', 'released', 'refunded', 'split')),
    note            TEXT,
    links           TEXT,
    submitted_ms    BIGINT,
    release_due_ms  BIGINT,
    dispute_reason  TEXT,
    disputed_by     TEXT,
    released_minor  BIGINT NOT NULL DEFAULT 0,
    refunded_minor  BIGINT NOT NULL DEFAULT 0,
    resolution_note TEXT,
    resolved_by     TEXT,
    updated_ms      BIGINT NOT NULL,
    UNIQUE (engagement_id, seq)
);
CREATE INDEX milestones_due ON milestones (state, release_due_ms);

-- Every movement out of escrow, reserved (`pending`) under the
-- engagement's lock in the transaction that decides it, then asked of the
-- provider under `key` as its idempotency key (`release:<milestone>`,
-- `refund:<milestone>`, `draw:<session>`, `cancel:<engagement>`), then
-- `done` with its ledger rows (or `failed`: refused). `kind`: transfer (to
-- the consultant: `amount_minor` gross, of which `fee_minor` stays with the
-- platform) or refund (to the seeker; `fee_minor` kept as a cancellation fee).
CREATE TABLE escrow_moves (
    key           TEXT PRIMARY KEY,
    engagement_id TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('transfer', 'refund')),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor >= 0),
    fee_minor     BIGINT NOT NULL CHECK (fee_minor >= 0),
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    session_id    TEXT UNIQUE,
    provider_ref  TEXT,
    error         TEXT,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);
CREATE INDEX escrow_moves_engagement ON escrow_moves (engagement_id, status);

-- A booked session of a package draws from its engagement instead of a hold.
ALTER TABLE bookings ADD COLUMN engagement_id TEXT;

-- The sandbox provider's Connect transfers (from the platform's balance,
-- `source_transaction` a charge of an intent) and their reversals.
CREATE TABLE sandbox_transfers (
    id                 TEXT PRIMARY KEY,
    source_transaction TEXT NOT NULL,
    destination        TEXT NOT NULL,
    amount_minor       BIGINT NOT NULL,
    currency           TEXT NOT NULL,
    reversed_minor     BIGINT NOT NULL DEFAULT 0,
    created_ms         BIGINT NOT NULL
);
