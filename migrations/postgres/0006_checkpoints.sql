-- Checkpoints chain the instances together: each lists the head of every instance's trace
-- chain that changed since the one before (instance, record, hash) and is hashed with the
-- previous checkpoint's hash, so deleting a whole instance that a checkpoint saw is
-- detected by `opsflow verify`.
CREATE TABLE checkpoints (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);

CREATE TABLE checkpoint_entries (
    checkpoint  BIGINT NOT NULL REFERENCES checkpoints (seq),
    instance_id TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (checkpoint, instance_id)
);
