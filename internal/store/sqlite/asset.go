package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

const assetColumns = `id, name, content_type, bucket, object_key, size, etag,
	status, error, media, created_at, updated_at, uploaded_at, metadata, pipeline, quarantine, owner, visibility`

func scanAsset(sc scanner) (store.Asset, error) {
	var (
		a                          store.Asset
		status                     string
		media, metadata            sql.NullString
		created, updated, uploaded sql.NullInt64
	)
	err := sc.Scan(&a.ID, &a.Name, &a.ContentType, &a.Bucket, &a.Key, &a.Size, &a.ETag,
		&status, &a.Error, &media, &created, &updated, &uploaded, &metadata, &a.Pipeline, &a.Quarantine, &a.Owner, &a.Visibility)
	if err != nil {
		return store.Asset{}, err
	}
	if metadata.Valid {
		if err := json.Unmarshal([]byte(metadata.String), &a.Metadata); err != nil {
			return store.Asset{}, fmt.Errorf("metadata: %w", err)
		}
	}
	a.Status = store.Status(status)
	if media.Valid {
		a.Media = json.RawMessage(media.String)
	}
	a.CreatedAt = readTime(created)
	a.UpdatedAt = readTime(updated)
	a.UploadedAt = readTime(uploaded)
	return a, nil
}

func scanAssets(rows *sql.Rows) ([]store.Asset, error) {
	defer rows.Close()
	assets := []store.Asset{}
	for rows.Next() {
		a, err := scanAsset(rows)
		if err != nil {
			return nil, err
		}
		assets = append(assets, a)
	}
	return assets, rows.Err()
}

// mediaArg is how media is written: NULL when absent.
func mediaArg(m json.RawMessage) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if !json.Valid(m) {
		return nil, errors.New("media is not valid JSON")
	}
	return string(m), nil
}

// CreateAsset inserts a, returning store.ErrConflict if its ID is taken.
// A zero CreatedAt is now, a zero UpdatedAt is CreatedAt, and an empty
// Status is pending.
func (s *Store) CreateAsset(ctx context.Context, a store.Asset) error {
	if a.ID == "" {
		return errors.New("sqlite: create asset: empty id")
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = utcNow()
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	if a.Status == "" {
		a.Status = store.StatusPending
	}
	media, err := mediaArg(a.Media)
	if err != nil {
		return fmt.Errorf("sqlite: create asset %q: %w", a.ID, err)
	}
	var metadata any
	if len(a.Metadata) > 0 {
		b, err := json.Marshal(a.Metadata)
		if err != nil {
			return fmt.Errorf("sqlite: create asset %q: %w", a.ID, err)
		}
		metadata = string(b)
	}
	err = insert(ctx, s.w, `INSERT INTO assets (`+assetColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Name, a.ContentType, a.Bucket, a.Key, a.Size, a.ETag,
		string(a.Status), a.Error, media, a.CreatedAt.UnixNano(), a.UpdatedAt.UnixNano(), nullTime(a.UploadedAt),
		metadata, a.Pipeline, a.Quarantine, a.Owner, a.Visibility)
	if err != nil {
		return fmt.Errorf("sqlite: create asset %q: %w", a.ID, err)
	}
	return nil
}

// DeleteAsset removes an asset; its jobs, steps and outputs go with it
// (foreign keys cascade).
func (s *Store) DeleteAsset(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM assets WHERE id = ?`, id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete asset %q: %w", id, err)
	}
	return nil
}

// GetAsset returns the asset with the given ID or store.ErrNotFound.
func (s *Store) GetAsset(ctx context.Context, id string) (store.Asset, error) {
	a, err := scanAsset(s.r.QueryRowContext(ctx, `SELECT `+assetColumns+` FROM assets WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Asset{}, fmt.Errorf("sqlite: get asset %q: %w", id, err)
	}
	return a, nil
}

// ListAssets pages through assets newest first. The cursor names the last
// asset of the previous page by its position, (created_at, id), so assets
// added between calls neither repeat nor hide others.
func (s *Store) ListAssets(ctx context.Context, opts store.ListOptions) (store.Page, error) {
	n := limit(opts.Limit)
	var (
		conds []string
		args  []any
	)
	if opts.Status != "" {
		conds = append(conds, `status = ?`)
		args = append(args, string(opts.Status))
	}
	if opts.Pipeline != "" {
		conds = append(conds, `pipeline = ?`)
		args = append(args, opts.Pipeline)
	}
	if opts.Name != "" {
		conds = append(conds, `instr(lower(name), lower(?)) > 0`)
		args = append(args, opts.Name)
	}
	if opts.Owner != "" {
		conds = append(conds, `owner = ?`)
		args = append(args, opts.Owner)
	}
	if opts.Cursor != "" {
		created, id, err := decodeCursor(opts.Cursor)
		if err != nil {
			return store.Page{}, fmt.Errorf("sqlite: list assets: %w", err)
		}
		conds = append(conds, `(created_at, id) < (?, ?)`)
		args = append(args, created, id)
	}
	query := `SELECT ` + assetColumns + ` FROM assets`
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	// One more than asked says whether there is a next page.
	args = append(args, n+1)

	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("sqlite: list assets: %w", err)
	}
	assets, err := scanAssets(rows)
	if err != nil {
		return store.Page{}, fmt.Errorf("sqlite: list assets: %w", err)
	}
	var p store.Page
	if len(assets) > n {
		assets = assets[:n]
		last := assets[n-1]
		p.Next = encodeCursor(last.CreatedAt, last.ID)
	}
	p.Assets = assets
	return p, nil
}

