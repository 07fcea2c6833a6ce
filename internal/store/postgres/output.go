package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
)

const outputColumns = `asset_id, name, step, object_key, content_type, size, etag, created_at`

// upsertOutput writes one output, replacing the asset's output of the
// same name.
const upsertOutput = `INSERT INTO outputs (` + outputColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
	ON CONFLICT (asset_id, name) DO UPDATE SET
		step = excluded.step, object_key = excluded.object_key,
		content_type = excluded.content_type, size = excluded.size,
		etag = excluded.etag, created_at = excluded.created_at`

func scanOutput(sc scanner) (store.Output, error) {
	var o store.Output
	err := sc.Scan(&o.AssetID, &o.Name, &o.Step, &o.Key, &o.ContentType, &o.Size, &o.ETag, &o.CreatedAt)
	return o, err
}

// PutOutput records o, replacing the asset's output of the same name. A
// zero CreatedAt is now; store.ErrNotFound if the asset does not exist.
func (s *Store) PutOutput(ctx context.Context, o store.Output) error {
	if o.Name == "" {
		return fmt.Errorf("postgres: put output of asset %q: empty name", o.AssetID)
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = utcNow()
	}
	_, err := s.pool.Exec(ctx, upsertOutput,
		o.AssetID, o.Name, o.Step, o.Key, o.ContentType, o.Size, o.ETag, o.CreatedAt)
	if isCode(err, foreignKeyViolation) {
		err = fmt.Errorf("asset: %w", store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("postgres: put output %q of asset %q: %w", o.Name, o.AssetID, err)
	}
	return nil
}

// ListOutputs returns an asset's outputs ordered by name.
func (s *Store) ListOutputs(ctx context.Context, assetID string) ([]store.Output, error) {
	outputs, err := list(ctx, s.pool, scanOutput, `SELECT `+outputColumns+` FROM outputs
		WHERE asset_id = $1 ORDER BY name`, assetID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list outputs of asset %q: %w", assetID, err)
	}
	return outputs, nil
}

// ReplaceOutputs makes outs the outputs of the asset's step in one
// transaction, and returns the step's former outputs whose keys are not
// among outs, ordered by name. It locks the asset's row first, so that two runs replacing
// the same asset's outputs take turns.
func (s *Store) ReplaceOutputs(ctx context.Context, assetID, step string, outs []store.Output) ([]store.Output, error) {
	for _, o := range outs {
		if o.Name == "" {
			return nil, fmt.Errorf("postgres: replace outputs of step %q of asset %q: empty output name", step, assetID)
		}
	}
	now := utcNow()
	keep := map[string]bool{}
	for _, o := range outs {
		keep[o.Key] = true
	}
	var removed []store.Output
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM assets WHERE id = $1 FOR NO KEY UPDATE`, assetID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("asset: %w", store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		old, err := list(ctx, tx, scanOutput, `WITH old AS (
				DELETE FROM outputs WHERE asset_id = $1 AND step = $2 RETURNING `+outputColumns+`
			) SELECT `+outputColumns+` FROM old ORDER BY name`, assetID, step)
		if err != nil {
			return err
		}
		removed = []store.Output{}
		for _, o := range old {
			if !keep[o.Key] {
				removed = append(removed, o)
			}
		}
		for _, o := range outs {
			if o.CreatedAt.IsZero() {
				o.CreatedAt = now
			}
			_, err := tx.Exec(ctx, upsertOutput,
				assetID, o.Name, step, o.Key, o.ContentType, o.Size, o.ETag, o.CreatedAt)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: replace outputs of step %q of asset %q: %w", step, assetID, err)
	}
	return removed, nil
}
