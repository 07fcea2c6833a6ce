-- After a rotation an endpoint's previous secret also signs, for a while,
-- so that receivers can switch over.

ALTER TABLE webhooks ADD COLUMN previous_secret TEXT NOT NULL DEFAULT '';
ALTER TABLE webhooks ADD COLUMN previous_until INTEGER;
