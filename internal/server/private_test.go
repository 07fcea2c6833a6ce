package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestPrivateDelivery serves a private asset's outputs only through the
// signed URLs the API hands out; one token opens every output of its
// asset (so relative playlist URLs work) and nothing else.
func TestPrivateDelivery(t *testing.T) {
	cfg := testConfig(t)
	cfg.PrivateURLTTL = 3 * time.Second
	h := start(t, cfg)
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	ctx := ctxT(t, time.Minute)
	privID, err := h.client.UploadFile(ctx, clip, client.UploadOptions{TusThreshold: 1 << 40, Visibility: "private"})
	if err != nil {
		t.Fatal(err)
	}
	pubID := h.uploadPut(t, clip)
	priv, pub := h.wait(t, privID), h.wait(t, pubID)
	if priv.Visibility != "private" || pub.Visibility != "public" {
		t.Fatalf("visibility: %q and %q", priv.Visibility, pub.Visibility)
	}
	thumb, audio := output(t, priv, "thumbnail.jpg"), output(t, priv, "audio.m4a")
	if !strings.Contains(thumb.URL, "/o/~") {
		t.Fatalf("private output URL is not signed: %s", thumb.URL)
	}
	noKey := map[string]string{"Authorization": ""}
	if r, _ := h.get(t, thumb.URL, noKey); r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Cache-Control"), "private") {
		t.Fatalf("signed URL: %s, Cache-Control %q", r.Status, r.Header.Get("Cache-Control"))
	}
	// The same token opens another output of the asset.
	tok := thumb.URL[:strings.Index(thumb.URL, "/assets/")]
	if r, _ := h.get(t, tok+"/"+audio.Key, noKey); r.StatusCode != 200 {
		t.Errorf("another output under the same token: %s", r.Status)
	}
	// ... but not another asset's.
	pubThumb := output(t, pub, "thumbnail.jpg")
	if r, body := h.get(t, tok+"/"+pubThumb.Key, noKey); r.StatusCode != 403 || !strings.Contains(string(body), "bad_signature") {
		t.Errorf("another asset under the token: %s %s, want 403 bad_signature", r.Status, body)
	}
	// Without the token, or with it altered, the output is refused.
	plain := h.URL() + "/o/" + thumb.Key
	if r, body := h.get(t, plain, noKey); r.StatusCode != 403 || !strings.Contains(string(body), "signature_required") {
		t.Errorf("unsigned: %s %s, want 403 signature_required", r.Status, body)
	}
	altered := strings.Replace(thumb.URL, "/o/~", "/o/~A", 1)
	if r, _ := h.get(t, altered, noKey); r.StatusCode != 403 {
		t.Errorf("altered token: %s, want 403", r.Status)
	}
	// Public assets are served as before, to anyone.
	if r, _ := h.get(t, pubThumb.URL, noKey); r.StatusCode != 200 || !strings.HasPrefix(r.Header.Get("Cache-Control"), "public") {
		t.Errorf("public output: %s %q", r.Status, r.Header.Get("Cache-Control"))
	}
	// Signed URLs expire.
	time.Sleep(cfg.PrivateURLTTL + time.Second)
	if r, body := h.get(t, thumb.URL, noKey); r.StatusCode != 403 || !strings.Contains(string(body), "url_expired") {
		t.Errorf("expired URL: %s %s, want 403 url_expired", r.Status, body)
	}
	if status, code, _ := request(t, "POST", h.URL()+"/v1/uploads", strings.NewReader(`{"name":"x","size":1,"visibility":"secret"}`), nil, -1); status != 400 {
		t.Errorf("bad visibility: %d %s", status, code)
	}
}

// TestSigningKeyRotation keeps URLs signed with a retired key valid
// while new ones are signed with the new key.
func TestSigningKeyRotation(t *testing.T) {
	cfg := testConfig(t)
	h := start(t, cfg)
	up, err := h.client.CreateUpload(ctxT(t, 10*time.Second), wire.UploadRequest{Name: "a.png", Size: 8})
	if err != nil {
		t.Fatal(err)
	}
	h.stop()
	secrets := filepath.Join(cfg.DataDir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "previous"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(secrets, "signing.key"), filepath.Join(secrets, "previous", "1.key")); err != nil {
		t.Fatal(err)
	}
	h = start(t, cfg)
	up2, err := h.client.CreateUpload(ctxT(t, 10*time.Second), wire.UploadRequest{Name: "b.png", Size: 8})
	if err != nil {
		t.Fatal(err)
	}
	keyOf := func(u string) string { return u[strings.Index(u, "X-Sluice-Key=")+13:][:8] }
	if keyOf(up.URL) == keyOf(up2.URL) {
		t.Fatalf("the new key did not sign: %s and %s", up.URL, up2.URL)
	}
	oldURL := strings.Replace(up.URL, up.URL[:strings.Index(up.URL, "/v1/")], h.URL(), 1)
	status, code, body := request(t, "PUT", oldURL, strings.NewReader("\x89PNG\r\n\x1a\n"), map[string]string{"Authorization": ""}, 8)
	if status != http.StatusOK {
		t.Fatalf("URL signed with the retired key: %d %s %s", status, code, body)
	}
}
