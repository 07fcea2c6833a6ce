package upload

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestObjectCreated completes uploads from bucket notifications: an
// asset's presigned key, an object another system wrote, duplicates,
// and what must be left alone.
func TestObjectCreated(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	put := func(key string, data []byte) {
		t.Helper()
		if _, err := f.bkt.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
	note := func(key string) event.ObjectCreated {
		return event.ObjectCreated{Action: event.ActionPutObject, Bucket: "test", Key: key, EventTime: time.Now()}
	}

	// An asset whose bytes went straight to the bucket.
	up, err := f.svc.Create(ctx, wire.UploadRequest{Name: "a.png", Size: int64(len(pngHead))}, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	put(SourceKey(up.AssetID), pngHead)
	for range 2 { // delivered twice: completed once
		if err := f.svc.ObjectCreated(ctx, note(SourceKey(up.AssetID))); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := f.store.GetAsset(ctx, up.AssetID)
	if a.UploadedAt.IsZero() || a.ContentType != "image/png" {
		t.Errorf("asset after the notification: %+v", a)
	}
	if got := f.pending(t, 1); got != 1 {
		t.Errorf("events queued = %d, want 1", got)
	}

	// An object another system wrote becomes an asset of its own, once.
	put("inbox/holiday clip.png", pngHead)
	for range 2 {
		if err := f.svc.ObjectCreated(ctx, note("inbox/holiday clip.png")); err != nil {
			t.Fatal(err)
		}
	}
	page, _ := f.store.ListAssets(ctx, store.ListOptions{})
	var inbox []store.Asset
	for _, x := range page.Assets {
		if x.Key == "inbox/holiday clip.png" {
			inbox = append(inbox, x)
		}
	}
	if len(inbox) != 1 || inbox[0].Name != "holiday clip.png" || inbox[0].UploadedAt.IsZero() {
		t.Fatalf("assets for the foreign object: %+v", inbox)
	}
	if got := f.pending(t, 2); got != 2 {
		t.Errorf("events queued = %d, want 2", got)
	}

	// A foreign object that is not media fails its asset and stays.
	put("inbox/notes.txt", []byte("meeting notes"))
	if err := f.svc.ObjectCreated(ctx, note("inbox/notes.txt")); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("foreign text: %v, want ErrUnsupportedType", err)
	}
	if _, err := f.bkt.Stat(ctx, "inbox/notes.txt"); err != nil {
		t.Errorf("another system's object was deleted: %v", err)
	}

	// Left alone: Sluice's own objects (outputs, tusd's, a driver's
	// temporary ones, caches), even when they hold media; missing
	// objects; unknown asset keys.
	for _, key := range []string{"assets/x/y/thumb.png", "tus/abc.info", "cache/ai/abcd"} {
		put(key, pngHead)
	}
	for _, key := range []string{"assets/x/y/thumb.png", "tus/abc.info", ".tmp/put-abc", "cache/ai/abcd", "inbox/gone.mp4", "uploads/nobody"} {
		if err := f.svc.ObjectCreated(ctx, note(key)); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if got := f.pending(t, 3); got != 2 {
		t.Errorf("events queued = %d, want still 2", got)
	}
	// Refused: another bucket, bad keys.
	other := note("inbox/x.png")
	other.Bucket = "elsewhere"
	if err := f.svc.ObjectCreated(ctx, other); !errors.Is(err, ErrInvalid) {
		t.Errorf("another bucket: %v", err)
	}
	if err := f.svc.ObjectCreated(ctx, note("../etc/passwd")); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad key: %v", err)
	}

	// A presigned upload of the wrong length fails its asset.
	up2, _ := f.svc.Create(ctx, wire.UploadRequest{Name: "b.png", Size: 100}, "http://x")
	put(SourceKey(up2.AssetID), pngHead)
	if err := f.svc.ObjectCreated(ctx, note(SourceKey(up2.AssetID))); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.store.GetAsset(ctx, up2.AssetID); a.Status != store.StatusFailed {
		t.Errorf("wrong-length upload: %s %q", a.Status, a.Error)
	}
}
