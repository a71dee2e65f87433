-- The recorder (DESIGN.md §6) connects to signaling like any client and is
-- recorded as a seen user: the role check admits it. SQLite cannot alter a
-- CHECK, so the table is rebuilt (nothing references it). Kept in step with
-- ../postgres/0006_recorder_role.sql.
CREATE TABLE users_new (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('seeker', 'consultant', 'recorder')),
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL
);
INSERT INTO users_new (id, name, role, first_seen_ms, last_seen_ms)
    SELECT id, name, role, first_seen_ms, last_seen_ms FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE INDEX users_role ON users (role, name);
