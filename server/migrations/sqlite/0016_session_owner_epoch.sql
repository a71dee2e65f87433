-- Fencing of a live session's writes (issue 16). `owner_epoch` is the
-- epoch of the node that meters the session: 1 for the node that opened it,
-- raised by one by every node that takes it over (after a restart, or from
-- a lost node). The meter's writes carry the epoch they were made under; the
-- store refuses one whose epoch is not the session's current epoch, so an
-- owner that was paused or partitioned away cannot write over its successor.
-- Kept in step with the other backend's 0016_session_owner_epoch.sql.
ALTER TABLE sessions ADD COLUMN owner_epoch INTEGER NOT NULL DEFAULT 1;
