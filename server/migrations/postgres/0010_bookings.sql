-- Scheduled sessions (DESIGN.md §3, issue 4): consultants' availability,
-- per-purpose prices, bookings and the per-consultant lock that serialises
-- accepting them. Times are server Unix ms; amounts integer minor units.
-- Kept in step with the other backend's 0010_bookings.sql.

-- A consultant's availability: IANA time zone, session lengths offered and
-- the weekly rules and date exceptions (JSON, domain::protocol::rest::Availability).
CREATE TABLE availability (
    consultant_id TEXT PRIMARY KEY,
    time_zone     TEXT NOT NULL,
    rules         TEXT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

-- Prices of mentorship sessions and interviews (consultations use `prices`).
CREATE TABLE purpose_prices (
    consultant_id TEXT NOT NULL,
    purpose       TEXT NOT NULL CHECK (purpose IN ('mentorship', 'interview')),
    model         TEXT NOT NULL CHECK (model IN ('fixed', 'per_minute')),
    amount_minor  BIGINT NOT NULL CHECK (amount_minor >= 0),
    currency      TEXT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (consultant_id, purpose)
);

-- `state`: pending, confirmed, declined, expired, cancelled, held.
-- `hold_status`: none, scheduled, held, failed, released, captured.
-- `proposed`: JSON array of proposed starts.
CREATE TABLE bookings (
    id             TEXT PRIMARY KEY,
    session_id     TEXT NOT NULL UNIQUE,
    call_id        TEXT NOT NULL,
    seeker_id      TEXT NOT NULL,
    consultant_id  TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    length_min     BIGINT NOT NULL,
    proposed       TEXT NOT NULL,
    state          TEXT NOT NULL,
    start_ms       BIGINT,
    end_ms         BIGINT,
    respond_by_ms  BIGINT NOT NULL,
    price_model    TEXT,
    price_minor    BIGINT,
    currency       TEXT,
    payment_method TEXT,
    record         BIGINT NOT NULL DEFAULT 0,
    seeker_name    TEXT NOT NULL,
    seeker_premium BIGINT NOT NULL DEFAULT 0,
    hold_status    TEXT NOT NULL,
    hold_due_ms    BIGINT,
    hold_error     TEXT,
    reminders_sent BIGINT NOT NULL DEFAULT 0,
    no_show_announced BIGINT NOT NULL DEFAULT 0,
    reason         TEXT,
    cancelled_by   TEXT,
    fee_minor      BIGINT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL
);
CREATE INDEX bookings_consultant ON bookings (consultant_id, state, start_ms);
CREATE INDEX bookings_seeker ON bookings (seeker_id, created_ms);
CREATE INDEX bookings_due ON bookings (state, start_ms);

-- One row per consultant: a command that fixes a slot updates it first, so
-- such commands for one consultant run one at a time on both backends.
CREATE TABLE booking_locks (
    consultant_id TEXT PRIMARY KEY,
    version       BIGINT NOT NULL
);

-- A booking's hold is placed before its session exists: the orphan sweep
-- leaves it alone until the room should have opened.
ALTER TABLE holds ADD COLUMN opens_ms BIGINT;
