-- opsflow schema, PostgreSQL: the same tables as the SQLite schema (migrations/sqlite),
-- with JSONB for JSON values. An applied migration is never edited.

CREATE TABLE definitions (
    hash        TEXT PRIMARY KEY,
    process     TEXT NOT NULL,
    source      TEXT NOT NULL,            -- JSON bundle: YAML and rule modules
    first_seen  BIGINT NOT NULL           -- ms since the epoch, UTC
);

CREATE TABLE instances (
    id              TEXT PRIMARY KEY,     -- UUID v7: sorts by creation time
    process         TEXT NOT NULL,
    definition_hash TEXT NOT NULL REFERENCES definitions (hash),
    state           TEXT NOT NULL,
    data            JSONB NOT NULL,
    version         BIGINT NOT NULL,      -- number of trace records; optimistic concurrency
    created_by      TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    votes           JSONB NOT NULL DEFAULT '[]'   -- open approval round
);

CREATE INDEX instances_by_process_state ON instances (process, state, id);
CREATE INDEX instances_by_state ON instances (state, id);

-- One row per step, written in the same transaction as the state change.
CREATE TABLE trace (
    instance_id     TEXT NOT NULL REFERENCES instances (id),
    seq             BIGINT NOT NULL,
    at              BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    roles           JSONB NOT NULL,
    kind            TEXT NOT NULL,        -- created | transition | automatic | vote
    transition      TEXT,
    from_state      TEXT,
    to_state        TEXT NOT NULL,
    data            JSONB NOT NULL,
    comment         TEXT,
    definition_hash TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
);

CREATE TABLE links (
    from_id     TEXT NOT NULL REFERENCES instances (id),
    relation    TEXT NOT NULL,
    to_id       TEXT NOT NULL REFERENCES instances (id),
    PRIMARY KEY (from_id, relation, to_id)
);

CREATE INDEX links_by_target ON links (to_id);
