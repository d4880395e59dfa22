-- What a trace record holds beyond its fields' new values: the values they had before and
-- the rule decisions the step took; NULL when there is nothing to add.
ALTER TABLE trace ADD COLUMN detail JSONB;