// encodeCursor and decodeCursor turn a position in the listing order into
// an opaque string and back.
func encodeCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixNano(), 10) + ":" + id))
}

func decodeCursor(c string) (created int64, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", store.ErrInvalidCursor, err)
	}
	ns, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return 0, "", store.ErrInvalidCursor
	}
	created, err = strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%w: %v", store.ErrInvalidCursor, err)
	}
	return created, id, nil
}

// MarkUploaded records the stored object and returns the asset to pending.
func (s *Store) MarkUploaded(ctx context.Context, id string, obj store.Object) error {
	now := utcNow().UnixNano()
	res, err := s.w.ExecContext(ctx, `UPDATE assets SET
		bucket = ?, object_key = ?, size = ?, etag = ?, content_type = ?,
		uploaded_at = ?, status = ?, error = '', updated_at = ?
		WHERE id = ?`,
		obj.Bucket, obj.Key, obj.Size, obj.ETag, obj.ContentType,
		now, string(store.StatusPending), now, id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: mark asset %q uploaded: %w", id, err)
	}
	return nil
}

// SetAssetStatus sets an asset's status and error.
func (s *Store) SetAssetStatus(ctx context.Context, id string, status store.Status, errMsg string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE assets SET status = ?, error = ?, updated_at = ? WHERE id = ?`,
		string(status), errMsg, utcNow().UnixNano(), id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: set asset %q status: %w", id, err)
	}
	return nil
}

// SetMedia stores the probe summary of an asset; nil clears it.
func (s *Store) SetMedia(ctx context.Context, id string, media json.RawMessage) error {
	m, err := mediaArg(media)
	if err == nil {
		var res sql.Result
		res, err = s.w.ExecContext(ctx, `UPDATE assets SET media = ?, updated_at = ? WHERE id = ?`,
			m, utcNow().UnixNano(), id)
		if err == nil {
			err = rowsAffected(res)
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: set asset %q media: %w", id, err)
	}
	return nil
}

// SetPipeline records the name of the pipeline that processes the asset.
func (s *Store) SetPipeline(ctx context.Context, id, name string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE assets SET pipeline = ? WHERE id = ?`, name, id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: set asset %q pipeline: %w", id, err)
	}
	return nil
}

// SetQuarantine holds the asset's outputs back from delivery, with a
// reason, or releases them (reason "").
func (s *Store) SetQuarantine(ctx context.Context, id, reason string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE assets SET quarantine = ?, updated_at = ? WHERE id = ?`,
		reason, utcNow().UnixNano(), id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: set asset %q quarantine: %w", id, err)
	}
	return nil
}

// ListStalled returns uploaded assets still pending or processing, last
// updated before before, none of whose jobs holds a lease live at now;
// least recently updated first.
func (s *Store) ListStalled(ctx context.Context, now, before time.Time, n int) ([]store.Asset, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+assetColumns+` FROM assets AS a
		WHERE a.uploaded_at IS NOT NULL
		AND a.status IN (?, ?)
		AND a.updated_at < ?
		AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.asset_id = a.id AND j.lease_until > ?)
		ORDER BY a.updated_at, a.id
		LIMIT ?`,
		string(store.StatusPending), string(store.StatusProcessing), instant(before), instant(now), limit(n))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list stalled assets: %w", err)
	}
	assets, err := scanAssets(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list stalled assets: %w", err)
	}
	return assets, nil
}

// ListAwaitingUpload returns pending assets created before before and
// never uploaded, oldest first.
func (s *Store) ListAwaitingUpload(ctx context.Context, before time.Time, n int) ([]store.Asset, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+assetColumns+` FROM assets
		WHERE uploaded_at IS NULL AND status = 'pending' AND created_at < ?
		ORDER BY created_at, id
		LIMIT ?`,
		instant(before), limit(n))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list assets awaiting upload: %w", err)
	}
	assets, err := scanAssets(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list assets awaiting upload: %w", err)
	}
	return assets, nil
}
