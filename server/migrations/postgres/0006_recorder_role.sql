-- The recorder (DESIGN.md §6) connects to signaling like any client and is
-- recorded as a seen user: the role check admits it. Kept in step with
-- ../sqlite/0006_recorder_role.sql.
ALTER TABLE users DROP CONSTRAINT users_role_check;
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('seeker', 'consultant', 'recorder'));
