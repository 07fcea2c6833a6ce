package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
)

const assetColumns = `id, name, content_type, bucket, object_key, size, etag,
	status, error, media, created_at, updated_at, uploaded_at, metadata, pipeline, quarantine, owner, visibility`

func scanAsset(sc scanner) (store.Asset, error) {
	var (
		a               store.Asset
		status          string
		media, metadata []byte
		uploaded        *time.Time
	)
	err := sc.Scan(&a.ID, &a.Name, &a.ContentType, &a.Bucket, &a.Key, &a.Size, &a.ETag,
		&status, &a.Error, &media, &a.CreatedAt, &a.UpdatedAt, &uploaded, &metadata,
		&a.Pipeline, &a.Quarantine, &a.Owner, &a.Visibility)
	if err != nil {
		return store.Asset{}, err
	}
	if metadata != nil {
		if err := json.Unmarshal(metadata, &a.Metadata); err != nil {
			return store.Asset{}, fmt.Errorf("metadata: %w", err)
		}
	}
	a.Status = store.Status(status)
	if media != nil {
		a.Media = json.RawMessage(media)
	}
	a.UploadedAt = readTime(uploaded)
	return a, nil
}

// jsonArg is how a JSON document is written: NULL when absent.
func jsonArg(m json.RawMessage) (any, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if !json.Valid(m) {
		return nil, errors.New("not valid JSON")
	}
	return string(m), nil
}

