-- Checkpoints chain the instances together: each lists the head of every instance's trace
-- chain that changed since the one before (instance, record, hash) and is hashed with the
-- previous checkpoint's hash, so deleting a whole instance that a checkpoint saw is
-- detected by `opsflow verify`.
CREATE TABLE checkpoints (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,      -- ms; instances updated at or after the previous one's
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE checkpoint_entries (
    checkpoint  INTEGER NOT NULL REFERENCES checkpoints (seq),
    instance_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,     -- the instance's last trace record then
    hash        TEXT NOT NULL,        -- that record's hash
    PRIMARY KEY (checkpoint, instance_id)
) WITHOUT ROWID;
