package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// Store is what the dispatcher needs of the state store: the endpoints,
// the deliveries (its durable queue and log), and the assets it reports.
type Store interface {
	ListWebhooks(ctx context.Context) ([]store.Webhook, error)
	GetWebhook(ctx context.Context, id string) (store.Webhook, error)
	DisableWebhook(ctx context.Context, id, reason string, at time.Time) error
	EnqueueDeliveries(ctx context.Context, ds []store.Delivery) error
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error)
	UpdateDelivery(ctx context.Context, d store.Delivery) error
	GetAsset(ctx context.Context, id string) (store.Asset, error)
	ListJobSteps(ctx context.Context, jobKey string) ([]store.Step, error)
}

// DispatchConfig tunes the dispatcher. Zero values take the defaults.
type DispatchConfig struct {
	// Poll is how often due deliveries are looked for when nothing wakes
	// the dispatcher. Default 1s.
	Poll time.Duration
	// Concurrency bounds attempts in flight. Default 4.
	Concurrency int
	// Lease is how long a claimed delivery is kept from other
	// dispatchers; it must outlast one attempt. Default 1m.
	Lease time.Duration
	// Secrets opens the endpoints' sealed secrets.
	Secrets Sealer
}

// Dispatcher turns finished assets into deliveries and sends them: the
// deliveries live in the state store, so retries survive restarts and
// any number of processes can dispatch (each claims deliveries under a
// lease).
type Dispatcher struct {
	cfg    DispatchConfig
	store  Store
	sender *Sender
	log    *slog.Logger
	wake   chan struct{}
	now    func() time.Time
}

// NewDispatcher returns a dispatcher sending with sender.
func NewDispatcher(cfg DispatchConfig, st Store, sender *Sender, log *slog.Logger) *Dispatcher {
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	return &Dispatcher{cfg: cfg, store: st, sender: sender, log: log, wake: make(chan struct{}, 1), now: time.Now}
}

// AssetData is the data of asset.* events.
type AssetData struct {
	Asset    EventAsset `json:"asset"`
	Job      string     `json:"job,omitempty"`
	Degraded []Missing  `json:"degraded,omitempty"`
}

