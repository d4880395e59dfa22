-- Links between instances (an event's problem, a problem's change, a release's changes).
-- The source instance holds the link in a `link`/`links` field named by `relation`; this
-- table is the index that answers "who links to me" and lets rules read linked states.
CREATE TABLE links (
    from_id     TEXT NOT NULL REFERENCES instances (id),
    relation    TEXT NOT NULL,
    to_id       TEXT NOT NULL REFERENCES instances (id),
    PRIMARY KEY (from_id, relation, to_id)
) WITHOUT ROWID;

CREATE INDEX links_by_target ON links (to_id);
