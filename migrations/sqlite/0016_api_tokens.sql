-- Bearer tokens made by `opsflow token create`: only the SHA-256 of each is kept, so the
-- database never holds one that could be used. Revoked and expired ones stay, for the record.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY NOT NULL,   -- public: names the token in lists and revocation
    digest      TEXT NOT NULL UNIQUE,        -- SHA-256 (hex) of the token
    actor       TEXT NOT NULL,
    roles       TEXT NOT NULL,               -- JSON array
    created_at  INTEGER NOT NULL,            -- ms since the epoch, UTC
    expires_at  INTEGER,
    revoked_at  INTEGER
);
