-- Votes cast on approval transitions in the instance's current state (the open round).
-- Cleared whenever the instance changes state; every vote is also a trace record.
ALTER TABLE instances ADD COLUMN votes TEXT NOT NULL DEFAULT '[]';
