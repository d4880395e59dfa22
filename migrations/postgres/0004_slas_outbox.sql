-- SLA records of an instance's SLA timers, written with every step.
ALTER TABLE instances ADD COLUMN slas JSONB NOT NULL DEFAULT '[]';

-- Notifications raised by steps, one row per webhook, written in the step's transaction
-- and delivered at least once: nodes claim due rows with FOR UPDATE SKIP LOCKED for a
-- lease, post them, and mark them delivered or schedule the next attempt.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    instance_id     TEXT NOT NULL,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT,
    claimed_by      TEXT,
    claimed_until   BIGINT
);

CREATE INDEX outbox_by_next_attempt ON outbox (next_attempt_at);
