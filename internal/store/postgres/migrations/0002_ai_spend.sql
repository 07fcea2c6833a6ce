-- AI budget accounts (per asset, per key and day), shared by every
-- worker on this database. Expired accounts read as zero and are purged.

CREATE TABLE ai_spend (
	account       text PRIMARY KEY,
	audio_seconds double precision NOT NULL DEFAULT 0,
	images        bigint NOT NULL DEFAULT 0,
	tokens        bigint NOT NULL DEFAULT 0,
	expires_at    timestamptz NOT NULL
);

CREATE INDEX ai_spend_expiry ON ai_spend (expires_at);
