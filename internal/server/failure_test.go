package server

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestBadInput uploads each broken or hostile file. Those whose first
// bytes are not media (empty files, text, playlists, concat scripts)
// are refused at the edge with 415 and nothing stored, by PUT and by
// tus; the rest become failed assets with a one-line reason. The server
// goes on serving.
func TestBadInput(t *testing.T) { forSetups(t, testBadInput) }

func testBadInput(t *testing.T, cfg config.Config) {
	h := start(t, cfg)
	dir := t.TempDir()
	for _, bad := range mediatest.BadInputs(t, dir) {
		t.Run(bad.Name, func(t *testing.T) {
			data, err := os.ReadFile(bad.Path)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) == 0 || !upload.TypeAllowed(upload.DefaultAllowedTypes, upload.Sniff(data)) {
				before, err := h.bucket.List(ctxT(t, 10*time.Second), "")
				if err != nil {
					t.Fatal(err)
				}
				for _, threshold := range []int64{1 << 40, 0} { // PUT, then tus
					_, err := h.client.UploadFile(ctxT(t, time.Minute), bad.Path, client.UploadOptions{TusThreshold: threshold})
					var ce *client.Error
					if !errors.As(err, &ce) || ce.Status != http.StatusUnsupportedMediaType {
						t.Fatalf("upload (tus threshold %d): %v, want 415", threshold, err)
					}
				}
				if after, err := h.bucket.List(ctxT(t, 10*time.Second), ""); err != nil || len(after) != len(before) {
					t.Errorf("refused uploads stored objects: %d objects before, %d after (%v)", len(before), len(after), err)
				}
				return
			}
			a := h.wait(t, h.uploadPut(t, bad.Path))
			if a.Status != wire.StatusFailed {
				t.Fatalf("status = %s, want failed", a.Status)
			}
			if !strings.Contains(a.Error, bad.Reason) || strings.Contains(a.Error, "\n") {
				t.Errorf("error = %q, want one line containing %q", a.Error, bad.Reason)
			}
			// Steps run side by side, so one that does not depend on the
			// failing step (the audio of a clip whose video is broken)
			// may have succeeded and kept its outputs; no other step may
			// have left any.
			states := map[string]string{}
			failed := 0
			for _, s := range a.Steps {
				states[s.Name] = s.Status
				if s.Status == wire.StatusFailed {
					failed++
					if s.Error == "" {
						t.Errorf("failed step %s has no error", s.Name)
					}
				}
			}
			for _, o := range a.Outputs {
				if states[o.Step] != wire.StatusSucceeded {
					t.Errorf("output %s of step %s, which did not succeed", o.Name, o.Step)
				}
			}
			if failed == 0 {
				t.Errorf("steps = %+v, want a failed step", a.Steps)
			}
		})
	}
	good := mediatest.Generate(t, dir, "good", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	if a := h.wait(t, h.uploadPut(t, good)); a.Status != wire.StatusSucceeded {
		t.Fatalf("good upload after bad ones: %s %s", a.Status, a.Error)
	}
	if dls, err := h.client.DeadLetters(ctxT(t, 10*time.Second), 0); err != nil || len(dls.DeadLetters) != 0 {
		t.Errorf("bad media reached the dead-letter stream: %+v %v", dls, err)
	}
}

// request sends a raw request and returns the status, error code and
// body. It carries the test admin key unless hdr sets Authorization
// (to "" for none).
func request(t *testing.T, method, url string, body io.Reader, hdr map[string]string, contentLength int64) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentLength >= 0 {
		req.ContentLength = contentLength
	}
	setHeaders(req, hdr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var e wire.Error
	_ = json.Unmarshal(data, &e)
	return resp.StatusCode, e.Error.Code, data
}

