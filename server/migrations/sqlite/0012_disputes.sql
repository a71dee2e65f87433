-- Disputes of charged sessions and card chargebacks (docs/rules.md D1–D6).
-- Times are server Unix ms; amounts integer minor units with a currency.
-- Kept in step with the other backend's 0012_disputes.sql.
-- New ledger kinds: `dispute_won` (a card dispute closed in our favour),
-- `chargeback` (a card dispute lost; its `earnings_reversal` and
-- `fee_reversal` entries say who bears it, D6).

-- A participant's dispute of one ended, charged session (at most one per
-- session: the unique key settles two opened at once, D1). `status`:
-- open, answered (the other side answered once, D2), deciding (a
-- moderator's decision claimed it; its refund is under way), decided (D3).
-- `refund_minor`: what the decision refunded; `refund_id` the provider's.
CREATE TABLE disputes (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL UNIQUE,
    seeker_id     TEXT NOT NULL,
    consultant_id TEXT NOT NULL,
    opened_by     TEXT NOT NULL,
    reason        TEXT NOT NULL,
    text          TEXT NOT NULL,
    opened_ms     BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('open', 'answered', 'deciding', 'decided')),
    answer        TEXT,
    answered_ms   BIGINT,
    decision      TEXT CHECK (decision IN ('uphold', 'partial_refund', 'full_refund')),
    amount_minor  BIGINT,
    refund_minor  BIGINT,
    currency      TEXT,
    refund_id     TEXT,
    note          TEXT,
    decided_by    TEXT,
    decided_ms    BIGINT
);
CREATE INDEX disputes_seeker ON disputes (seeker_id);
CREATE INDEX disputes_consultant ON disputes (consultant_id);

-- Card disputes (Stripe's `charge.dispute.*`, D5, D6), by the provider's
-- dispute id. `status` is the provider's; `outcome` won or lost once
-- closed (booked in the ledger once). `evidence_submitted_ms`: when the
-- provider accepted our evidence (submitted once, key
-- `evidence:<dispute>`); `evidence_error`: the provider refused it.
-- `opened_notified` / `closed_notified`: the operator's webhook is stored.
CREATE TABLE chargebacks (
    id                    TEXT PRIMARY KEY,
    session_id            TEXT NOT NULL,
    intent_id             TEXT NOT NULL,
    amount_minor          BIGINT NOT NULL,
    currency              TEXT NOT NULL,
    reason                TEXT NOT NULL,
    status                TEXT NOT NULL,
    due_ms                BIGINT,
    evidence_submitted_ms BIGINT,
    evidence_error        TEXT,
    outcome               TEXT CHECK (outcome IN ('won', 'lost')),
    opened_notified       BIGINT NOT NULL DEFAULT 0,
    closed_notified       BIGINT NOT NULL DEFAULT 0,
    created_ms            BIGINT NOT NULL,
    updated_ms            BIGINT NOT NULL
);
CREATE INDEX chargebacks_session ON chargebacks (session_id);
