-- A sandbox hold or cancellation stores its idempotency record in the
-- statement that makes its effect: the statement sets the intent's
-- `last_key` and `last_request` (the key and the request's fingerprint),
-- and this trigger stores the outcome `{"ok": <intent id>}` under the key.
-- A key recorded already fails the statement (unique `key`; a concurrent
-- writer of the key waits for the first to commit), so nothing of it is
-- kept and the sandbox answers the stored outcome: one effect per key, as
-- with Stripe's idempotency keys. One statement instead of a transaction
-- of four: three round trips less for each paid call's hold and for its
-- release. Kept in step with ../sqlite/0019_sandbox_keyed_writes.sql.
ALTER TABLE sandbox_intents ADD COLUMN last_key TEXT, ADD COLUMN last_request TEXT;
CREATE FUNCTION sandbox_intents_keyed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sandbox_idempotency (key, request, response)
    VALUES (NEW.last_key, NEW.last_request, json_build_object('ok', NEW.id)::text);
    RETURN NEW;
END $$;
CREATE TRIGGER sandbox_intents_keyed AFTER INSERT OR UPDATE OF last_key ON sandbox_intents
    FOR EACH ROW WHEN (NEW.last_key IS NOT NULL) EXECUTE FUNCTION sandbox_intents_keyed();
