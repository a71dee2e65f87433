-- Recording consent and recaps (DESIGN.md §6): whether a session is
-- recorded, premium seekers set by the operator, consultants who allow
-- recording, and each recording's manifest (talk time per track).
-- Flags are 0/1 integers; times are server Unix ms. Kept in step with the
-- other backend's 0005_recording_consent.sql.

ALTER TABLE sessions ADD COLUMN recording BIGINT NOT NULL DEFAULT 0;

CREATE TABLE premium_seekers (
    seeker_id  TEXT PRIMARY KEY,
    premium    BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE recording_consents (
    consultant_id TEXT PRIMARY KEY,
    allowed       BIGINT NOT NULL,
    updated_ms    BIGINT NOT NULL
);

-- The recorder's manifest of a session (JSON): its tracks and talk time.
CREATE TABLE recording_manifests (
    session_id TEXT PRIMARY KEY,
    manifest   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
