-- SLA records of an instance's SLA timers, written with every step.
ALTER TABLE instances ADD COLUMN slas JSONB NOT NULL DEFAULT '[]';

-- An instance's timer clocks now live on the instance itself, written with every step,
-- and `next_due_at` (its earliest running clock) is the index that nodes claim from with
-- FOR UPDATE SKIP LOCKED: a claim marks the instance for a lease, and any write of it
-- releases the claim. The timers table is folded in and dropped.
ALTER TABLE instances ADD COLUMN timers JSONB NOT NULL DEFAULT '[]';
ALTER TABLE instances ADD COLUMN next_due_at BIGINT;
ALTER TABLE instances ADD COLUMN claimed_by TEXT;
ALTER TABLE instances ADD COLUMN claimed_until BIGINT;
UPDATE instances i SET timers = t.clocks, next_due_at = t.next_due
FROM (SELECT instance_id,
             jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                 'name', name, 'due_at', due_at, 'paused_left_ms', paused_left_ms))) AS clocks,
             MIN(due_at) FILTER (WHERE paused_left_ms IS NULL) AS next_due
      FROM timers GROUP BY instance_id) t
WHERE i.id = t.instance_id;
DROP TABLE timers;
CREATE INDEX instances_by_next_due ON instances (next_due_at) WHERE next_due_at IS NOT NULL;

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
