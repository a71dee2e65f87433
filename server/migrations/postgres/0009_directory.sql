-- Consultant profiles, the directory's full-text index, and promotions
-- (issue 4). Times are server Unix ms; amounts integer minor units with an
-- ISO 4217 currency. Kept in step with ../sqlite/0009_directory.sql: the
-- tables and columns are the same except the search index (here a
-- generated tsvector column with a GIN index, there an FTS5 table) and
-- SQLite's `profiles.rid`.

-- A consultant's profile. `tags`, `languages` and `session_minutes` are
-- JSON arrays (strings, strings, minutes); tags and languages are also in
-- the two tables below for filtering. Scheduling reads `time_zone` (IANA)
-- and `session_minutes`. `search` weighs name and tags A, headline B and
-- bio D for ts_rank (the tags' JSON text: the parser skips the
-- punctuation).
CREATE TABLE profiles (
    consultant_id   TEXT PRIMARY KEY,
    display_name    TEXT NOT NULL,
    headline        TEXT NOT NULL,
    bio             TEXT NOT NULL,
    tags            TEXT NOT NULL,
    languages       TEXT NOT NULL,
    time_zone       TEXT NOT NULL,
    session_minutes TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    search          TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('english', display_name), 'A') ||
        setweight(to_tsvector('english', tags), 'A') ||
        setweight(to_tsvector('english', headline), 'B') ||
        setweight(to_tsvector('english', bio), 'D')
    ) STORED
);
CREATE INDEX profiles_search ON profiles USING GIN (search);

CREATE TABLE profile_tags (
    consultant_id TEXT NOT NULL,
    tag           TEXT NOT NULL,
    PRIMARY KEY (consultant_id, tag)
);
CREATE INDEX profile_tags_tag ON profile_tags (tag, consultant_id);

CREATE TABLE profile_languages (
    consultant_id TEXT NOT NULL,
    language      TEXT NOT NULL,
    PRIMARY KEY (consultant_id, language)
);
CREATE INDEX profile_languages_language ON profile_languages (language, consultant_id);

-- Promotion purchases (billing/src/promotions.rs). `status`: pending (being
-- charged), paid (a receipt: `intent_id`, `starts_ms`, `ends_ms` set),
-- declined, requires_action, failed. The payment's ledger row has kind
-- `promotion` and the purchase id in `ledger.session_id`.
CREATE TABLE promotion_purchases (
    id            TEXT PRIMARY KEY,
    consultant_id TEXT NOT NULL,
    package_id    TEXT NOT NULL,
    amount_minor  BIGINT NOT NULL CHECK (amount_minor > 0),
    currency      TEXT NOT NULL,
    duration_ms   BIGINT NOT NULL CHECK (duration_ms > 0),
    status        TEXT NOT NULL,
    provider      TEXT NOT NULL,
    intent_id     TEXT,
    error         TEXT,
    starts_ms     BIGINT,
    ends_ms       BIGINT,
    created_ms    BIGINT NOT NULL,
    paid_ms       BIGINT
);
CREATE INDEX promotion_purchases_consultant ON promotion_purchases (consultant_id, created_ms);

-- The end of each consultant's featured placement: they are featured while
-- `until_ms` is in the future (purchased windows are back to back, so the
-- placement began at or before now). One row per consultant, moved by an
-- atomic upsert when a purchase is paid: that is what makes windows stack.
CREATE TABLE featured (
    consultant_id TEXT PRIMARY KEY,
    until_ms      BIGINT NOT NULL
);
