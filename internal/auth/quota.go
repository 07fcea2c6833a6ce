package auth

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// UsageStore keeps what keys used per day.
type UsageStore interface {
	GetKey(ctx context.Context, id string) (store.Key, error)
	GetUsage(ctx context.Context, keyID, day string) (store.Usage, error)
	AddUsage(ctx context.Context, keyID string, delta store.Usage, limits store.Limits) (store.Usage, error)
}

// AIQuota holds API keys to their daily AI units, counted in the state
// store so that every worker process sees the same account. It is the
// AI gateway's Quota.
type AIQuota struct {
	keys  *Keys
	store UsageStore
	log   *slog.Logger
	now   func() time.Time
}

// NewAIQuota returns the AI units quota of the keys in st.
func NewAIQuota(k *Keys, st UsageStore, log *slog.Logger) *AIQuota {
	return &AIQuota{keys: k, store: st, log: log, now: time.Now}
}

// Allow refuses a call for a key that used its AI units for today.
func (q *AIQuota) Allow(ctx context.Context, keyID string) error {
	k, err := q.store.GetKey(ctx, keyID)
	if err != nil {
		return fmt.Errorf("auth: AI quota of key %s: %w", keyID, err)
	}
	limit := q.keys.Effective(k.Limits).AIUnitsPerDay
	if limit <= 0 {
		return nil
	}
	u, err := q.store.GetUsage(ctx, keyID, store.Day(q.now()))
	if err != nil {
		return fmt.Errorf("auth: AI quota of key %s: %w", keyID, err)
	}
	if u.AIUnits >= limit {
		return fmt.Errorf("%w: API key %s used its %g AI units for today (UTC); reprocess the asset tomorrow to fill this in",
			store.ErrQuotaExceeded, keyID, limit)
	}
	return nil
}

// Charge records units a key's call used. The call was made, so it is
// counted even past the limit (the next call is refused).
func (q *AIQuota) Charge(ctx context.Context, keyID string, units float64) {
	if units <= 0 {
		return
	}
	if _, err := q.store.AddUsage(ctx, keyID, store.Usage{Day: store.Day(q.now()), AIUnits: units}, store.Limits{}); err != nil {
		q.log.Error("auth: record AI units", "key", keyID, "units", units, "err", err)
	}
}
