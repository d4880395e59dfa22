-- An instance's trace records are found by following links instead of through the unique
-- index on (instance_id, seq). Each record has a number of its own (`rec_id`, an alias of
-- the rowid, so VACUUM never renumbers it) and names the instance's record before it
-- (`prev_rec_id`); each instance names its last record (`last_rec_id`). In a commit of
-- concurrent steps the index dirtied one leaf page per instance, about a third of the pages
-- such a commit wrote; the links live in rows the commit writes anyway (the new records at
-- the end of the table, the instance rows it updates). The instance's version check keeps
-- a step from being written twice, as it did beside the index.
CREATE TABLE trace_linked (
    rec_id          INTEGER PRIMARY KEY,         -- in the order written; never reused
    prev_rec_id     INTEGER,                     -- the instance's record before (NULL: first)
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

INSERT INTO trace_linked (rec_id, prev_rec_id, instance_id, seq, at, actor, roles, kind,
        transition, from_state, to_state, data, comment, definition_hash, prev_hash, hash,
        channel, detail)
    SELECT t.rowid,
           (SELECT p.rowid FROM trace p WHERE p.instance_id = t.instance_id AND p.seq = t.seq - 1),
           t.instance_id, t.seq, t.at, t.actor, t.roles, t.kind, t.transition, t.from_state,
           t.to_state, t.data, t.comment, t.definition_hash, t.prev_hash, t.hash, t.channel,
           t.detail
    FROM trace t ORDER BY t.rowid;

ALTER TABLE instances ADD COLUMN last_rec_id INTEGER;   -- the instance's last trace record
UPDATE instances SET last_rec_id = (
    SELECT t.rowid FROM trace t WHERE t.instance_id = instances.id ORDER BY t.seq DESC LIMIT 1);

DROP TABLE trace;
ALTER TABLE trace_linked RENAME TO trace;
