-- Timers of running instances: due at a time, they fire a step as the `system` actor. A
-- timer belongs to the instance version it was set at; any later step of the instance
-- replaces the instance's timers, so a timer never fires on a state it was not set for.
-- A node claims due timers for a lease; a claim whose node died expires and is taken again.
CREATE TABLE timers (
    instance_id   TEXT NOT NULL REFERENCES instances (id),
    name          TEXT NOT NULL,
    due_at        INTEGER NOT NULL,     -- ms since the epoch, UTC
    version       INTEGER NOT NULL,     -- the instance version it was set at
    claimed_by    TEXT,
    claimed_until INTEGER,              -- ms; the claim lapses after this
    PRIMARY KEY (instance_id, name)
) WITHOUT ROWID;

CREATE INDEX timers_by_due ON timers (due_at);
