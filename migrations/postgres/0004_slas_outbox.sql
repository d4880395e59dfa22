-- SLA records of an instance's SLA timers, written with every step.
ALTER TABLE instances ADD COLUMN slas JSONB NOT NULL DEFAULT '[]';

-- The instance's timer clocks, kept with it so a step needs no extra read; the timers
-- table stays the index by due time that nodes claim from. Filled from that table.
ALTER TABLE instances ADD COLUMN timers JSONB NOT NULL DEFAULT '[]';
UPDATE instances i SET timers = t.clocks
FROM (SELECT instance_id, jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
          'name', name, 'due_at', due_at, 'paused_left_ms', paused_left_ms))) AS clocks
      FROM timers GROUP BY instance_id) t
WHERE i.id = t.instance_id;

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
