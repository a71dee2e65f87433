-- Each transition is one INSERT into an events table; triggers keep the
-- derived columns in step, in the same statement (one round trip to the
-- database per transition instead of BEGIN/INSERT/UPDATE/COMMIT).
-- Kept in step with ../sqlite/0002_event_triggers.sql.
CREATE FUNCTION calls_first_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO call_events (call_id, state, at_ms) VALUES (NEW.id, NEW.state, NEW.created_ms);
    RETURN NEW;
END $$;
CREATE TRIGGER calls_first_event AFTER INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_first_event();

CREATE FUNCTION call_events_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE calls SET state = NEW.state, updated_ms = NEW.at_ms WHERE id = NEW.call_id;
    RETURN NEW;
END $$;
CREATE TRIGGER call_events_apply AFTER INSERT ON call_events
    FOR EACH ROW EXECUTE FUNCTION call_events_apply();

CREATE FUNCTION session_events_end() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE sessions SET ended_ms = NEW.at_ms, end_reason = NEW.detail, ended_by = NEW.user_id
    WHERE id = NEW.session_id AND ended_ms IS NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER session_events_end AFTER INSERT ON session_events
    FOR EACH ROW WHEN (NEW.kind = 'ended') EXECUTE FUNCTION session_events_end();
