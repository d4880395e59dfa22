-- Timers of running instances: due at a time, they fire a step as the `system` actor. The
-- step that enters or leaves a timer's states rewrites the instance's timers in the same
-- transaction; `version` records the instance version they were written at.
-- A node claims due timers for a lease; a claim whose node died expires and is taken again.
CREATE TABLE timers (
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    name          TEXT NOT NULL,
    due_at        INTEGER NOT NULL,     -- ms since the epoch, UTC
    paused_left_ms INTEGER,             -- while paused: working time left (due_at is then i64::MAX)
    version       INTEGER NOT NULL,     -- the instance version it was set at
    claimed_by    TEXT,
    claimed_until INTEGER,              -- ms; the claim lapses after this
    PRIMARY KEY (instance_id, name)
) WITHOUT ROWID;

CREATE INDEX timers_by_due ON timers (due_at);
