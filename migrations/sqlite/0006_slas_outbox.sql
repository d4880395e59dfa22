-- SLA records of an instance's SLA timers (JSON array), written with every step.
ALTER TABLE instances ADD COLUMN slas TEXT NOT NULL DEFAULT '[]';

-- The instance's timer clocks, kept with it so a step needs no extra read; the timers
-- table stays the index by due time that nodes claim from. Filled from that table.
ALTER TABLE instances ADD COLUMN timers TEXT NOT NULL DEFAULT '[]';
UPDATE instances SET timers = (
    SELECT json_group_array(CASE WHEN t.paused_left_ms IS NULL
        THEN json_object('name', t.name, 'due_at', t.due_at)
        ELSE json_object('name', t.name, 'due_at', t.due_at, 'paused_left_ms', t.paused_left_ms)
        END)
    FROM timers t WHERE t.instance_id = instances.id)
WHERE id IN (SELECT instance_id FROM timers);

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
