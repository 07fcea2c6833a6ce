package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

func newWebhook(id string, created time.Time) store.Webhook {
	return store.Webhook{
		ID: id, URL: "https://hooks.example/" + id, Owner: "k1", Pipeline: "video",
		Events: []string{"asset.succeeded", "asset.failed"}, Secret: "whsec_c2VjcmV0", CreatedAt: created,
	}
}

func mustWebhook(t *testing.T, s store.Store, w store.Webhook) {
	t.Helper()
	if err := s.CreateWebhook(t.Context(), w); err != nil {
		t.Fatalf("CreateWebhook(%q): %v", w.ID, err)
	}
}

func newDelivery(id, webhook string, eventTime time.Time) store.Delivery {
	return store.Delivery{
		ID: id, WebhookID: webhook, Type: "asset.succeeded", AssetID: "a1",
		Payload: json.RawMessage(`{"asset":{"id":"a1"}}`), EventTime: eventTime,
	}
}

func testWebhooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	w1, w2 := newWebhook("w1", epoch), newWebhook("w2", epoch.Add(time.Second))
	w2.Owner, w2.Pipeline, w2.Events = "", "", nil
	mustWebhook(t, s, w2)
	mustWebhook(t, s, w1)
	wantErr(t, "CreateWebhook(same id)", s.CreateWebhook(ctx, newWebhook("w1", epoch)), store.ErrConflict)

	got, err := s.GetWebhook(ctx, "w1")
	if err != nil {
		t.Fatalf("GetWebhook: %v", err)
	}
	checkWebhook(t, got, w1)
	_, err = s.GetWebhook(ctx, "nope")
	wantErr(t, "GetWebhook(unknown)", err, store.ErrNotFound)

	list, err := s.ListWebhooks(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "w1" || list[1].ID != "w2" {
		t.Fatalf("ListWebhooks = %v, %v; want w1, w2", list, err)
	}
	checkWebhook(t, list[1], w2)

	if err := s.DeleteWebhook(ctx, "w2"); err != nil {
		t.Fatalf("DeleteWebhook: %v", err)
	}
	wantErr(t, "DeleteWebhook(again)", s.DeleteWebhook(ctx, "w2"), store.ErrNotFound)
	if list, _ := s.ListWebhooks(ctx); len(list) != 1 {
		t.Errorf("after delete: %d webhooks, want 1", len(list))
	}
}

