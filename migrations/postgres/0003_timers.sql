-- Timers of running instances: due at a time, they fire a step as the `system` actor. The
-- step that enters or leaves a timer's states rewrites the instance's timers in the same
-- transaction; `version` records the instance version they were written at.
-- Nodes claim due timers with FOR UPDATE SKIP LOCKED for a lease; a claim whose node died
-- expires and is taken again.
CREATE TABLE timers (
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    name          TEXT NOT NULL,
    due_at        BIGINT NOT NULL,
    paused_left_ms BIGINT,              -- while paused: working time left (due_at is then i64::MAX)
    version       BIGINT NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    PRIMARY KEY (instance_id, name)
);

CREATE INDEX timers_by_due ON timers (due_at);
