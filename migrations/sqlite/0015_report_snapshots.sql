-- The KPI snapshots of service reports: what the report process's collect step computed,
-- kept by the SHA-256 of the body so that the hash in the report's trace names exactly one.
CREATE TABLE report_snapshots (
    hash        TEXT PRIMARY KEY NOT NULL,
    instance_id TEXT NOT NULL,
    body        TEXT NOT NULL,            -- JSON, as hashed
    created_at  INTEGER NOT NULL          -- ms since the epoch, UTC
);
CREATE INDEX report_snapshots_by_instance ON report_snapshots (instance_id, created_at);