func TestBadRequests(t *testing.T) {
	cfg := testConfig(t)
	cfg.Upload.MaxSize = 1 << 20
	h := start(t, cfg)
	base := h.URL()
	ctx := ctxT(t, time.Minute)
	// 1000 bytes that sniff as a PNG: content uploads accept.
	content := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("x"), 992)...)
	sum := sha256.Sum256(content)
	newUpload := func(size int64, sha string) wire.Upload {
		up, err := h.client.CreateUpload(ctx, wire.UploadRequest{Name: "f.bin", Size: size, SHA256: sha})
		if err != nil {
			t.Fatal(err)
		}
		return up
	}
	stored := func(id string) bool {
		_, err := h.bucket.Stat(ctx, upload.SourceKey(id))
		return err == nil
	}

	t.Run("api errors", func(t *testing.T) {
		tests := []struct {
			name, method, path, body string
			status                   int
			code                     string
		}{
			{"too large declared", "POST", "/v1/uploads", `{"name":"a","size":2000000}`, 413, "too_large"},
			{"malformed json", "POST", "/v1/uploads", `{"name":`, 400, "invalid_json"},
			{"unknown field", "POST", "/v1/uploads", `{"name":"a","size":1,"colour":"red"}`, 400, "invalid_json"},
			{"trailing data", "POST", "/v1/uploads", `{"name":"a","size":1} {}`, 400, "invalid_json"},
			{"negative size", "POST", "/v1/uploads", `{"name":"a","size":-1}`, 400, "invalid_request"},
			{"bad checksum format", "POST", "/v1/uploads", `{"name":"a","size":1,"sha256":"zz"}`, 400, "invalid_request"},
			{"unknown route", "GET", "/v2/nothing", "", 404, "not_found"},
			{"wrong method", "DELETE", "/v1/assets", "", 405, "method_not_allowed"},
			{"unknown asset", "GET", "/v1/assets/nope", "", 404, "not_found"},
			{"bad limit", "GET", "/v1/assets?limit=abc", "", 400, "invalid_request"},
			{"bad cursor", "GET", "/v1/assets?cursor=not-a-cursor", "", 400, "invalid_request"},
			{"bad status filter", "GET", "/v1/assets?status=weird", "", 400, "invalid_request"},
			{"bad dead-letter seq", "POST", "/v1/dead-letters/abc/replay", "", 400, "invalid_request"},
			{"missing dead letter", "POST", "/v1/dead-letters/999/replay", "", 404, "not_found"},
			{"unsigned put", "PUT", "/v1/uploads/x/content", "data", 403, "bad_signature"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				status, code, body := request(t, tt.method, base+tt.path, strings.NewReader(tt.body), nil, -1)
				if status != tt.status || code != tt.code {
					t.Errorf("%s %s = %d %q (%s), want %d %q", tt.method, tt.path, status, code, body, tt.status, tt.code)
				}
			})
		}
	})

	t.Run("put larger than declared gets 413 and stores nothing", func(t *testing.T) {
		up := newUpload(10, "")
		status, code, _ := request(t, "PUT", up.URL, bytes.NewReader(content), nil, int64(len(content)))
		if status != 413 || code != "too_large" {
			t.Errorf("PUT = %d %s, want 413 too_large", status, code)
		}
		// Chunked: no Content-Length, so the limit trips while streaming.
		status, code, _ = request(t, "PUT", up.URL, io.MultiReader(bytes.NewReader(content)), nil, -1)
		if status != 413 {
			t.Errorf("chunked PUT = %d %s, want 413", status, code)
		}
		if stored(up.AssetID) {
			t.Error("oversized body was stored")
		}
	})

	t.Run("put shorter than declared", func(t *testing.T) {
		up := newUpload(2000, "")
		status, _, _ := request(t, "PUT", up.URL, io.MultiReader(bytes.NewReader(content)), nil, -1)
		if status != 400 || stored(up.AssetID) {
			t.Errorf("short PUT = %d, stored %v; want 400, nothing stored", status, stored(up.AssetID))
		}
	})

	t.Run("checksum mismatch, then the right bytes", func(t *testing.T) {
		up := newUpload(int64(len(content)), hex.EncodeToString(sum[:]))
		wrong := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte("y"), len(content)-8)...)
		status, code, _ := request(t, "PUT", up.URL, bytes.NewReader(wrong), nil, int64(len(wrong)))
		if status != 400 || code != "checksum_mismatch" || stored(up.AssetID) {
			t.Fatalf("wrong bytes: %d %s stored=%v; want 400 checksum_mismatch, nothing stored", status, code, stored(up.AssetID))
		}
		status, _, body := request(t, "PUT", up.URL, bytes.NewReader(content), nil, int64(len(content)))
		if status != 200 {
			t.Fatalf("right bytes: %d %s", status, body)
		}
		// The URL is single-use once the content is in.
		status, code, _ = request(t, "PUT", up.URL, bytes.NewReader(content), nil, int64(len(content)))
		if status != 409 || code != "conflict" {
			t.Errorf("second PUT = %d %s, want 409 conflict", status, code)
		}
	})

	t.Run("checksum header", func(t *testing.T) {
		up := newUpload(int64(len(content)), "")
		bad := sha256.Sum256([]byte("other"))
		status, code, _ := request(t, "PUT", up.URL, bytes.NewReader(content), map[string]string{"X-Checksum-Sha256": hex.EncodeToString(bad[:])}, int64(len(content)))
		if status != 400 || code != "checksum_mismatch" {
			t.Errorf("PUT with wrong checksum header = %d %s, want 400 checksum_mismatch", status, code)
		}
	})

	t.Run("tampered and expired URLs", func(t *testing.T) {
		up := newUpload(int64(len(content)), "")
		u, _ := url.Parse(up.URL)
		q := u.Query()
		q.Set("X-Sluice-C-size", "99999")
		u.RawQuery = q.Encode()
		if status, code, _ := request(t, "PUT", u.String(), bytes.NewReader(content), nil, int64(len(content))); status != 403 || code != "bad_signature" {
			t.Errorf("tampered URL = %d %s, want 403 bad_signature", status, code)
		}
		signer, err := loadSigner(h.cfg.DataDir, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		q = signer.Sign("PUT", upload.ContentPath(up.AssetID), time.Now().Add(-time.Second), map[string]string{"size": "1000"})
		expired := base + upload.ContentPath(up.AssetID) + "?" + q.Encode()
		if status, code, _ := request(t, "PUT", expired, bytes.NewReader(content), nil, int64(len(content))); status != 403 || code != "url_expired" {
			t.Errorf("expired URL = %d %s, want 403 url_expired", status, code)
		}
		if stored(up.AssetID) {
			t.Error("rejected PUT stored content")
		}
	})

	t.Run("cors preflight", func(t *testing.T) {
		up := newUpload(10, "")
		req, _ := http.NewRequest(http.MethodOptions, up.URL, nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") ||
			!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
			t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
		req, _ = http.NewRequest(http.MethodOptions, base+"/v1/tus/", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("Access-Control-Allow-Origin") == "" {
			t.Errorf("tus preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})

	t.Run("tus too large", func(t *testing.T) {
		_, err := h.client.TusUpload(ctx, bytes.NewReader(nil), 2<<20, client.TusOptions{Name: "big"})
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 413 {
			t.Errorf("tus create of 2 MiB with a 1 MiB limit: %v, want 413", err)
		}
	})

	t.Run("file names are sanitized", func(t *testing.T) {
		up, err := h.client.CreateUpload(ctx, wire.UploadRequest{Name: "../../etc/\x00pass\u200bwd", Size: 1})
		if err != nil {
			t.Fatal(err)
		}
		a, err := h.client.Asset(ctx, up.AssetID)
		if err != nil || a.Name != "passwd" {
			t.Errorf("name = %q (%v), want passwd", a.Name, err)
		}
	})

	// Still serving.
	if status, _, _ := request(t, "GET", base+"/healthz", nil, nil, -1); status != 200 {
		t.Errorf("healthz after bad requests: %d", status)
	}
}

// TestDeadLetterAndReplay: an event whose source object is missing fails
// every delivery and is dead-lettered with the asset marked failed; once
// the object is there, replaying the dead letter completes the asset.
func TestDeadLetterAndReplay(t *testing.T) {
	h := start(t, testConfig(t))
	ctx := ctxT(t, 2*time.Minute)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	assetID, restore := h.lostUpload(t, clip)
	a := h.wait(t, assetID)
	if a.Status != wire.StatusFailed || !strings.Contains(a.Error, "gave up after 3 attempts") || !strings.Contains(a.Error, "not found") {
		t.Fatalf("asset = %s %q, want failed after 3 attempts, object not found", a.Status, a.Error)
	}
	up := wire.Upload{AssetID: assetID}
	var (
		dls wire.DeadLetterList
		err error
	)
	waitUntil(t, "dead letter listed", func() bool {
		dls, err = h.client.DeadLetters(ctx, 0)
		return err == nil && len(dls.DeadLetters) == 1
	})
	dl := dls.DeadLetters[0]
	if dl.AssetID != up.AssetID || dl.Deliveries != 3 || !strings.Contains(dl.Reason, "not found") {
		t.Errorf("dead letter = %+v", dl)
	}

	restore()
	status, _, body := request(t, "POST", h.URL()+"/v1/dead-letters/"+strconv.FormatUint(dl.Seq, 10)+"/replay", nil, nil, -1)
	if status != http.StatusAccepted {
		t.Fatalf("replay = %d %s", status, body)
	}
	waitUntil(t, "replayed asset to succeed", func() bool {
		a, err = h.client.Asset(ctx, up.AssetID)
		return err == nil && a.Status == wire.StatusSucceeded
	})
	if len(a.Outputs) != 2 {
		t.Errorf("outputs after replay = %+v", a.Outputs)
	}
	if dls, _ := h.client.DeadLetters(ctx, 0); len(dls.DeadLetters) != 0 {
		t.Errorf("dead letters after replay = %+v, want none", dls.DeadLetters)
	}
}

// lostUpload records an upload of clip and announces it, but without its
// bytes in the bucket, so that every delivery of its event fails and the
// event is dead-lettered. restore puts the bytes in place.
func (h *harness) lostUpload(t *testing.T, clip string) (assetID string, restore func()) {
	t.Helper()
	ctx := ctxT(t, time.Minute)
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	md := md5.Sum(data)
	etag := hex.EncodeToString(md[:])
	up, err := h.client.CreateUpload(ctx, wire.UploadRequest{Name: "lost" + filepath.Ext(clip), Size: int64(len(data))})
	if err != nil {
		t.Fatal(err)
	}
	key := upload.SourceKey(up.AssetID)
	if err := h.store.MarkUploaded(ctx, up.AssetID, store.Object{Bucket: BucketName, Key: key, Size: int64(len(data)), ETag: etag}); err != nil {
		t.Fatal(err)
	}
	ev := event.ObjectCreated{Action: event.ActionPutObject, Bucket: BucketName, Key: key, Size: int64(len(data)), ETag: etag, EventTime: time.Now(), AssetID: up.AssetID}
	if err := h.queue.Publish(ctx, ev); err != nil {
		t.Fatal(err)
	}
	return up.AssetID, func() {
		t.Helper()
		if _, err := h.bucket.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{Size: -1}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReconcileRequeuesLostEvent: an upload that is stored and recorded
// but whose event never reached the queue is found and processed.
func TestReconcileRequeuesLostEvent(t *testing.T) {
	h := start(t, testConfig(t))
	ctx := ctxT(t, 2*time.Minute)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	f, err := os.Open(clip)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	up, err := h.client.CreateUpload(ctx, wire.UploadRequest{Name: "quiet.mp4", Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := h.bucket.Put(ctx, upload.SourceKey(up.AssetID), f, blob.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	err = h.store.MarkUploaded(ctx, up.AssetID, store.Object{Bucket: BucketName, Key: attrs.Key, Size: attrs.Size, ETag: attrs.ETag, ContentType: "video/mp4"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	a := h.wait(t, up.AssetID)
	if a.Status != wire.StatusSucceeded {
		t.Fatalf("status = %s %q, want succeeded", a.Status, a.Error)
	}
	if took := time.Since(start); took < h.cfg.Upload.StaleAfter {
		t.Errorf("processed after %s, before it was stale (%s): the event was not lost?", took, h.cfg.Upload.StaleAfter)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
