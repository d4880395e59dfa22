-- SLA records of an instance's SLA timers (JSON array), written with every step.
ALTER TABLE instances ADD COLUMN slas TEXT NOT NULL DEFAULT '[]';

-- An instance's timer clocks now live on the instance itself (JSON), written with every
-- step, and `next_due_at` (its earliest running clock) is the index that nodes claim
-- from: a claim marks the instance for a lease, and any write of it releases the claim.
-- The timers table is folded in and dropped.
ALTER TABLE instances ADD COLUMN timers TEXT NOT NULL DEFAULT '[]';
ALTER TABLE instances ADD COLUMN next_due_at INTEGER;
ALTER TABLE instances ADD COLUMN claimed_by TEXT;
ALTER TABLE instances ADD COLUMN claimed_until INTEGER;
UPDATE instances SET
    timers = (
        SELECT json_group_array(CASE WHEN t.paused_left_ms IS NULL
            THEN json_object('name', t.name, 'due_at', t.due_at)
            ELSE json_object('name', t.name, 'due_at', t.due_at, 'paused_left_ms', t.paused_left_ms)
            END)
        FROM timers t WHERE t.instance_id = instances.id),
    next_due_at = (
        SELECT MIN(t.due_at) FROM timers t
        WHERE t.instance_id = instances.id AND t.paused_left_ms IS NULL)
WHERE id IN (SELECT instance_id FROM timers);
DROP TABLE timers;
CREATE INDEX instances_by_next_due ON instances (next_due_at) WHERE next_due_at IS NOT NULL;

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
