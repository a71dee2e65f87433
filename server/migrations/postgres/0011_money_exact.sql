-- Money exact under concurrency (issue 13). Times are server Unix ms;
-- amounts integer minor units. Kept in step with the other backend's
-- 0011_money_exact.sql.

-- Refunds of a captured session, reserved before the provider is asked:
-- the reservation (amount counted against what is left) and its sequence
-- number are fixed in one statement, so concurrent refunds can never
-- together exceed the capture, and each gets its own provider idempotency
-- key (`refund:<session>:<seq>`). `status`: pending (the provider was or is
-- being asked), done (`refund_id` recorded with the ledger entries),
-- failed (the provider refused it: the amount is free again).
-- `request_key`: the caller's Idempotency-Key, if any, so a retried
-- request reuses its reservation and provider key.
CREATE TABLE refunds (
    session_id   TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    refund_id    TEXT,
    request_key  TEXT,
    error        TEXT,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq),
    UNIQUE (session_id, request_key)
);

-- Responses of money-moving requests sent with an `Idempotency-Key`
-- header, per caller and key (as Stripe keeps them): the request's
-- fingerprint (method, path, body hash), and once it finished with a
-- status below 500, the response to replay. `state`: running, done.
CREATE TABLE idempotency_keys (
    user_id      TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('running', 'done')),
    status       BIGINT,
    content_type TEXT,
    body         TEXT,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (user_id, key)
);
