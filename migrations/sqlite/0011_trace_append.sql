-- The trace becomes an append-only table (rows in the order they were written) with a
-- unique index on (instance_id, seq), instead of a table clustered by (instance_id, seq).
-- Clustered, every commit of concurrent steps on different instances rewrote a large leaf
-- page per instance (and split them often); appended, the records of a commit fill a few
-- pages at the end of the table and only the small index entries go to each instance's
-- place. The index keeps a step number impossible to write twice.
CREATE TABLE trace_appended (
    instance_id     TEXT NOT NULL REFERENCES instances (id),
    seq             INTEGER NOT NULL,
    at              INTEGER NOT NULL,            -- ms since the epoch, UTC
    actor           TEXT NOT NULL,
    roles           TEXT NOT NULL,               -- JSON array
    kind            TEXT NOT NULL,               -- created | transition | automatic | vote | timer | sla
    transition      TEXT,
    from_state      TEXT,
    to_state        TEXT NOT NULL,
    data            TEXT NOT NULL,               -- JSON object: fields written by this step
    comment         TEXT,
    definition_hash TEXT NOT NULL,
    prev_hash       TEXT NOT NULL DEFAULT '',
    hash            TEXT NOT NULL DEFAULT '',
    channel         TEXT NOT NULL DEFAULT 'api',
    detail          TEXT
);

INSERT INTO trace_appended (instance_id, seq, at, actor, roles, kind, transition, from_state,
        to_state, data, comment, definition_hash, prev_hash, hash, channel, detail)
    SELECT instance_id, seq, at, actor, roles, kind, transition, from_state, to_state, data,
           comment, definition_hash, prev_hash, hash, channel, detail
    FROM trace ORDER BY at, instance_id, seq;

DROP TABLE trace;
ALTER TABLE trace_appended RENAME TO trace;
CREATE UNIQUE INDEX trace_by_instance ON trace (instance_id, seq);
