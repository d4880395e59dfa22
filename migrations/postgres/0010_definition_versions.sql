-- Every distinct content of a process gets a number: 1, 2, 3... in the order first seen,
-- so process owners and instances can speak of "version 3" instead of a hash. Versions
-- stored before this migration are numbered in the order they were first seen. Two nodes
-- numbering a new version at once collide on the unique index; the loser numbers again.
ALTER TABLE definitions ADD COLUMN version BIGINT;

UPDATE definitions AS d SET version = n.version
FROM (
    SELECT hash, row_number() OVER (PARTITION BY process ORDER BY first_seen, hash) AS version
    FROM definitions
) AS n
WHERE d.hash = n.hash;

CREATE UNIQUE INDEX definitions_by_process_version ON definitions (process, version);
