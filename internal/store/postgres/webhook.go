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

const webhookColumns = `id, url, owner, pipeline, events, secret, previous_secret, previous_until, created_at,
	disabled_at, disabled_reason`

func scanWebhook(sc scanner) (store.Webhook, error) {
	var (
		w        store.Webhook
		disabled *time.Time
		previous *time.Time
	)
	if err := sc.Scan(&w.ID, &w.URL, &w.Owner, &w.Pipeline, &w.Events, &w.Secret, &w.PreviousSecret, &previous,
		&w.CreatedAt, &disabled, &w.DisabledReason); err != nil {
		return store.Webhook{}, err
	}
	w.Events = strs(w.Events)
	w.DisabledAt = readTime(disabled)
	w.PreviousUntil = readTime(previous)
	return w, nil
}

// CreateWebhook stores an endpoint; store.ErrConflict if the id is taken.
func (s *Store) CreateWebhook(ctx context.Context, w store.Webhook) error {
	if w.ID == "" {
		return errors.New("postgres: create webhook: empty id")
	}
	if w.CreatedAt.IsZero() {
		w.CreatedAt = utcNow()
	}
	err := insert(ctx, s.pool, `INSERT INTO webhooks (`+webhookColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
		w.ID, w.URL, w.Owner, w.Pipeline, nonNil(w.Events), w.Secret, w.PreviousSecret, nullTime(w.PreviousUntil),
		w.CreatedAt, nullTime(w.DisabledAt), w.DisabledReason)
	if err != nil {
		return fmt.Errorf("postgres: create webhook %q: %w", w.ID, err)
	}
	return nil
}

// GetWebhook returns one endpoint.
func (s *Store) GetWebhook(ctx context.Context, id string) (store.Webhook, error) {
	w, err := scanWebhook(s.pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Webhook{}, fmt.Errorf("postgres: get webhook %q: %w", id, err)
	}
	return w, nil
}

// ListWebhooks returns every endpoint, oldest first.
func (s *Store) ListWebhooks(ctx context.Context) ([]store.Webhook, error) {
	hooks, err := list(ctx, s.pool, scanWebhook, `SELECT `+webhookColumns+` FROM webhooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: list webhooks: %w", err)
	}
	return hooks, nil
}

// DeleteWebhook removes an endpoint and, by cascade, its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	if err := exec(ctx, s.pool, `DELETE FROM webhooks WHERE id = $1`, id); err != nil {
		return fmt.Errorf("postgres: delete webhook %q: %w", id, err)
	}
	return nil
}

// ReplaceWebhookSecret swaps the endpoint's secret if it is still old.
func (s *Store) ReplaceWebhookSecret(ctx context.Context, id, old, secret string) error {
	if err := exec(ctx, s.pool, `UPDATE webhooks SET secret = $1 WHERE id = $2 AND secret = $3`, secret, id, old); err != nil {
		return fmt.Errorf("postgres: replace webhook secret %q: %w", id, err)
	}
	return nil
}

// RotateWebhookSecret replaces the endpoint's secret, keeping the old one
// as its previous secret until previousUntil.
func (s *Store) RotateWebhookSecret(ctx context.Context, id, secret string, previousUntil time.Time) error {
	err := exec(ctx, s.pool, `UPDATE webhooks SET previous_secret = secret, previous_until = $1, secret = $2 WHERE id = $3`,
		previousUntil, secret, id)
	if err != nil {
		return fmt.Errorf("postgres: rotate webhook secret %q: %w", id, err)
	}
	return nil
}

// DisableWebhook stops deliveries to an endpoint and fails its pending
// ones, in one transaction.
func (s *Store) DisableWebhook(ctx context.Context, id, reason string, at time.Time) error {
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		err := exec(ctx, tx, `UPDATE webhooks SET disabled_at = coalesce(disabled_at, $1), disabled_reason = $2
			WHERE id = $3`, at, reason, id)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET state = $1, next_at = NULL, last_error = $2, updated_at = $3
			WHERE webhook_id = $4 AND state = $5`,
			store.DeliveryFailed, "endpoint disabled: "+reason, at, id, store.DeliveryPending)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: disable webhook %q: %w", id, err)
	}
	return nil
}

