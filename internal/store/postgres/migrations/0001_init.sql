-- The schema store.Store needs, as of sqlite's migrations 0001 to 0005.
-- Times are timestamptz (microseconds); NULL means "not yet". Identifiers
-- and names sort bytewise (COLLATE "C"), as they do in SQLite, so that
-- listings and cursors do not depend on the server's locale.

CREATE TABLE assets (
	id           text COLLATE "C" PRIMARY KEY,
	name         text NOT NULL DEFAULT '',
	content_type text NOT NULL DEFAULT '',
	bucket       text NOT NULL DEFAULT '',
	object_key   text NOT NULL DEFAULT '',
	size         bigint NOT NULL DEFAULT 0,
	etag         text NOT NULL DEFAULT '',
	status       text NOT NULL,
	error        text NOT NULL DEFAULT '',
	media        jsonb,
	created_at   timestamptz NOT NULL,
	updated_at   timestamptz NOT NULL,
	uploaded_at  timestamptz,
	metadata     jsonb,
	pipeline     text NOT NULL DEFAULT '',
	quarantine   text NOT NULL DEFAULT '',
	owner        text NOT NULL DEFAULT '',
	visibility   text NOT NULL DEFAULT ''
);

-- ListAssets pages newest first, with or without a status filter;
-- ListStalled and ListAwaitingUpload scan by status and age.
CREATE INDEX assets_created ON assets (created_at, id);
CREATE INDEX assets_status_created ON assets (status, created_at, id);
CREATE INDEX assets_status_updated ON assets (status, updated_at);

CREATE TABLE jobs (
	job_key     text PRIMARY KEY,
	asset_id    text COLLATE "C" NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	status      text NOT NULL,
	error       text NOT NULL DEFAULT '',
	owner       text NOT NULL DEFAULT '',
	lease_until timestamptz,
	claims      integer NOT NULL DEFAULT 0,
	created_at  timestamptz NOT NULL,
	finished_at timestamptz,
	-- seq orders jobs created at the same instant as they were inserted.
	seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE
);

-- LatestJob, ListSteps and the live-lease test of ListStalled.
CREATE INDEX jobs_asset_created ON jobs (asset_id, created_at DESC, seq DESC);

CREATE TABLE steps (
	job_key     text NOT NULL REFERENCES jobs (job_key) ON DELETE CASCADE,
	asset_id    text COLLATE "C" NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	name        text NOT NULL,
	status      text NOT NULL,
	attempts    integer NOT NULL DEFAULT 0,
	error       text NOT NULL DEFAULT '',
	started_at  timestamptz,
	finished_at timestamptz,
	duration_ns bigint NOT NULL DEFAULT 0,
	-- seq is the order in which steps were first started (a retry keeps
	-- it). One sequence for every job: steps started at once by several
	-- workers need no lock to number themselves.
	seq         bigint GENERATED ALWAYS AS IDENTITY,
	PRIMARY KEY (job_key, name)
);

CREATE INDEX steps_job_seq ON steps (job_key, seq);

CREATE TABLE outputs (
	asset_id     text COLLATE "C" NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	name         text COLLATE "C" NOT NULL,
	step         text NOT NULL DEFAULT '',
	object_key   text NOT NULL DEFAULT '',
	content_type text NOT NULL DEFAULT '',
	size         bigint NOT NULL DEFAULT 0,
	etag         text NOT NULL DEFAULT '',
	created_at   timestamptz NOT NULL,
	PRIMARY KEY (asset_id, name)
);

-- ReplaceOutputs finds a step's outputs.
CREATE INDEX outputs_step ON outputs (asset_id, step);

-- API keys (hashed; the token itself is never stored) and daily usage per
-- key for quotas.
CREATE TABLE api_keys (
	id         text COLLATE "C" PRIMARY KEY,
	name       text NOT NULL,
	hash       bytea NOT NULL UNIQUE,
	prefix     text NOT NULL,
	scopes     text[] NOT NULL DEFAULT '{}',
	limits     jsonb NOT NULL DEFAULT '{}', -- store.Limits
	created_at timestamptz NOT NULL,
	revoked_at timestamptz
);

CREATE TABLE key_usage (
	key_id   text NOT NULL,
	day      text NOT NULL,
	bytes    bigint NOT NULL DEFAULT 0,
	assets   bigint NOT NULL DEFAULT 0,
	ai_units double precision NOT NULL DEFAULT 0,
	PRIMARY KEY (key_id, day)
);

-- Webhook endpoints and the deliveries queued for them. A delivery row
-- is both the durable retry queue and the endpoint's delivery log.
CREATE TABLE webhooks (
	id              text COLLATE "C" PRIMARY KEY,
	url             text NOT NULL,
	owner           text NOT NULL DEFAULT '',
	pipeline        text NOT NULL DEFAULT '',
	events          text[] NOT NULL DEFAULT '{}', -- empty: all
	secret          text NOT NULL,
	created_at      timestamptz NOT NULL,
	disabled_at     timestamptz,
	disabled_reason text NOT NULL DEFAULT ''
);

CREATE TABLE webhook_deliveries (
	id          text COLLATE "C" PRIMARY KEY,
	webhook_id  text COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
	type        text NOT NULL,
	asset_id    text NOT NULL DEFAULT '',
	-- json, not jsonb: the payload is signed, so it keeps its bytes.
	payload     json NOT NULL,
	event_time  timestamptz NOT NULL,
	state       text NOT NULL,
	attempts    integer NOT NULL DEFAULT 0,
	next_at     timestamptz,
	last_status integer NOT NULL DEFAULT 0,
	last_error  text NOT NULL DEFAULT '',
	created_at  timestamptz NOT NULL,
	updated_at  timestamptz NOT NULL
);

-- The dispatcher takes pending deliveries by due time; the log lists an
-- endpoint's newest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at, id);
