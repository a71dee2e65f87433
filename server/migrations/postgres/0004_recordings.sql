-- Recordings (DESIGN.md §6): one row per stored file, a participant's
-- track or a session's manifest. The file itself is in the object store
-- (`PARLEY_RECORDING_STORE`) under `object_key`. Times are server Unix ms;
-- `deleted_ms` is set when retention deleted the file (the row stays).
-- Kept in step with ../sqlite/0004_recordings.sql.

-- One stored recording file: a participant's track, or a session's manifest.
CREATE TABLE recordings (
    id             TEXT PRIMARY KEY,        -- "rec_<uuid>"
    session_id     TEXT NOT NULL,
    participant_id TEXT,                    -- whose track; NULL for the manifest
    kind           TEXT NOT NULL CHECK (kind IN ('audio', 'video', 'manifest')),
    codec          TEXT NOT NULL,           -- 'opus', 'vp8', 'json'
    content_type   TEXT NOT NULL,           -- 'audio/ogg', 'video/x-ivf', 'application/json'
    object_key     TEXT NOT NULL UNIQUE,    -- key in the object store, e.g. "sessions/<session>/<participant>-audio.ogg"
    bytes          BIGINT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    created_ms     BIGINT NOT NULL,
    deleted_ms     BIGINT                   -- set when retention deleted the file
);
CREATE INDEX recordings_session ON recordings (session_id);
-- The retention sweep's scan: live files by age.
CREATE INDEX recordings_created ON recordings (created_ms) WHERE deleted_ms IS NULL;
