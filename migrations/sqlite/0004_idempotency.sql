-- The first answer to each request sent with an Idempotency-Key, per caller, so a retry
-- gets the same answer and writes nothing. Written in the same transaction as the step.
-- Rows older than the configured time are purged.
CREATE TABLE idempotency_keys (
    actor       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,      -- SHA-256 of method, path and body
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,      -- the answer's JSON body
    created_at  INTEGER NOT NULL,   -- ms since the epoch, UTC
    PRIMARY KEY (actor, key)
) WITHOUT ROWID;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
