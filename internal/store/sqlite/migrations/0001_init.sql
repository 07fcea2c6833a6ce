-- Times are unix nanoseconds (UTC); NULL means "not yet".

CREATE TABLE assets (
	id           TEXT PRIMARY KEY,
	name         TEXT NOT NULL DEFAULT '',
	content_type TEXT NOT NULL DEFAULT '',
	bucket       TEXT NOT NULL DEFAULT '',
	object_key   TEXT NOT NULL DEFAULT '',
	size         INTEGER NOT NULL DEFAULT 0,
	etag         TEXT NOT NULL DEFAULT '',
	status       TEXT NOT NULL,
	error        TEXT NOT NULL DEFAULT '',
	media        TEXT CHECK (media IS NULL OR json_valid(media)),
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	uploaded_at  INTEGER
);

-- ListAssets pages newest first, with or without a status filter;
-- ListStalled scans by status and age.
CREATE INDEX assets_created ON assets (created_at, id);
CREATE INDEX assets_status_created ON assets (status, created_at, id);
CREATE INDEX assets_status_updated ON assets (status, updated_at);

CREATE TABLE jobs (
	job_key     TEXT PRIMARY KEY,
	asset_id    TEXT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	status      TEXT NOT NULL,
	error       TEXT NOT NULL DEFAULT '',
	owner       TEXT NOT NULL DEFAULT '',
	lease_until INTEGER,
	claims      INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	finished_at INTEGER
);

-- LatestJob, ListSteps and the live-lease test of ListStalled.
CREATE INDEX jobs_asset_created ON jobs (asset_id, created_at);

CREATE TABLE steps (
	job_key     TEXT NOT NULL REFERENCES jobs (job_key) ON DELETE CASCADE,
	asset_id    TEXT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	name        TEXT NOT NULL,
	status      TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	error       TEXT NOT NULL DEFAULT '',
	started_at  INTEGER,
	finished_at INTEGER,
	duration_ns INTEGER NOT NULL DEFAULT 0,
	-- seq is the order in which the job first started each step; a retry
	-- keeps it.
	seq         INTEGER NOT NULL,
	PRIMARY KEY (job_key, name),
	UNIQUE (job_key, seq)
);

CREATE TABLE outputs (
	asset_id     TEXT NOT NULL REFERENCES assets (id) ON DELETE CASCADE,
	name         TEXT NOT NULL,
	step         TEXT NOT NULL DEFAULT '',
	object_key   TEXT NOT NULL DEFAULT '',
	content_type TEXT NOT NULL DEFAULT '',
	size         INTEGER NOT NULL DEFAULT 0,
	etag         TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (asset_id, name)
);
