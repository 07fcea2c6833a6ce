-- Listing one key's assets (--asset-access per-key), newest first.

CREATE INDEX assets_owner ON assets (owner, created_at, id);
