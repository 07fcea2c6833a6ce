-- AI budget accounts (per asset, per key and day), shared by every
-- worker on this database. Expired accounts read as zero and are purged.

CREATE TABLE ai_spend (
	account       TEXT PRIMARY KEY,
	audio_seconds REAL NOT NULL DEFAULT 0,
	images        INTEGER NOT NULL DEFAULT 0,
	tokens        INTEGER NOT NULL DEFAULT 0,
	expires_at    INTEGER NOT NULL
);

CREATE INDEX ai_spend_expiry ON ai_spend (expires_at);
