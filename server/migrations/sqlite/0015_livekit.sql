-- LiveKit as a media backend (issue 18): every LiveKit webhook applied,
-- by its event id, so a repeated delivery is applied once (docs/rules.md L2).
CREATE TABLE livekit_events (
    id            TEXT PRIMARY KEY,       -- LiveKit's WebhookEvent.id ("EV_…")
    event         TEXT NOT NULL,          -- participant_joined, participant_left, room_finished, …
    room          TEXT NOT NULL,          -- the room name: a session id, or '' (egress events carry none)
    created_at    BIGINT NOT NULL,        -- LiveKit's created_at, Unix seconds
    received_ms   BIGINT NOT NULL         -- server clock, Unix ms
);
CREATE INDEX livekit_events_room ON livekit_events (room);
