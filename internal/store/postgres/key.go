package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
)

const keyColumns = `id, name, hash, prefix, scopes, limits, created_at, revoked_at`

func scanKey(sc scanner) (store.Key, error) {
	var (
		k       store.Key
		limits  []byte
		revoked *time.Time
	)
	if err := sc.Scan(&k.ID, &k.Name, &k.Hash, &k.Prefix, &k.Scopes, &limits, &k.CreatedAt, &revoked); err != nil {
		return store.Key{}, err
	}
	k.Scopes = strs(k.Scopes)
	if err := json.Unmarshal(limits, &k.Limits); err != nil {
		return store.Key{}, fmt.Errorf("limits: %w", err)
	}
	k.RevokedAt = readTime(revoked)
	return k, nil
}

// CreateKey stores a new API key; store.ErrConflict if its id or hash is
// taken.
func (s *Store) CreateKey(ctx context.Context, k store.Key) error {
	if k.ID == "" || len(k.Hash) == 0 {
		return errors.New("postgres: create key: empty id or hash")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = utcNow()
	}
	limits, err := json.Marshal(k.Limits)
	if err != nil {
		return fmt.Errorf("postgres: create key %q: %w", k.ID, err)
	}
	// With no conflict target, DO NOTHING covers both unique columns.
	err = insert(ctx, s.pool, `INSERT INTO api_keys (`+keyColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
		k.ID, k.Name, k.Hash, k.Prefix, nonNil(k.Scopes), string(limits), k.CreatedAt, nullTime(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("postgres: create key %q: %w", k.ID, err)
	}
	return nil
}

// nonNil is how a list is written to a NOT NULL array column.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// KeyByHash returns the key with the given token hash.
func (s *Store) KeyByHash(ctx context.Context, hash []byte) (store.Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("postgres: key by hash: %w", err)
	}
	return k, nil
}

// GetKey returns the key with the given id.
func (s *Store) GetKey(ctx context.Context, id string) (store.Key, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Key{}, fmt.Errorf("postgres: get key %q: %w", id, err)
	}
	return k, nil
}

// ListKeys returns every key, oldest first.
func (s *Store) ListKeys(ctx context.Context) ([]store.Key, error) {
	keys, err := list(ctx, s.pool, scanKey, `SELECT `+keyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list keys: %w", err)
	}
	return keys, nil
}

// RevokeKey marks a key revoked, keeping the first revocation time.
func (s *Store) RevokeKey(ctx context.Context, id string, at time.Time) error {
	err := exec(ctx, s.pool, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2`, at, id)
	if err != nil {
		return fmt.Errorf("postgres: revoke key %q: %w", id, err)
	}
	return nil
}

// AddUsage adds delta to a key's day unless that exceeds limits. The day's
// row is created if needed and locked before the check, so concurrent
// calls for the same key and day check one after another.
func (s *Store) AddUsage(ctx context.Context, keyID string, delta store.Usage, limits store.Limits) (store.Usage, error) {
	var u store.Usage
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO key_usage (key_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			keyID, delta.Day)
		if err != nil {
			return err
		}
		u = store.Usage{Day: delta.Day}
		err = tx.QueryRow(ctx, `SELECT bytes, assets, ai_units FROM key_usage
			WHERE key_id = $1 AND day = $2 FOR UPDATE`,
			keyID, delta.Day).Scan(&u.Bytes, &u.Assets, &u.AIUnits)
		if err != nil {
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
		_, err = tx.Exec(ctx, `UPDATE key_usage SET bytes = $1, assets = $2, ai_units = $3
			WHERE key_id = $4 AND day = $5`,
			next.Bytes, next.Assets, next.AIUnits, keyID, delta.Day)
		u = next
		return err
	})
	if err != nil && !errors.Is(err, store.ErrQuotaExceeded) {
		return store.Usage{}, fmt.Errorf("postgres: add usage of key %q: %w", keyID, err)
	}
	return u, err
}

// GetUsage returns a key's usage on one day.
func (s *Store) GetUsage(ctx context.Context, keyID, day string) (store.Usage, error) {
	u := store.Usage{Day: day}
	err := s.pool.QueryRow(ctx, `SELECT bytes, assets, ai_units FROM key_usage WHERE key_id = $1 AND day = $2`,
		keyID, day).Scan(&u.Bytes, &u.Assets, &u.AIUnits)
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err != nil {
		return store.Usage{}, fmt.Errorf("postgres: get usage of key %q: %w", keyID, err)
	}
	return u, nil
}

// AddSpend adds to an AI budget account within its limit, holding the
// account's row locked from the check to the update.
func (s *Store) AddSpend(ctx context.Context, account string, delta, limit store.Spend, now, expires time.Time) (store.Spend, error) {
	var cur store.Spend
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		// Purge expired accounts, skipping any another transaction holds.
		if _, err := tx.Exec(ctx, `DELETE FROM ai_spend WHERE account IN (
			SELECT account FROM ai_spend WHERE expires_at < $1 LIMIT 100 FOR UPDATE SKIP LOCKED)`, now); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO ai_spend (account, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
			account, expires)
		if err != nil {
			return err
		}
		var exp time.Time
		err = tx.QueryRow(ctx, `SELECT audio_seconds, images, tokens, expires_at FROM ai_spend WHERE account = $1 FOR UPDATE`,
			account).Scan(&cur.AudioSeconds, &cur.Images, &cur.Tokens, &exp)
		if err != nil {
			return err
		}
		if exp.Before(now) {
			cur = store.Spend{}
		}
		if what := cur.Exceeds(delta, limit); what != "" {
			return fmt.Errorf("%w: %s", store.ErrQuotaExceeded, what)
		}
		cur = cur.Add(delta)
		_, err = tx.Exec(ctx, `UPDATE ai_spend SET audio_seconds = $1, images = $2, tokens = $3, expires_at = $4
			WHERE account = $5`, cur.AudioSeconds, cur.Images, cur.Tokens, expires, account)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrQuotaExceeded) {
		return store.Spend{}, fmt.Errorf("postgres: add to AI budget account %q: %w", account, err)
	}
	return cur, err
}
