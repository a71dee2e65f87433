-- Consultant profiles, the directory's full-text index, and promotions
-- (issue 4). Times are server Unix ms; amounts integer minor units with an
-- ISO 4217 currency. Kept in step with ../postgres/0009_directory.sql: the
-- tables and columns are the same except the search index (here an FTS5
-- table kept in step by triggers, there a generated tsvector column) and
-- `profiles.rid`, the stable rowid FTS5 needs.

-- A consultant's profile. `tags`, `languages` and `session_minutes` are
-- JSON arrays (strings, strings, minutes); tags and languages are also in
-- the two tables below for filtering. Scheduling reads `time_zone` (IANA)
-- and `session_minutes`.
CREATE TABLE profiles (
    rid             INTEGER PRIMARY KEY,
    consultant_id   TEXT NOT NULL UNIQUE,
    display_name    TEXT NOT NULL,
    headline        TEXT NOT NULL,
    bio             TEXT NOT NULL,
    tags            TEXT NOT NULL,
    languages       TEXT NOT NULL,
    time_zone       TEXT NOT NULL,
    session_minutes TEXT NOT NULL,
    updated_ms      BIGINT NOT NULL
);

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

-- Keyword search over name, headline, bio and tags (the JSON text: the
-- tokenizer skips the punctuation), ranked by bm25. An external-content
-- table: the triggers keep it in step inside the profile write's
-- transaction.
CREATE VIRTUAL TABLE profiles_fts USING fts5(
    display_name, headline, bio, tags,
    content = 'profiles', content_rowid = 'rid',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER profiles_fts_insert AFTER INSERT ON profiles BEGIN
    INSERT INTO profiles_fts (rowid, display_name, headline, bio, tags)
    VALUES (new.rid, new.display_name, new.headline, new.bio, new.tags);
END;
CREATE TRIGGER profiles_fts_delete AFTER DELETE ON profiles BEGIN
    INSERT INTO profiles_fts (profiles_fts, rowid, display_name, headline, bio, tags)
    VALUES ('delete', old.rid, old.display_name, old.headline, old.bio, old.tags);
END;
CREATE TRIGGER profiles_fts_update AFTER UPDATE ON profiles BEGIN
    INSERT INTO profiles_fts (profiles_fts, rowid, display_name, headline, bio, tags)
    VALUES ('delete', old.rid, old.display_name, old.headline, old.bio, old.tags);
    INSERT INTO profiles_fts (rowid, display_name, headline, bio, tags)
    VALUES (new.rid, new.display_name, new.headline, new.bio, new.tags);
END;

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
