-- Moderation may quarantine an asset: its outputs are not delivered until
-- an operator releases it. The reason is kept; empty means not held.

ALTER TABLE assets ADD COLUMN quarantine TEXT NOT NULL DEFAULT '';
