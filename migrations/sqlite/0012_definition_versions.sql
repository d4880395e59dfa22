-- Every distinct content of a process gets a number: 1, 2, 3... in the order first seen,
-- so process owners and instances can speak of "version 3" instead of a hash. Versions
-- stored before this migration are numbered in the order they were first seen.
ALTER TABLE definitions ADD COLUMN version INTEGER;

UPDATE definitions SET version = (
    SELECT COUNT(*) FROM definitions AS d
    WHERE d.process = definitions.process
      AND (d.first_seen < definitions.first_seen
           OR (d.first_seen = definitions.first_seen AND d.hash <= definitions.hash))
);

CREATE UNIQUE INDEX definitions_by_process_version ON definitions (process, version);
