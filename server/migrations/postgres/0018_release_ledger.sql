-- A hold released in full (`held` → `released`, a session that ended in
-- its free window or never started) books its ledger entry (B7, kind
-- `release`, key `release:<session_id>`, the hold's amount) in the
-- statement that changes its status: one round trip less at every free
-- call's settlement, and no hold released without its entry. A capture's
-- partial release is booked by billing with the capture. Kept in step with
-- ../sqlite/0018_release_ledger.sql.
CREATE FUNCTION holds_released() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id,
                        provider_ref, at_ms)
    VALUES ('release:' || NEW.session_id, NEW.session_id, 'release', NEW.amount_minor, NEW.currency,
            NEW.seeker_id, NEW.consultant_id, NEW.intent_id, NEW.updated_ms)
    ON CONFLICT (entry_key) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER holds_released AFTER UPDATE OF status ON holds
    FOR EACH ROW WHEN (OLD.status = 'held' AND NEW.status = 'released') EXECUTE FUNCTION holds_released();
