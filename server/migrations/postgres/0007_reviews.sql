-- Reviews (issue 4): one per completed session, written by its seeker
-- (1-5 stars and text), with at most one reply by its consultant.
-- Reputation is the Bayesian average of `stars` per consultant
-- (domain::reputation). Times are server Unix ms. Kept in step with the
-- other backend's 0007_reviews.sql.
CREATE TABLE reviews (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL UNIQUE,
    seeker_id     TEXT NOT NULL,
    consultant_id TEXT NOT NULL,
    stars         BIGINT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    text          TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    reply_text    TEXT,
    reply_ms      BIGINT
);
CREATE INDEX reviews_consultant ON reviews (consultant_id, created_ms);
