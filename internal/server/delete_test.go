package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/webhook"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestDeleteAsset deletes assets: a finished one with its source,
// outputs and on-demand variants; one whose HLS encode is running (the
// worker stops, and nothing it writes stays); a resumable upload in
// progress. Only the key that made an asset, or an admin, may delete it;
// another asset is untouched.
func TestDeleteAsset(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: video
    steps:
      - uses: probe
      - uses: thumbnail
        with: {width: 160}
      - uses: hls
        with: {heights: [360, 240]}
`)}
	cfg.WebhookAllowPrivate = true
	h := start(t, cfg)
	ctx := ctxT(t, 3*time.Minute)
	// An endpoint that hears only of deletions.
	hook := &receiver{t: t}
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	status, code, body := request(t, "POST", h.URL()+"/v1/webhooks",
		strings.NewReader(`{"url":"`+hookSrv.URL+`/hook","all_assets":true,"events":["asset.deleted"]}`), nil, -1)
	if status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s %s", status, code, body)
	}
	var created wire.Webhook
	decode(t, body, &created)
	hook.secret, _ = webhook.ParseSecret(created.Secret)
	dir := t.TempDir()
	app := h.newKey(t, wire.KeyRequest{Name: "app", Scopes: []string{auth.ScopeUpload, auth.ScopeRead}})
	other := h.newKey(t, wire.KeyRequest{Name: "other", Scopes: []string{auth.ScopeUpload, auth.ScopeRead}})
	appClient := client.New(h.URL(), app.Token)
	objects := func(id string) int {
		t.Helper()
		objs, err := h.bucket.List(ctx, store.OutputPrefix(id))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.bucket.Stat(ctx, upload.SourceKey(id)); err == nil {
			return len(objs) + 1
		}
		return len(objs)
	}
	deleteAs := func(token, id string) int {
		t.Helper()
		status, _, _ := request(t, "DELETE", h.URL()+"/v1/assets/"+id, nil, bearerOf(token), -1)
		return status
	}

	// A finished asset, with a variant rendered on demand.
	short := mediatest.Generate(t, dir, "short", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true})
	done, err := appClient.UploadFile(ctx, short, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := appClient.UploadFile(ctx, short, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	a := h.wait(t, done)
	h.wait(t, kept)
	if a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s %s", a.Status, a.Error)
	}
	if r, _ := h.get(t, h.URL()+"/v1/assets/"+done+"/thumbnail.jpg?time=1s&width=64", nil); r.StatusCode != 200 {
		t.Fatalf("variant: %s", r.Status)
	}
	thumb := output(t, a, "thumbnail.jpg")
	before := objects(done)
	if before < 4 {
		t.Fatalf("%d objects for the asset before deletion, want its source, outputs and variant", before)
	}
	if status := deleteAs(other.Token, done); status != http.StatusForbidden {
		t.Errorf("delete by another key: %d, want 403", status)
	}
	if status := deleteAs(app.Token, done); status != http.StatusNoContent {
		t.Fatalf("delete by its key: %d, want 204", status)
	}
	if _, err := appClient.Asset(ctx, done); !isStatus(err, http.StatusNotFound) {
		t.Errorf("GET after delete: %v, want 404", err)
	}
	if r, _ := h.get(t, thumb.URL, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("output URL after delete: %s, want 404", r.Status)
	}
	if n := objects(done); n != 0 {
		t.Errorf("%d objects left of the deleted asset (of %d)", n, before)
	}
	if status := deleteAs(app.Token, done); status != http.StatusNotFound {
		t.Errorf("delete again: %d, want 404", status)
	}
	if got := waitFor(t, hook.events, 1); got[0].typ != webhook.AssetDeleted || got[0].data.Asset.ID != done ||
		got[0].data.Asset.Status != "deleted" || got[0].data.Asset.Name == "" {
		t.Errorf("webhook after the deletion: %+v, want asset.deleted of %s with its name", got[0], done)
	}
	if a, err := appClient.Asset(ctx, kept); err != nil || a.Status != wire.StatusSucceeded || objects(kept) < 3 {
		t.Errorf("the other asset after a deletion: %+v %v, %d objects", a.Status, err, objects(kept))
	}

	// Deleted while its HLS encode runs (by an admin).
	long := mediatest.Generate(t, dir, "long", mediatest.Clip{Width: 640, Height: 360, Duration: 30, Video: true, Audio: true})
	running, err := appClient.UploadFile(ctx, long, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		a, err := appClient.Asset(ctx, running)
		if err != nil {
			t.Fatal(err)
		}
		if stepRunning(a, "hls") {
			break
		}
		if a.Status == wire.StatusSucceeded || a.Status == wire.StatusFailed || time.Now().After(deadline) {
			t.Fatalf("the HLS step never ran: %s", a.Status)
		}
	}
	if status := deleteAs(testToken, running); status != http.StatusNoContent {
		t.Fatalf("delete while processing: %d, want 204", status)
	}
	// The worker loses its job's lease, stops, removes what it wrote after
	// the deletion swept the outputs, and drops the event.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		queued, err := h.queue.Queued(ctx, running)
		if err != nil {
			t.Fatal(err)
		}
		if !queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the deleted asset's event is still queued or in progress after a minute")
		}
	}
	if n := objects(running); n != 0 {
		t.Errorf("%d objects remain of the asset deleted mid-encode", n)
	}
	if dl, err := h.queue.DeadLetters(ctx, 0, 100); err != nil || len(dl) != 0 {
		t.Errorf("dead letters after deleting a running asset: %d, %v; want none", len(dl), err)
	}

	// A resumable upload in progress.
	req, _ := http.NewRequestWithContext(ctx, "POST", h.URL()+"/v1/tus/", nil)
	req.Header.Set("Authorization", "Bearer "+app.Token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "1000000")
	req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("big.mp4")))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("tus create: %v %v", resp, err)
	}
	resp.Body.Close()
	loc, tusID := resp.Header.Get("Location"), resp.Header.Get("Sluice-Asset-Id")
	data, err := os.ReadFile(short)
	if err != nil {
		t.Fatal(err)
	}
	data = data[:len(data)/2]
	req, _ = http.NewRequestWithContext(ctx, "PATCH", loc, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+app.Token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("tus PATCH: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if status := deleteAs(app.Token, tusID); status != http.StatusNoContent {
		t.Fatalf("delete a resumable upload in progress: %d, want 204", status)
	}
	req, _ = http.NewRequestWithContext(ctx, "HEAD", loc, nil)
	req.Header.Set("Authorization", "Bearer "+app.Token)
	req.Header.Set("Tus-Resumable", "1.0.0")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the deleted upload: %v %v, want 404", resp.Status, err)
	}
}

func stepRunning(a wire.Asset, name string) bool {
	for _, s := range a.Steps {
		if s.Name == name && s.StartedAt != nil && s.FinishedAt == nil {
			return true
		}
	}
	return false
}

// isStatus reports whether err is the server's answer with that status.
func isStatus(err error, status int) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Status == status
}
