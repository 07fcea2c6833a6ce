-- API keys (hashed; the token itself is never stored), daily usage per
-- key for quotas, and which key created each asset.

CREATE TABLE api_keys (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	hash       BLOB NOT NULL UNIQUE,
	prefix     TEXT NOT NULL,
	scopes     TEXT NOT NULL,            -- comma-separated
	limits     TEXT NOT NULL DEFAULT '{}', -- JSON store.Limits
	created_at INTEGER NOT NULL,
	revoked_at INTEGER
);

CREATE TABLE key_usage (
	key_id   TEXT NOT NULL,
	day      TEXT NOT NULL,
	bytes    INTEGER NOT NULL DEFAULT 0,
	assets   INTEGER NOT NULL DEFAULT 0,
	ai_units REAL NOT NULL DEFAULT 0,
	PRIMARY KEY (key_id, day)
);

ALTER TABLE assets ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE assets ADD COLUMN visibility TEXT NOT NULL DEFAULT '';