const deliveryColumns = `id, webhook_id, type, asset_id, payload, event_time, state, attempts, next_at,
	last_status, last_error, created_at, updated_at`

func scanDelivery(sc scanner) (store.Delivery, error) {
	var (
		d       store.Delivery
		payload []byte
		next    *time.Time
	)
	err := sc.Scan(&d.ID, &d.WebhookID, &d.Type, &d.AssetID, &payload, &d.EventTime, &d.State, &d.Attempts, &next,
		&d.LastStatus, &d.LastError, &d.CreatedAt, &d.UpdatedAt)
	if err != nil {
		return store.Delivery{}, err
	}
	d.Payload = json.RawMessage(payload)
	d.NextAt = readTime(next)
	return d, nil
}

// EnqueueDeliveries stores pending deliveries, skipping known ids.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error {
	now := utcNow()
	for _, d := range ds {
		if d.ID == "" || !json.Valid(d.Payload) {
			return fmt.Errorf("postgres: enqueue deliveries: delivery %q: empty id or invalid payload", d.ID)
		}
	}
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		for _, d := range ds {
			if d.State == "" {
				d.State = store.DeliveryPending
			}
			if d.NextAt.IsZero() && d.State == store.DeliveryPending {
				d.NextAt = now
			}
			_, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries (`+deliveryColumns+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) ON CONFLICT (id) DO NOTHING`,
				d.ID, d.WebhookID, d.Type, d.AssetID, string(d.Payload), d.EventTime, d.State, d.Attempts,
				nullTime(d.NextAt), d.LastStatus, d.LastError, now)
			if isCode(err, foreignKeyViolation) {
				return fmt.Errorf("delivery %q: webhook %q: %w", d.ID, d.WebhookID, store.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("delivery %q: %w", d.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("postgres: enqueue deliveries: %w", err)
	}
	return nil
}

// ClaimDeliveries takes due pending deliveries for a lease. Rows another
// dispatcher is claiming at the same moment are skipped (SKIP LOCKED)
// rather than waited for: they are that dispatcher's.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error) {
	out, err := list(ctx, s.pool, scanDelivery, `WITH due AS (
			SELECT id, next_at FROM webhook_deliveries
			WHERE state = $1 AND next_at <= $2
			ORDER BY next_at, id
			LIMIT $3
			FOR UPDATE SKIP LOCKED
		), claimed AS (
			UPDATE webhook_deliveries AS d SET next_at = $4
			FROM due WHERE d.id = due.id
			RETURNING d.*, due.next_at AS was
		)
		SELECT `+deliveryColumns+` FROM claimed ORDER BY was, id`,
		store.DeliveryPending, now, max(1, limit), now.Add(lease))
	if err != nil {
		return nil, fmt.Errorf("postgres: claim deliveries: %w", err)
	}
	return out, nil
}

// UpdateDelivery records an attempt's outcome.
func (s *Store) UpdateDelivery(ctx context.Context, d store.Delivery) error {
	next := nullTime(d.NextAt)
	if d.State != store.DeliveryPending {
		next = nil
	}
	err := exec(ctx, s.pool, `UPDATE webhook_deliveries SET state = $1, attempts = $2, next_at = $3,
		last_status = $4, last_error = $5, updated_at = $6 WHERE id = $7`,
		d.State, d.Attempts, next, d.LastStatus, d.LastError, utcNow(), d.ID)
	if err != nil {
		return fmt.Errorf("postgres: update delivery %q: %w", d.ID, err)
	}
	return nil
}

// ListDeliveries returns an endpoint's deliveries, newest first.
func (s *Store) ListDeliveries(ctx context.Context, webhookID string, n int) ([]store.Delivery, error) {
	ds, err := list(ctx, s.pool, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2`, webhookID, limit(n))
	if err != nil {
		return nil, fmt.Errorf("postgres: list deliveries: %w", err)
	}
	return ds, nil
}
