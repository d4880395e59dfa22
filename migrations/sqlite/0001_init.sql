-- opsflow schema, SQLite. An applied migration is never edited; later changes get new files.

-- Every version of a process definition that an instance ran under. The source bundle
-- (YAML and rule modules, as JSON) lets a running instance keep its version after the files
-- on disk change.
CREATE TABLE definitions (
    hash        TEXT PRIMARY KEY NOT NULL,
    process     TEXT NOT NULL,
    source      TEXT NOT NULL,
    first_seen  INTEGER NOT NULL          -- ms since the epoch, UTC
);

CREATE TABLE instances (
    id              TEXT PRIMARY KEY NOT NULL,   -- UUID v7: sorts by creation time
    process         TEXT NOT NULL,
    definition_hash TEXT NOT NULL REFERENCES definitions (hash),
    state           TEXT NOT NULL,
    data            TEXT NOT NULL,               -- JSON object
    version         INTEGER NOT NULL,            -- +1 per step; optimistic concurrency
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Listing filters by process and state and pages by id.
CREATE INDEX instances_by_process_state ON instances (process, state, id);
CREATE INDEX instances_by_state ON instances (state, id);

-- One row per step, written in the same transaction as the state change. The primary key
-- makes a step number impossible to write twice.
CREATE TABLE trace (
    instance_id     TEXT NOT NULL REFERENCES instances (id),
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,            -- ms since the epoch, UTC
    actor           TEXT NOT NULL,
    roles           TEXT NOT NULL,               -- JSON array
    kind            TEXT NOT NULL,               -- created | transition | automatic
    transition      TEXT,
    from_state      TEXT,
    to_state        TEXT NOT NULL,
    data            TEXT NOT NULL,               -- JSON object: fields written by this step
    comment         TEXT,
    definition_hash TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
