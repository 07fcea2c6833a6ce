-- Webhook endpoints and the deliveries queued for them. A delivery row
-- is both the durable retry queue and the endpoint's delivery log.

CREATE TABLE webhooks (
	id              TEXT PRIMARY KEY,
	url             TEXT NOT NULL,
	owner           TEXT NOT NULL DEFAULT '',
	pipeline        TEXT NOT NULL DEFAULT '',
	events          TEXT NOT NULL DEFAULT '', -- comma-separated; empty: all
	secret          TEXT NOT NULL,
	created_at      INTEGER NOT NULL,
	disabled_at     INTEGER,
	disabled_reason TEXT NOT NULL DEFAULT ''
);

CREATE TABLE webhook_deliveries (
	id          TEXT PRIMARY KEY,
	webhook_id  TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	type        TEXT NOT NULL,
	asset_id    TEXT NOT NULL DEFAULT '',
	payload     TEXT NOT NULL CHECK (json_valid(payload)),
	event_time  INTEGER NOT NULL,
	state       TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_at     INTEGER,
	last_status INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
);

-- The dispatcher takes pending deliveries by due time; the log lists an
-- endpoint's newest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_at);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at);
