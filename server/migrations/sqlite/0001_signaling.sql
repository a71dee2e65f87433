-- Users seen, instant calls and sessions, with every transition and its
-- server timestamp (Unix ms). Kept in step with ../postgres/0001_signaling.sql.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('seeker', 'consultant')),
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);
CREATE INDEX users_role ON users (role, name);

CREATE TABLE calls (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL UNIQUE,
    seeker_id     TEXT NOT NULL,
    consultant_id TEXT NOT NULL,
    state         TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

CREATE TABLE call_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls (id),
    state   TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
CREATE INDEX call_events_call ON call_events (call_id, id);

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    call_id       TEXT NOT NULL,
    kind          TEXT NOT NULL DEFAULT 'instant',
    seeker_id     TEXT NOT NULL,
    consultant_id TEXT NOT NULL,
    opened_ms     BIGINT NOT NULL,
    ended_ms      BIGINT,
    end_reason    TEXT,
    ended_by      TEXT
);

-- No foreign key to sessions: a participant can join (and its event be
-- written) a moment before the accepting request has written the session.
CREATE TABLE session_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    user_id    TEXT,
    detail     TEXT,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX session_events_session ON session_events (session_id, id);