// EventAsset is the asset as an event shows it.
type EventAsset struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Status      string            `json:"status"`
	Error       string            `json:"error,omitempty"`
	ContentType string            `json:"content_type"`
	Size        int64             `json:"size"`
	Pipeline    string            `json:"pipeline,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
}

// Missing is a step that ended degraded.
type Missing struct {
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// AssetFinished queues the asset's event (asset.succeeded, asset.failed,
// or asset.degraded when it succeeded with degraded steps) for every
// endpoint that wants it: endpoints of the key that created the asset
// and endpoints for all assets, narrowed by pipeline and event types.
// jobKey is the job that finished. Calling it again for the same job
// queues nothing new, so callers may repeat it after a crash.
func (d *Dispatcher) AssetFinished(ctx context.Context, assetID, jobKey string) error {
	a, err := d.store.GetAsset(ctx, assetID)
	if err != nil {
		return fmt.Errorf("webhook: load asset: %w", err)
	}
	data := AssetData{Asset: eventAsset(a), Job: jobKey}
	var typ string
	switch a.Status {
	case store.StatusFailed:
		typ = AssetFailed
	case store.StatusSucceeded:
		typ = AssetSucceeded
		if jobKey != "" {
			steps, err := d.store.ListJobSteps(ctx, jobKey)
			if err != nil {
				return fmt.Errorf("webhook: load steps: %w", err)
			}
			for _, s := range steps {
				if s.Status == store.StatusDegraded {
					data.Degraded = append(data.Degraded, Missing{Step: s.Name, Reason: s.Error})
				}
			}
			if len(data.Degraded) > 0 {
				typ = AssetDegraded
			}
		}
	default:
		return nil // not finished (a later run was queued meanwhile)
	}
	return d.enqueue(ctx, a, jobKey, typ, data)
}

// AssetDeleted queues asset.deleted, with the asset as it was, for every
// endpoint that wants it. Calling it again queues nothing new.
func (d *Dispatcher) AssetDeleted(ctx context.Context, a store.Asset) error {
	ea := eventAsset(a)
	ea.Status = "deleted"
	return d.enqueue(ctx, a, "deleted", AssetDeleted, AssetData{Asset: ea})
}

func eventAsset(a store.Asset) EventAsset {
	return EventAsset{ID: a.ID, Name: a.Name, Status: string(a.Status), Error: a.Error, ContentType: a.ContentType,
		Size: a.Size, Pipeline: a.Pipeline, Metadata: a.Metadata}
}

// enqueue stores a delivery of event typ about a for each endpoint that
// wants it; run, the job or "deleted", makes the event's id.
func (d *Dispatcher) enqueue(ctx context.Context, a store.Asset, run, typ string, data AssetData) error {
	payload, err := json.Marshal(data)
	if err != nil {
		return err
	}
	hooks, err := d.store.ListWebhooks(ctx)
	if err != nil {
		return fmt.Errorf("webhook: list endpoints: %w", err)
	}
	now := d.now().UTC()
	var ds []store.Delivery
	for _, h := range hooks {
		if !wants(h, a, typ) {
			continue
		}
		ds = append(ds, store.Delivery{
			ID:        messageID(h.ID, a.ID, run, typ),
			WebhookID: h.ID, Type: typ, AssetID: a.ID, Payload: payload, EventTime: now,
			State: store.DeliveryPending, NextAt: now,
		})
	}
	if len(ds) == 0 {
		return nil
	}
	if err := d.store.EnqueueDeliveries(ctx, ds); err != nil {
		return fmt.Errorf("webhook: queue deliveries: %w", err)
	}
	select {
	case d.wake <- struct{}{}:
	default:
	}
	return nil
}

// wants reports whether endpoint h takes event typ about asset a.
func wants(h store.Webhook, a store.Asset, typ string) bool {
	return h.DisabledAt.IsZero() &&
		(h.Owner == "" || h.Owner == a.Owner) &&
		(h.Pipeline == "" || h.Pipeline == a.Pipeline) &&
		(len(h.Events) == 0 || slices.Contains(h.Events, typ))
}

// messageID is the webhook-id of one event at one endpoint: derived, so
// that queueing the same event twice yields the same delivery.
func messageID(hook, asset, job, typ string) string {
	sum := sha256.Sum256([]byte(hook + "\x00" + asset + "\x00" + job + "\x00" + typ))
	return "msg_" + hex.EncodeToString(sum[:12])
}

// Run sends due deliveries until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) {
	sem := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for {
		for {
			due, err := d.store.ClaimDeliveries(ctx, d.now(), d.cfg.Lease, d.cfg.Concurrency)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("webhook: claim deliveries", "err", err)
				}
				break
			}
			for _, del := range due {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					d.attempt(ctx, del)
				}()
			}
			if len(due) < d.cfg.Concurrency {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
	}
}

// attempt makes one attempt at a delivery and records its outcome.
func (d *Dispatcher) attempt(ctx context.Context, del store.Delivery) {
	log := d.log.With("webhook", del.WebhookID, "delivery", del.ID, "type", del.Type)
	h, err := d.store.GetWebhook(ctx, del.WebhookID)
	if errors.Is(err, store.ErrNotFound) {
		return // deleted, and its deliveries with it
	}
	if err != nil {
		log.Warn("webhook: load endpoint", "err", err)
		return // the lease runs out and the delivery is claimed again
	}
	keys, err := signingKeys(d.cfg.Secrets, h, d.now())
	if err != nil {
		// A signing key missing from this process's configuration may be
		// added back: retry along the schedule. A malformed secret stays so.
		del.Attempts++
		del.LastStatus, del.LastError = 0, "endpoint secret unusable: "+err.Error()
		if delay, retry := d.sender.NextDelay(del.Attempts, Result{Permanent: !errors.Is(err, errSealed)}); retry {
			del.NextAt = d.now().Add(delay)
		} else {
			del.State = store.DeliveryFailed
		}
		log.Warn("webhook: endpoint secret unusable", "err", err)
		d.record(ctx, log, del)
		return
	}
	ev := Event{ID: del.ID, Type: del.Type, Timestamp: del.EventTime, Data: json.RawMessage(del.Payload)}
	res, err := d.sender.Deliver(ctx, Endpoint{ID: h.ID, URL: h.URL, Secrets: keys}, ev, del.Attempts+1)
	if ctx.Err() != nil && !res.Delivered {
		return // shutting down: the lease runs out and another try follows
	}
	del.Attempts++
	del.LastStatus, del.LastError = res.Status, ""
	if err != nil {
		del.LastError = err.Error()
	}
	switch {
	case res.Delivered:
		del.State = store.DeliveryDelivered
	case res.Gone:
		del.State = store.DeliveryFailed
		if derr := d.store.DisableWebhook(ctx, h.ID, "the endpoint answered 410 Gone", d.now()); derr != nil {
			log.Warn("webhook: disable endpoint", "err", derr)
		}
		log.Info("webhook: endpoint gone; disabled")
	case res.Retry:
		del.NextAt = d.now().Add(res.NextDelay)
	default:
		del.State = store.DeliveryFailed
		log.Info("webhook: delivery abandoned", "attempts", del.Attempts, "err", err)
	}
	d.record(ctx, log, del)
}

func (d *Dispatcher) record(ctx context.Context, log *slog.Logger, del store.Delivery) {
	if err := d.store.UpdateDelivery(context.WithoutCancel(ctx), del); err != nil {
		log.Warn("webhook: record attempt", "err", err)
	}
}
