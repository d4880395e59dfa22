-- Every distinct content of the KPI files that computed figures, numbered like process
-- versions, so that a report can name (and later recompute with) exactly the KPIs it used.
CREATE TABLE kpi_sets (
    hash        TEXT PRIMARY KEY,
    version     BIGINT NOT NULL UNIQUE,
    source      TEXT NOT NULL,            -- JSON: file name → text
    first_seen  BIGINT NOT NULL           -- ms since the epoch, UTC
);
