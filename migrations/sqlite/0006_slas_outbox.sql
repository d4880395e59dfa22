-- SLA records of an instance's SLA timers (JSON array), written with every step.
ALTER TABLE instances ADD COLUMN slas TEXT NOT NULL DEFAULT '[]';

-- Notifications raised by steps, one row per webhook, written in the step's transaction
-- and delivered at least once: a node claims due rows for a lease, posts them, and marks
-- them delivered or schedules the next attempt.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,   -- the delivery id receivers de-duplicate on
    instance_id     TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,   -- ms; i64::MAX once delivered
    delivered_at    INTEGER,
    last_error      TEXT,
    claimed_by      TEXT,
    claimed_until   INTEGER
);

CREATE INDEX outbox_by_next_attempt ON outbox (next_attempt_at);
