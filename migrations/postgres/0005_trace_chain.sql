-- The hash chain of each instance's trace: every record carries the SHA-256 of its
-- canonical form and the hash of the record before it; the instance keeps the hash of its
-- last record. Records written before this migration have none (`opsflow verify` names
-- them as unhashed).
ALTER TABLE trace ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE trace ADD COLUMN hash TEXT NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN trace_hash TEXT NOT NULL DEFAULT '';
