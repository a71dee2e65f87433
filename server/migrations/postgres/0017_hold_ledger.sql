-- A hold placed (status `held`) books its ledger entry (B7, kind `hold`,
-- key `hold:<session_id>`) in the same statement that stores it: one round
-- trip less at every paid call's set-up, and no hold stored without its
-- ledger entry. Kept in step with ../sqlite/0017_hold_ledger.sql.
CREATE FUNCTION holds_placed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id,
                        provider_ref, at_ms)
    VALUES ('hold:' || NEW.session_id, NEW.session_id, 'hold', NEW.amount_minor, NEW.currency, NEW.seeker_id,
            NEW.consultant_id, NEW.intent_id, NEW.created_ms)
    ON CONFLICT (entry_key) DO NOTHING;
    RETURN NEW;
END $$;
CREATE TRIGGER holds_placed AFTER INSERT ON holds
    FOR EACH ROW WHEN (NEW.status = 'held') EXECUTE FUNCTION holds_placed();
