package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sluice-media/sluice/internal/store"
)

const outputColumns = `asset_id, name, step, object_key, content_type, size, etag, created_at`

// PutOutput records o, replacing the asset's output of the same name. A
// zero CreatedAt is now; store.ErrNotFound if the asset does not exist.
func (s *Store) PutOutput(ctx context.Context, o store.Output) error {
	if o.Name == "" {
		return fmt.Errorf("sqlite: put output of asset %q: empty name", o.AssetID)
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = utcNow()
	}
	// The WHERE makes an unknown asset insert nothing rather than fail a
	// foreign key, and also disambiguates ON CONFLICT after a SELECT.
	res, err := s.w.ExecContext(ctx, `INSERT INTO outputs (`+outputColumns+`)
		SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM assets WHERE id = ?)
		ON CONFLICT (asset_id, name) DO UPDATE SET
			step = excluded.step, object_key = excluded.object_key,
			content_type = excluded.content_type, size = excluded.size,
			etag = excluded.etag, created_at = excluded.created_at`,
		o.AssetID, o.Name, o.Step, o.Key, o.ContentType, o.Size, o.ETag, o.CreatedAt.UnixNano(), o.AssetID)
	if err == nil {
		err = rowsAffected(res)
	}
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("asset: %w", err)
	}
	if err != nil {
		return fmt.Errorf("sqlite: put output %q of asset %q: %w", o.Name, o.AssetID, err)
	}
	return nil
}

// ListOutputs returns an asset's outputs ordered by name.
func (s *Store) ListOutputs(ctx context.Context, assetID string) ([]store.Output, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+outputColumns+` FROM outputs
		WHERE asset_id = ? ORDER BY name`, assetID)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list outputs of asset %q: %w", assetID, err)
	}
	defer rows.Close()
	outputs := []store.Output{}
	for rows.Next() {
		var (
			o       store.Output
			created sql.NullInt64
		)
		if err := rows.Scan(&o.AssetID, &o.Name, &o.Step, &o.Key, &o.ContentType, &o.Size, &o.ETag, &created); err != nil {
			return nil, fmt.Errorf("sqlite: list outputs of asset %q: %w", assetID, err)
		}
		o.CreatedAt = readTime(created)
		outputs = append(outputs, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list outputs of asset %q: %w", assetID, err)
	}
	return outputs, nil
}

// ReplaceOutputs makes outs the outputs of the asset's step in one
// transaction, and returns the step's former outputs whose keys are not
// among outs.
func (s *Store) ReplaceOutputs(ctx context.Context, assetID, step string, outs []store.Output) ([]store.Output, error) {
	now := utcNow()
	removed := []store.Output{}
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM assets WHERE id = ?)`, assetID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("asset: %w", store.ErrNotFound)
		}
		keep := map[string]bool{}
		for _, o := range outs {
			keep[o.Key] = true
		}
		rows, err := tx.QueryContext(ctx, `DELETE FROM outputs WHERE asset_id = ? AND step = ?
			RETURNING `+outputColumns, assetID, step)
		if err != nil {
			return err
		}
		for rows.Next() {
			var (
				o       store.Output
				created sql.NullInt64
			)
			if err := rows.Scan(&o.AssetID, &o.Name, &o.Step, &o.Key, &o.ContentType, &o.Size, &o.ETag, &created); err != nil {
				rows.Close()
				return err
			}
			o.CreatedAt = readTime(created)
			if !keep[o.Key] {
				removed = append(removed, o)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, o := range outs {
			if o.Name == "" {
				return errors.New("empty output name")
			}
			if o.CreatedAt.IsZero() {
				o.CreatedAt = now
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO outputs (`+outputColumns+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (asset_id, name) DO UPDATE SET
					step = excluded.step, object_key = excluded.object_key,
					content_type = excluded.content_type, size = excluded.size,
					etag = excluded.etag, created_at = excluded.created_at`,
				assetID, o.Name, step, o.Key, o.ContentType, o.Size, o.ETag, o.CreatedAt.UnixNano())
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: replace outputs of step %q of asset %q: %w", step, assetID, err)
	}
	return removed, nil
}