// CreateAsset inserts a, returning store.ErrConflict if its ID is taken.
// A zero CreatedAt is now, a zero UpdatedAt is CreatedAt, and an empty
// Status is pending.
func (s *Store) CreateAsset(ctx context.Context, a store.Asset) error {
	if a.ID == "" {
		return errors.New("postgres: create asset: empty id")
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
	media, err := jsonArg(a.Media)
	if err != nil {
		return fmt.Errorf("postgres: create asset %q: media: %w", a.ID, err)
	}
	var metadata any
	if len(a.Metadata) > 0 {
		b, err := json.Marshal(a.Metadata)
		if err != nil {
			return fmt.Errorf("postgres: create asset %q: %w", a.ID, err)
		}
		metadata = string(b)
	}
	err = insert(ctx, s.pool, `INSERT INTO assets (`+assetColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
		ON CONFLICT (id) DO NOTHING`,
		a.ID, a.Name, a.ContentType, a.Bucket, a.Key, a.Size, a.ETag,
		string(a.Status), a.Error, media, a.CreatedAt, a.UpdatedAt, nullTime(a.UploadedAt),
		metadata, a.Pipeline, a.Quarantine, a.Owner, a.Visibility)
	if err != nil {
		return fmt.Errorf("postgres: create asset %q: %w", a.ID, err)
	}
	return nil
}

// DeleteAsset removes an asset; its jobs, steps and outputs go with it
// (foreign keys cascade).
func (s *Store) DeleteAsset(ctx context.Context, id string) error {
	if err := exec(ctx, s.pool, `DELETE FROM assets WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete asset %q: %w", id, err)
	}
	return nil
}

// GetAsset returns the asset with the given ID or store.ErrNotFound.
func (s *Store) GetAsset(ctx context.Context, id string) (store.Asset, error) {
	a, err := scanAsset(s.pool.QueryRow(ctx, `SELECT `+assetColumns+` FROM assets WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Asset{}, fmt.Errorf("postgres: get asset %q: %w", id, err)
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
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if opts.Status != "" {
		conds = append(conds, `status = `+arg(string(opts.Status)))
	}
	if opts.Pipeline != "" {
		conds = append(conds, `pipeline = `+arg(opts.Pipeline))
	}
	if opts.Name != "" {
		conds = append(conds, `strpos(lower(name), lower(`+arg(opts.Name)+`)) > 0`)
	}
	if opts.Owner != "" {
		conds = append(conds, `owner = `+arg(opts.Owner))
	}
	if opts.Cursor != "" {
		created, id, err := decodeCursor(opts.Cursor)
		if err != nil {
			return store.Page{}, fmt.Errorf("postgres: list assets: %w", err)
		}
		conds = append(conds, `(created_at, id) < (`+arg(created)+`, `+arg(id)+`)`)
	}
	query := `SELECT ` + assetColumns + ` FROM assets`
	if len(conds) > 0 {
		query += ` WHERE ` + strings.Join(conds, ` AND `)
	}
	// One more than asked says whether there is a next page.
	query += ` ORDER BY created_at DESC, id DESC LIMIT ` + arg(n+1)

	assets, err := list(ctx, s.pool, scanAsset, query, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("postgres: list assets: %w", err)
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
// an opaque string and back. The time is in microseconds, the precision
// it is stored with.
func encodeCursor(created time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(created.UnixMicro(), 10) + ":" + id))
}

func decodeCursor(c string) (created time.Time, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %v", store.ErrInvalidCursor, err)
	}
	us, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return time.Time{}, "", store.ErrInvalidCursor
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return time.Time{}, "", fmt.Errorf("%w: %v", store.ErrInvalidCursor, err)
	}
	created = time.UnixMicro(n).UTC()
	if y := created.Year(); y < 1 || y > 9999 {
		return time.Time{}, "", fmt.Errorf("%w: time out of range", store.ErrInvalidCursor)
	}
	return created, id, nil
}

// update runs an UPDATE of one asset; store.ErrNotFound if there is none.
func (s *Store) update(ctx context.Context, what, id, query string, args ...any) error {
	if err := exec(ctx, s.pool, query, args...); err != nil {
		return fmt.Errorf("postgres: %s of asset %q: %w", what, id, err)
	}
	return nil
}

// MarkUploaded records the stored object and returns the asset to pending.
func (s *Store) MarkUploaded(ctx context.Context, id string, obj store.Object) error {
	now := utcNow()
	return s.update(ctx, "mark uploaded", id, `UPDATE assets SET
		bucket = $1, object_key = $2, size = $3, etag = $4, content_type = $5,
		uploaded_at = $6, status = $7, error = '', updated_at = $6
		WHERE id = $8`,
		obj.Bucket, obj.Key, obj.Size, obj.ETag, obj.ContentType,
		now, string(store.StatusPending), id)
}

// SetAssetStatus sets an asset's status and error.
func (s *Store) SetAssetStatus(ctx context.Context, id string, status store.Status, errMsg string) error {
	return s.update(ctx, "set status", id, `UPDATE assets SET status = $1, error = $2, updated_at = $3 WHERE id = $4`,
		string(status), errMsg, utcNow(), id)
}

// SetMedia stores the probe summary of an asset; nil clears it.
func (s *Store) SetMedia(ctx context.Context, id string, media json.RawMessage) error {
	m, err := jsonArg(media)
	if err != nil {
		return fmt.Errorf("postgres: set media of asset %q: %w", id, err)
	}
	return s.update(ctx, "set media", id, `UPDATE assets SET media = $1, updated_at = $2 WHERE id = $3`,
		m, utcNow(), id)
}

// SetPipeline records the name of the pipeline that processes the asset.
func (s *Store) SetPipeline(ctx context.Context, id, name string) error {
	return s.update(ctx, "set pipeline", id, `UPDATE assets SET pipeline = $1 WHERE id = $2`, name, id)
}

// SetQuarantine holds the asset's outputs back from delivery, with a
// reason, or releases them (reason "").
func (s *Store) SetQuarantine(ctx context.Context, id, reason string) error {
	return s.update(ctx, "set quarantine", id, `UPDATE assets SET quarantine = $1, updated_at = $2 WHERE id = $3`,
		reason, utcNow(), id)
}

// ListStalled returns uploaded assets still pending or processing, last
// updated before before, none of whose jobs holds a lease live at now;
// least recently updated first.
func (s *Store) ListStalled(ctx context.Context, now, before time.Time, n int) ([]store.Asset, error) {
	assets, err := list(ctx, s.pool, scanAsset, `SELECT `+assetColumns+` FROM assets AS a
		WHERE a.uploaded_at IS NOT NULL
		AND a.status IN ($1, $2)
		AND a.updated_at < $3
		AND NOT EXISTS (SELECT 1 FROM jobs AS j WHERE j.asset_id = a.id AND j.lease_until > $4)
		ORDER BY a.updated_at, a.id
		LIMIT $5`,
		string(store.StatusPending), string(store.StatusProcessing), before, now, limit(n))
	if err != nil {
		return nil, fmt.Errorf("postgres: list stalled assets: %w", err)
	}
	return assets, nil
}

// ListAwaitingUpload returns pending assets created before before and
// never uploaded, oldest first.
func (s *Store) ListAwaitingUpload(ctx context.Context, before time.Time, n int) ([]store.Asset, error) {
	assets, err := list(ctx, s.pool, scanAsset, `SELECT `+assetColumns+` FROM assets
		WHERE uploaded_at IS NULL AND status = $1 AND created_at < $2
		ORDER BY created_at, id
		LIMIT $3`,
		string(store.StatusPending), before, limit(n))
	if err != nil {
		return nil, fmt.Errorf("postgres: list assets awaiting upload: %w", err)
	}
	return assets, nil
}
