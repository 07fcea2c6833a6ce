package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

const keyColumns = `id, name, hash, prefix, scopes, limits, created_at, revoked_at`

func scanKey(sc scanner) (store.Key, error) {
	var (
		k              store.Key
		scopes, limits string
		created        int64
		revoked        sql.NullInt64
	)
	if err := sc.Scan(&k.ID, &k.Name, &k.Hash, &k.Prefix, &scopes, &limits, &created, &revoked); err != nil {
		return store.Key{}, err
	}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	if err := json.Unmarshal([]byte(limits), &k.Limits); err != nil {
		return store.Key{}, fmt.Errorf("limits: %w", err)
	}
	k.CreatedAt = time.Unix(0, created).UTC()
	k.RevokedAt = readTime(revoked)
	return k, nil
}

// CreateKey stores a new API key.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	if k.ID == "" || len(k.Hash) == 0 {
		return errors.New("sqlite: create key: empty id or hash")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = utcNow()
	}
	limits, err := json.Marshal(k.Limits)
	if err != nil {
		return err
	}
	err = insert(ctx, s.w, `INSERT INTO api_keys (`+keyColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		k.ID, k.Name, k.Hash, k.Prefix, strings.Join(k.Scopes, ","), string(limits),
		k.CreatedAt.UnixNano(), nullTime(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("sqlite: create key %q: %w", k.ID, err)
	}
	return nil
}

// KeyByHash returns the key with the given token hash.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (store.Key, error) {
	k, err := scanKey(s.r.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("sqlite: key by hash: %w", err)
	}
	return k, nil
}

// ListKeys returns every key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.Key, error) {
	keys, err := list(ctx, s.r, scanKey, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list keys: %w", err)
	}
	return keys, nil
}

// RevokeKey marks a key revoked, keeping the first revocation time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?`,
		at.UTC().UnixNano(), id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke key %q: %w", id, err)
	}
	return nil
}

// AddUsage adds delta to a key's day unless that exceeds limits.
func (s *Store) AddUsage(ctx context.Context, keyID string, delta store.Usage, limits store.Limits) (store.Usage, error) {
	var u store.Usage
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		var err error
		if u, err = getUsage(ctx, tx, keyID, delta.Day); err != nil {
			return err
		}
		next := store.Usage{Day: delta.Day, Bytes: u.Bytes + delta.Bytes, Assets: u.Assets + delta.Assets, AIUnits: u.AIUnits + delta.AIUnits}
		// Only the counters the delta raises are checked: a key at its
		// byte quota may still record AI units for work already queued.
		check := store.Limits{}
		if delta.Bytes > 0 {
			check.BytesPerDay = limits.BytesPerDay
		}
		if delta.Assets > 0 {
			check.AssetsPerDay = limits.AssetsPerDay
		}
		if delta.AIUnits > 0 {
			check.AIUnitsPerDay = limits.AIUnitsPerDay
		}
		if what := next.Exceeds(check); what != "" {
			return fmt.Errorf("%w: %s per day", store.ErrQuotaExceeded, what)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO key_usage (key_id, day, bytes, assets, ai_units)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (key_id, day) DO UPDATE SET bytes = excluded.bytes, assets = excluded.assets, ai_units = excluded.ai_units`,
			keyID, delta.Day, next.Bytes, next.Assets, next.AIUnits)
		u = next
		return err
	})
	if err != nil && !errors.Is(err, store.ErrQuotaExceeded) {
		return store.Usage{}, fmt.Errorf("sqlite: add usage of key %q: %w", keyID, err)
	}
	return u, err
}

// GetUsage returns a key's usage on one day.
func (s *Store) GetUsage(ctx context.Context, keyID, day string) (store.Usage, error) {
	u, err := getUsage(ctx, s.r, keyID, day)
	if err != nil {
		return store.Usage{}, fmt.Errorf("sqlite: get usage of key %q: %w", keyID, err)
	}
	return u, nil
}

func getUsage(ctx context.Context, q querier, keyID, day string) (store.Usage, error) {
	u := store.Usage{Day: day}
	err := q.QueryRowContext(ctx, `SELECT bytes, assets, ai_units FROM key_usage WHERE key_id = ? AND day = ?`,
		keyID, day).Scan(&u.Bytes, &u.Assets, &u.AIUnits)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return u, err
}

// GetKey returns the key with the given id.
func (s *Store) GetKey(ctx context.Context, id string) (store.Key, error) {
	k, err := scanKey(s.r.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("sqlite: get key %q: %w", id, err)
	}
	return k, nil
}

// AddSpend adds to an AI budget account within its limit.
func (s *Store) AddSpend(ctx context.Context, account string, delta, limit store.Spend, now, expires time.Time) (store.Spend, error) {
	var cur store.Spend
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM ai_spend WHERE expires_at < ?`, now.UnixNano()); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `SELECT audio_seconds, images, tokens FROM ai_spend WHERE account = ?`, account).
			Scan(&cur.AudioSeconds, &cur.Images, &cur.Tokens)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if what := cur.Exceeds(delta, limit); what != "" {
			return fmt.Errorf("%w: %s", store.ErrQuotaExceeded, what)
		}
		cur = cur.Add(delta)
		_, err = tx.ExecContext(ctx, `INSERT INTO ai_spend (account, audio_seconds, images, tokens, expires_at)
			VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (account) DO UPDATE SET audio_seconds = excluded.audio_seconds, images = excluded.images,
				tokens = excluded.tokens, expires_at = excluded.expires_at`,
			account, cur.AudioSeconds, cur.Images, cur.Tokens, expires.UnixNano())
		return err
	})
	if err != nil && !errors.Is(err, store.ErrQuotaExceeded) {
		return store.Spend{}, fmt.Errorf("sqlite: add to AI budget account %q: %w", account, err)
	}
	return cur, err
}