func checkWebhook(t *testing.T, got, want store.Webhook) {
	t.Helper()
	c := check(t, "webhook %q", want.ID)
	c.eq("URL", got.URL, want.URL)
	c.eq("Owner", got.Owner, want.Owner)
	c.eq("Pipeline", got.Pipeline, want.Pipeline)
	c.eq("Secret", got.Secret, want.Secret)
	c.eq("DisabledReason", got.DisabledReason, want.DisabledReason)
	c.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	c.time("DisabledAt", got.DisabledAt, want.DisabledAt)
	if !reflect.DeepEqual(got.Events, want.Events) {
		t.Errorf("webhook %q: Events = %q, want %q", want.ID, got.Events, want.Events)
	}
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustWebhook(t, s, newWebhook("w1", epoch))
	lo := clock()
	d1, d2 := newDelivery("d1", "w1", epoch), newDelivery("d2", "w1", epoch.Add(time.Second))
	d2.NextAt = time.Now().Add(time.Hour) // not due yet
	if err := s.EnqueueDeliveries(ctx, []store.Delivery{d1, d2}); err != nil {
		t.Fatalf("EnqueueDeliveries: %v", err)
	}
	// Enqueueing the same event again changes nothing.
	again := d1
	again.Type = "asset.failed"
	if err := s.EnqueueDeliveries(ctx, []store.Delivery{again}); err != nil {
		t.Fatalf("EnqueueDeliveries(again): %v", err)
	}
	if err := s.EnqueueDeliveries(ctx, []store.Delivery{newDelivery("d3", "nope", epoch)}); err == nil {
		t.Error("EnqueueDeliveries for an unknown webhook succeeded")
	}

	now := time.Now()
	claimed, err := s.ClaimDeliveries(ctx, now, time.Minute, 10)
	if err != nil {
		t.Fatalf("ClaimDeliveries: %v", err)
	}
	if len(claimed) != 1 || claimed[0].ID != "d1" {
		t.Fatalf("ClaimDeliveries = %v, want d1 only (d2 is not due)", deliveryIDs(claimed))
	}
	d := claimed[0]
	c := check(t, "delivery %q", "d1")
	c.eq("Type", d.Type, "asset.succeeded")
	c.eq("State", d.State, store.DeliveryPending)
	c.eq("AssetID", d.AssetID, "a1")
	c.json("Payload", d.Payload, d1.Payload)
	c.time("EventTime", d.EventTime, epoch)
	c.between("CreatedAt", d.CreatedAt, lo)
	// Claimed deliveries are leased: not claimed again until it ends.
	if again, _ := s.ClaimDeliveries(ctx, now, time.Minute, 10); len(again) != 0 {
		t.Errorf("claimed again during the lease: %v", deliveryIDs(again))
	}
	if again, _ := s.ClaimDeliveries(ctx, now.Add(2*time.Minute), time.Minute, 10); len(again) != 1 {
		t.Errorf("after the lease: %v, want d1", deliveryIDs(again))
	}

	// A failed attempt schedules the next.
	d.Attempts, d.LastStatus, d.LastError, d.NextAt = 1, 503, "webhook: endpoint returned 503", now.Add(5*time.Second)
	if err := s.UpdateDelivery(ctx, d); err != nil {
		t.Fatalf("UpdateDelivery: %v", err)
	}
	if due, _ := s.ClaimDeliveries(ctx, now.Add(time.Second), time.Minute, 10); len(due) != 0 {
		t.Errorf("claimed before its retry time: %v", deliveryIDs(due))
	}
	due, _ := s.ClaimDeliveries(ctx, now.Add(6*time.Second), time.Minute, 10)
	if len(due) != 1 || due[0].Attempts != 1 || due[0].LastStatus != 503 {
		t.Fatalf("retry: %+v", due)
	}
	d = due[0]
	d.State, d.Attempts, d.LastStatus, d.LastError = store.DeliveryDelivered, 2, 204, ""
	if err := s.UpdateDelivery(ctx, d); err != nil {
		t.Fatalf("UpdateDelivery(delivered): %v", err)
	}
	if due, _ := s.ClaimDeliveries(ctx, now.Add(time.Hour*2), time.Minute, 10); len(due) != 1 || due[0].ID != "d2" {
		t.Errorf("after delivery, due = %v; want d2 only", deliveryIDs(due))
	}
	wantErr(t, "UpdateDelivery(unknown)", s.UpdateDelivery(ctx, store.Delivery{ID: "nope", State: store.DeliveryFailed}), store.ErrNotFound)

	log, err := s.ListDeliveries(ctx, "w1", 10)
	if err != nil || len(log) != 2 || log[0].ID != "d2" || log[1].ID != "d1" {
		t.Fatalf("ListDeliveries = %v, %v; want d2, d1 (newest first)", deliveryIDs(log), err)
	}
	c = check(t, "logged delivery %q", "d1")
	c.eq("State", log[1].State, store.DeliveryDelivered)
	c.eq("Attempts", log[1].Attempts, 2)
	c.eq("LastStatus", log[1].LastStatus, 204)
	c.time("NextAt", log[1].NextAt, time.Time{})
	if empty, err := s.ListDeliveries(ctx, "nope", 10); err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("ListDeliveries(unknown) = %v, %v; want an empty, non-nil slice", empty, err)
	}

	// The secret is replaced only if it is still the one the caller read.
	w0, _ := s.GetWebhook(ctx, "w1")
	if err := s.ReplaceWebhookSecret(ctx, "w1", w0.Secret, "sealed-1"); err != nil {
		t.Fatalf("ReplaceWebhookSecret: %v", err)
	}
	wantErr(t, "ReplaceWebhookSecret(stale)", s.ReplaceWebhookSecret(ctx, "w1", w0.Secret, "sealed-2"), store.ErrNotFound)
	wantErr(t, "ReplaceWebhookSecret(unknown)", s.ReplaceWebhookSecret(ctx, "nope", "", "x"), store.ErrNotFound)
	if w, _ := s.GetWebhook(ctx, "w1"); w.Secret != "sealed-1" {
		t.Errorf("secret after replace = %q, want sealed-1", w.Secret)
	}

	// A rotation keeps the secret it replaces for a while.
	if err := s.RotateWebhookSecret(ctx, "w1", "sealed-3", epoch.Add(24*time.Hour)); err != nil {
		t.Fatalf("RotateWebhookSecret: %v", err)
	}
	rotated, _ := s.GetWebhook(ctx, "w1")
	rc := check(t, "rotated webhook")
	rc.eq("Secret", rotated.Secret, "sealed-3")
	rc.eq("PreviousSecret", rotated.PreviousSecret, "sealed-1")
	rc.time("PreviousUntil", rotated.PreviousUntil, epoch.Add(24*time.Hour))
	wantErr(t, "RotateWebhookSecret(unknown)", s.RotateWebhookSecret(ctx, "nope", "x", epoch), store.ErrNotFound)

	// Disabling fails what is pending.
	if err := s.DisableWebhook(ctx, "w1", "410 Gone", epoch.Add(time.Hour)); err != nil {
		t.Fatalf("DisableWebhook: %v", err)
	}
	w, _ := s.GetWebhook(ctx, "w1")
	check(t, "disabled webhook").time("DisabledAt", w.DisabledAt, epoch.Add(time.Hour))
	if due, _ := s.ClaimDeliveries(ctx, now.Add(3*time.Hour), time.Minute, 10); len(due) != 0 {
		t.Errorf("a disabled endpoint's delivery was claimed: %v", deliveryIDs(due))
	}
	log, _ = s.ListDeliveries(ctx, "w1", 10)
	if log[0].State != store.DeliveryFailed {
		t.Errorf("pending delivery of a disabled endpoint: %s, want failed", log[0].State)
	}
	wantErr(t, "DisableWebhook(unknown)", s.DisableWebhook(ctx, "nope", "x", epoch), store.ErrNotFound)

	// Deleting the endpoint deletes its log.
	if err := s.DeleteWebhook(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if log, _ := s.ListDeliveries(ctx, "w1", 10); len(log) != 0 {
		t.Errorf("deliveries outlived their webhook: %v", deliveryIDs(log))
	}
}

func deliveryIDs(ds []store.Delivery) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s(%s)", d.ID, d.State))
	}
	return out
}
