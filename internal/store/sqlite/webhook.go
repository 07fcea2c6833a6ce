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

const webhookColumns = `id, url, owner, pipeline, events, secret, previous_secret, previous_until, created_at,
	disabled_at, disabled_reason`

func scanWebhook(sc scanner) (store.Webhook, error) {
	var (
		w        store.Webhook
		events   string
		created  int64
		disabled sql.NullInt64
		previous sql.NullInt64
	)
	if err := sc.Scan(&w.ID, &w.URL, &w.Owner, &w.Pipeline, &events, &w.Secret, &w.PreviousSecret, &previous,
		&created, &disabled, &w.DisabledReason); err != nil {
		return store.Webhook{}, err
	}
	if events != "" {
		w.Events = strings.Split(events, ",")
	}
	w.CreatedAt = time.Unix(0, created).UTC()
	w.DisabledAt = readTime(disabled)
	w.PreviousUntil = readTime(previous)
	return w, nil
}

// CreateWebhook stores an endpoint.
func (s *Store) CreateWebhook(ctx context.Context, w store.Webhook) error {
	if w.ID == "" {
		return errors.New("sqlite: create webhook: empty id")
	}
	if w.CreatedAt.IsZero() {
		w.CreatedAt = utcNow()
	}
	err := insert(ctx, s.w, `INSERT INTO webhooks (`+webhookColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		w.ID, w.URL, w.Owner, w.Pipeline, strings.Join(w.Events, ","), w.Secret, w.PreviousSecret, nullTime(w.PreviousUntil),
		w.CreatedAt.UnixNano(), nullTime(w.DisabledAt), w.DisabledReason)
	if err != nil {
		return fmt.Errorf("sqlite: create webhook %q: %w", w.ID, err)
	}
	return nil
}

// GetWebhook returns one endpoint.
func (s *Store) GetWebhook(ctx context.Context, id string) (store.Webhook, error) {
	w, err := scanWebhook(s.r.QueryRowContext(ctx, `SELECT `+webhookColumns+` FROM webhooks WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Webhook{}, fmt.Errorf("sqlite: get webhook %q: %w", id, err)
	}
	return w, nil
}

// ListWebhooks returns every endpoint, oldest first.
func (s *Store) ListWebhooks(ctx context.Context) ([]store.Webhook, error) {
	hooks, err := list(ctx, s.r, scanWebhook, `SELECT `+webhookColumns+` FROM webhooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list webhooks: %w", err)
	}
	return hooks, nil
}

// DeleteWebhook removes an endpoint and, by cascade, its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM webhooks WHERE id = ?`, id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete webhook %q: %w", id, err)
	}
	return nil
}

// ReplaceWebhookSecret swaps the endpoint's secret if it is still old.
func (s *Store) ReplaceWebhookSecret(ctx context.Context, id, old, secret string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE webhooks SET secret = ? WHERE id = ? AND secret = ?`, secret, id, old)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: replace webhook secret %q: %w", id, err)
	}
	return nil
}

// RotateWebhookSecret replaces the endpoint's secret, keeping the old one
// as its previous secret until previousUntil.
func (s *Store) RotateWebhookSecret(ctx context.Context, id, secret string, previousUntil time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE webhooks SET previous_secret = secret, previous_until = ?, secret = ? WHERE id = ?`,
		previousUntil.UTC().UnixNano(), secret, id)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: rotate webhook secret %q: %w", id, err)
	}
	return nil
}

// DisableWebhook stops deliveries to an endpoint.
func (s *Store) DisableWebhook(ctx context.Context, id, reason string, at time.Time) error {
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhooks SET disabled_at = COALESCE(disabled_at, ?), disabled_reason = ? WHERE id = ?`,
			at.UTC().UnixNano(), reason, id)
		if err == nil {
			err = rowsAffected(res)
		}
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, next_at = NULL, last_error = ?, updated_at = ?
			WHERE webhook_id = ? AND state = ?`,
			store.DeliveryFailed, "endpoint disabled: "+reason, at.UTC().UnixNano(), id, store.DeliveryPending)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: disable webhook %q: %w", id, err)
	}
	return nil
}

const deliveryColumns = `id, webhook_id, type, asset_id, payload, event_time, state, attempts, next_at,
	last_status, last_error, created_at, updated_at`

func scanDelivery(sc scanner) (store.Delivery, error) {
	var (
		d                       store.Delivery
		payload                 string
		eventTime, created, upd int64
		next                    sql.NullInt64
	)
	err := sc.Scan(&d.ID, &d.WebhookID, &d.Type, &d.AssetID, &payload, &eventTime, &d.State, &d.Attempts, &next,
		&d.LastStatus, &d.LastError, &created, &upd)
	if err != nil {
		return store.Delivery{}, err
	}
	d.Payload = json.RawMessage(payload)
	d.EventTime = time.Unix(0, eventTime).UTC()
	d.NextAt = readTime(next)
	d.CreatedAt = time.Unix(0, created).UTC()
	d.UpdatedAt = time.Unix(0, upd).UTC()
	return d, nil
}

// EnqueueDeliveries stores pending deliveries, skipping known ids.
func (s *Store) EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error {
	now := utcNow()
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		for _, d := range ds {
			if d.ID == "" || !json.Valid(d.Payload) {
				return fmt.Errorf("delivery %q: empty id or invalid payload", d.ID)
			}
			if d.State == "" {
				d.State = store.DeliveryPending
			}
			if d.NextAt.IsZero() && d.State == store.DeliveryPending {
				d.NextAt = now
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (`+deliveryColumns+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
				d.ID, d.WebhookID, d.Type, d.AssetID, string(d.Payload), d.EventTime.UnixNano(), d.State, d.Attempts,
				nullTime(d.NextAt), d.LastStatus, d.LastError, now.UnixNano(), now.UnixNano())
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: enqueue deliveries: %w", err)
	}
	return nil
}

// ClaimDeliveries takes due pending deliveries for a lease.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error) {
	var out []store.Delivery
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		var err error
		out, err = list(ctx, tx, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries
			WHERE state = ? AND next_at <= ? ORDER BY next_at, id LIMIT ?`,
			store.DeliveryPending, now.UnixNano(), max(1, limit))
		if err != nil {
			return err
		}
		until := now.Add(lease)
		for i := range out {
			if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_at = ? WHERE id = ?`,
				until.UnixNano(), out[i].ID); err != nil {
				return err
			}
			out[i].NextAt = until.UTC()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: claim deliveries: %w", err)
	}
	return out, nil
}

// UpdateDelivery records an attempt's outcome.
func (s *Store) UpdateDelivery(ctx context.Context, d store.Delivery) error {
	next := nullTime(d.NextAt)
	if d.State != store.DeliveryPending {
		next = nil
	}
	res, err := s.w.ExecContext(ctx, `UPDATE webhook_deliveries SET state = ?, attempts = ?, next_at = ?,
		last_status = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		d.State, d.Attempts, next, d.LastStatus, d.LastError, utcNow().UnixNano(), d.ID)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: update delivery %q: %w", d.ID, err)
	}
	return nil
}

// ListDeliveries returns an endpoint's deliveries, newest first.
func (s *Store) ListDeliveries(ctx context.Context, webhookID string, n int) ([]store.Delivery, error) {
	ds, err := list(ctx, s.r, scanDelivery, `SELECT `+deliveryColumns+` FROM webhook_deliveries
		WHERE webhook_id = ? ORDER BY created_at DESC, id DESC LIMIT ?`, webhookID, limit(n))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	return ds, nil
}
