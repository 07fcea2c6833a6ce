-- Pipelines as configuration: assets carry metadata (matched by
-- pipelines) and the name of the pipeline that processed them.

ALTER TABLE assets ADD COLUMN metadata TEXT CHECK (metadata IS NULL OR json_valid(metadata));
ALTER TABLE assets ADD COLUMN pipeline TEXT NOT NULL DEFAULT '';

-- ReplaceOutputs finds a step's outputs.
CREATE INDEX outputs_step ON outputs (asset_id, step);
