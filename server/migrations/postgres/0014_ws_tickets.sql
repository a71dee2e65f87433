-- One-time tickets for opening the signaling WebSocket from a browser
-- (POST /v1/ws-tickets, then /v1/signal?ticket=…), so the access token
-- never travels in a URL. Kept in the database so any node sharing it
-- accepts a ticket another node issued. Only the SHA-256 of a ticket is
-- stored (hex). Times are server Unix ms. Kept in step with the other
-- backend's 0014_ws_tickets.sql.
CREATE TABLE ws_tickets (
    ticket_hash TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    premium     BIGINT NOT NULL DEFAULT 0,
    expires_ms  BIGINT NOT NULL,
    used_ms     BIGINT
);
CREATE INDEX ws_tickets_expiry ON ws_tickets (expires_ms);
