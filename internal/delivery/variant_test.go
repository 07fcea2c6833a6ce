package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/wire"
)

func TestParseVariantParams(t *testing.T) {
	tests := []struct {
		format, query string
		want          VariantParams
	}{
		{"jpg", "", VariantParams{Format: "jpg", Width: 640, Fit: "clip"}},
		{"jpg", "time=12.5&width=320", VariantParams{Format: "jpg", Time: 12.5, TimeSet: true, Width: 320, Fit: "clip"}},
		{"png", "time=12.5s&height=90", VariantParams{Format: "png", Time: 12.5, TimeSet: true, Height: 90, Fit: "clip"}},
		{"jpg", "time=50%25&width=100&height=100&fit=crop", VariantParams{Format: "jpg", Time: 50, Percent: true, TimeSet: true, Width: 100, Height: 100, Fit: "crop"}},
		{"jpg", "time=0.0004", VariantParams{Format: "jpg", Time: 0, TimeSet: true, Width: 640, Fit: "clip"}},
		{"webp", "", VariantParams{Format: "webp", Width: 640, Fit: "clip"}},
		{"webp", "fps=5", VariantParams{Format: "webp", Width: 320, Fit: "clip", Duration: 3, FPS: 5}},
		{"gif", "", VariantParams{Format: "gif", Width: 320, Fit: "clip", Duration: 3, FPS: 10}},
		{"gif", "duration=1.5s&fps=30&width=200&height=100&fit=fill", VariantParams{Format: "gif", Width: 200, Height: 100, Fit: "fill", Duration: 1.5, FPS: 30}},
		{"jpg", "width=1920&X-Sluice-Expires=1&X-Sluice-Signature=x", VariantParams{Format: "jpg", Width: 1920, Fit: "clip"}},
	}
	for _, tt := range tests {
		got, err := ParseVariantParams(tt.format, tt.query, Limits{})
		if err != nil {
			t.Errorf("%s?%s: %v", tt.format, tt.query, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s?%s:\ngot  %+v\nwant %+v", tt.format, tt.query, got, tt.want)
		}
		again, err := ParseVariantParams(tt.format, got.Query(), Limits{})
		if err != nil || again != got {
			t.Errorf("%s?%s: canonical query %q parses to %+v, %v", tt.format, tt.query, got.Query(), again, err)
		}
	}
}

// TestVariantRejects checks each rejection's status, code and message
// through the handler.
func TestVariantRejects(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	tests := []struct {
		path   string
		status int
		code   string
		msg    string
	}{
		{"/v1/assets/a1/thumbnail.jpg?width=8", 400, "invalid_parameter", "width: must be between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?width=1921", 400, "invalid_parameter", "width: must be between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?width=-20", 400, "invalid_parameter", "width: must be a whole number between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?width=%2B320", 400, "invalid_parameter", "width: must be a whole number between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?width=", 400, "invalid_parameter", "width: must be a whole number between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?height=3.5", 400, "invalid_parameter", "height: must be a whole number between 16 and 1920"},
		{"/v1/assets/a1/thumbnail.jpg?width=100&width=200", 400, "invalid_parameter", "width: given more than once"},
		{"/v1/assets/a1/thumbnail.jpg?time=abc", 400, "invalid_parameter", "time: must be seconds (12.5 or 12.5s) or a percentage of the duration (50%)"},
		{"/v1/assets/a1/thumbnail.jpg?time=-1", 400, "invalid_parameter", "time: must be seconds (12.5 or 12.5s) or a percentage of the duration (50%)"},
		{"/v1/assets/a1/thumbnail.jpg?time=1e3", 400, "invalid_parameter", "time: must be seconds (12.5 or 12.5s) or a percentage of the duration (50%)"},
		{"/v1/assets/a1/thumbnail.jpg?time=NaN", 400, "invalid_parameter", "time: must be seconds (12.5 or 12.5s) or a percentage of the duration (50%)"},
		{"/v1/assets/a1/thumbnail.jpg?time=101%25", 400, "invalid_parameter", "time: a percentage must be at most 100%"},
		{"/v1/assets/a1/thumbnail.jpg?fit=stretch&width=100&height=100", 400, "invalid_parameter", `fit: "stretch" is not one of crop, clip, scale, fill`},
		{"/v1/assets/a1/thumbnail.jpg?fit=crop&width=100", 400, "invalid_parameter", "fit: crop needs both width and height"},
		{"/v1/assets/a1/thumbnail.jpg?duration=2", 400, "invalid_parameter", "duration: only .gif and .webp thumbnails are animated"},
		{"/v1/assets/a1/thumbnail.png?fps=10", 400, "invalid_parameter", "fps: only .gif and .webp thumbnails are animated"},
		{"/v1/assets/a1/thumbnail.gif?duration=0", 400, "invalid_parameter", "duration: must be seconds above 0 and at most 10"},
		{"/v1/assets/a1/thumbnail.gif?duration=11", 400, "invalid_parameter", "duration: must be seconds above 0 and at most 10"},
		{"/v1/assets/a1/thumbnail.webp?fps=31", 400, "invalid_parameter", "fps: must be between 1 and 30"},
		{"/v1/assets/a1/thumbnail.gif?fps=0", 400, "invalid_parameter", "fps: must be between 1 and 30"},
		{"/v1/assets/a1/thumbnail.jpg?size=big", 400, "invalid_parameter", `"size": unknown parameter (known: time, width, height, fit, duration, fps)`},
		{"/v1/assets/a1/thumbnail.jpg?width=100;height=100", 400, "invalid_parameter", "query: malformed query string"},
		{"/v1/assets/a1/thumbnail.jpg?width=%zz", 400, "invalid_parameter", "query: malformed query string"},
		// The pixel budget is checked against the video: the 3 s clip gives
		// at most 90 frames at 30 fps, and clip never upscales its 320x240.
		{"/v1/assets/a1/thumbnail.gif?width=1920&duration=10&fps=30&fit=scale&height=1440", 400, "invalid_parameter",
			"animation: 1920x1440 for 90 frames is 248832000 pixels, over the limit of 40000000; lower width, height, duration or fps"},
		{"/v1/assets/a1/thumbnail.bmp", 404, "not_found", ErrNoSuchVariant.Error()},
		{"/v1/assets/a1/poster.jpg", 404, "not_found", ErrNoSuchVariant.Error()},
		{"/v1/assets/nope/thumbnail.jpg", 404, "not_found", "no such asset"},
		{"/v1/assets/pending/thumbnail.jpg", 409, "not_ready", ErrNotProbed.Error()},
		{"/v1/assets/failed/thumbnail.jpg", 409, "asset_failed", "asset failed processing: not a recognized audio or video file"},
		{"/v1/assets/audio/thumbnail.jpg", 404, "no_video", "asset has no video"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := h.get(t, tt.path, nil)
			if res.StatusCode != tt.status {
				t.Errorf("got status %d, want %d", res.StatusCode, tt.status)
			}
			if got := res.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("got Cache-Control %q, want no-store", got)
			}
			var doc wire.Error
			if err := json.Unmarshal(res.body, &doc); err != nil {
				t.Fatalf("body %q: %v", res.body, err)
			}
			if doc.Error.Code != tt.code || doc.Error.Message != tt.msg {
				t.Errorf("got %s %q, want %s %q", doc.Error.Code, doc.Error.Message, tt.code, tt.msg)
			}
		})
	}
	if n := h.v.renders.Load(); n != 0 {
		t.Errorf("rejected requests started %d renders", n)
	}
	res := h.do(t, httptest.NewRequest(http.MethodPost, "/v1/assets/a1/thumbnail.jpg", nil))
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: got %d, Allow %q; want 405, GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
}

// TestVariantServe renders a JPEG on the first request and serves the
// stored one afterwards, immutable, with 304s for revalidation; an
// equivalent request (the same time, written differently) finds it too.
func TestVariantServe(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	res := h.get(t, "/v1/assets/a1/thumbnail.jpg?time=50%25&width=160", nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("got %d %s", res.StatusCode, res.body)
	}
	if got := res.Header.Get("Content-Type"); got != "image/jpeg" {
		t.Errorf("got Content-Type %q", got)
	}
	if got := res.Header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
		t.Errorf("got Cache-Control %q", got)
	}
	if w, hh := h.dimensions(t, res.body, "jpg"); w != 160 || hh != 120 {
		t.Errorf("got %dx%d, want 160x120", w, hh)
	}
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	objs, err := h.bucket.List(context.Background(), "assets/a1/variants/")
	if err != nil || len(objs) != 1 || objs[0].ContentType != "image/jpeg" || !strings.HasSuffix(objs[0].Key, ".jpg") {
		t.Fatalf("stored variants: %+v, %v", objs, err)
	}

	// 1.5 s is 50% of the 3 s clip.
	again := h.get(t, "/v1/assets/a1/thumbnail.jpg?width=160&time=1.5s", nil)
	if again.StatusCode != http.StatusOK || !bytes.Equal(again.body, res.body) || again.Header.Get("ETag") != etag {
		t.Errorf("second request: got %d, ETag %s, %d bytes; want the first's", again.StatusCode, again.Header.Get("ETag"), len(again.body))
	}
	cond := h.get(t, "/v1/assets/a1/thumbnail.jpg?time=50%25&width=160", http.Header{"If-None-Match": {etag}})
	if cond.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: got %d, want 304", cond.StatusCode)
	}
	head := h.do(t, httptest.NewRequest(http.MethodHead, "/v1/assets/a1/thumbnail.jpg?time=50%25&width=160", nil))
	if head.StatusCode != http.StatusOK || len(head.body) != 0 || head.Header.Get("ETag") != etag {
		t.Errorf("HEAD: got %d, %d bytes, ETag %s", head.StatusCode, len(head.body), head.Header.Get("ETag"))
	}
	if n := h.v.renders.Load(); n != 1 {
		t.Errorf("got %d renders, want 1", n)
	}

	// Another width is another variant.
	other := h.get(t, "/v1/assets/a1/thumbnail.jpg?time=50%25&width=80", nil)
	if w, hh := h.dimensions(t, other.body, "jpg"); w != 80 || hh != 60 {
		t.Errorf("got %dx%d, want 80x60", w, hh)
	}
	if n := h.v.renders.Load(); n != 2 {
		t.Errorf("got %d renders, want 2", n)
	}
}

// TestVariantFormats checks the fit modes' sizes and the animations'
// frame counts. Stills run in the WebAssembly engine and animations
// natively, as in auto mode; the native case checks a still there too.
func TestVariantFormats(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	tests := []struct {
		path   string
		format string
		w, h   int
		frames int
	}{
		{"/v1/assets/a1/thumbnail.jpg?width=100&height=100&fit=crop", "jpg", 100, 100, 0},
		{"/v1/assets/a1/thumbnail.jpg?width=100&height=100&fit=clip", "jpg", 100, 75, 0},
		{"/v1/assets/a1/thumbnail.jpg?width=100&height=100", "jpg", 100, 75, 0},
		{"/v1/assets/a1/thumbnail.png?width=100&height=100&fit=scale", "png", 100, 100, 0},
		{"/v1/assets/a1/thumbnail.webp?width=100&height=100&fit=fill", "webp", 100, 100, 0},
		{"/v1/assets/a1/thumbnail.png?height=48&time=100%25", "png", 64, 48, 0},
		{"/v1/assets/a1/thumbnail.jpg?width=1920", "jpg", 320, 240, 0},
		{"/v1/assets/a1/thumbnail.gif?duration=2&fps=5&width=96", "gif", 96, 72, 10},
		{"/v1/assets/a1/thumbnail.gif?time=90%25&duration=1&fps=8&width=64&height=64&fit=crop", "gif", 64, 64, 8},
		{"/v1/assets/a1/thumbnail.webp?duration=1&fps=5&width=96", "webp", 96, 72, 5},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res := h.get(t, tt.path, nil)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("got %d %s", res.StatusCode, res.body)
			}
			w, hh, frames := h.pictureInfo(t, res.body, tt.format)
			if w != tt.w || hh != tt.h || frames != tt.frames {
				t.Errorf("got %dx%d, %d frames; want %dx%d, %d frames", w, hh, frames, tt.w, tt.h, tt.frames)
			}
		})
	}

	native := newHarness(t, VariantConfig{Engine: media.ModeNative})
	res := native.get(t, "/v1/assets/a1/thumbnail.jpg?width=100&height=100&fit=crop", nil)
	if w, hh := native.dimensions(t, res.body, "jpg"); res.StatusCode != 200 || w != 100 || hh != 100 {
		t.Errorf("native: got %d, %dx%d; want 200, 100x100", res.StatusCode, w, hh)
	}
}

// TestVariantRenderFailure: a source that probes but whose frames do not
// decode is a 422, and nothing is stored.
func TestVariantRenderFailure(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	var src string
	for _, b := range mediatest.BadInputs(t, t.TempDir()) {
		if b.Name == "undecodable-mp4" {
			src = b.Path
		}
	}
	h.addAsset(t, "broken", src)
	res := h.get(t, "/v1/assets/broken/thumbnail.jpg", nil)
	var doc wire.Error
	_ = json.Unmarshal(res.body, &doc)
	if res.StatusCode != http.StatusUnprocessableEntity || doc.Error.Code != "render_failed" {
		t.Errorf("got %d %s, want 422 render_failed", res.StatusCode, res.body)
	}
	if objs, _ := h.bucket.List(context.Background(), "assets/broken/"); len(objs) != 0 {
		t.Errorf("stored %+v", objs)
	}
}

// TestVariantSingleFlight: concurrent requests for one variant share one
// render.
func TestVariantSingleFlight(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	release := h.block()
	const n = 6
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = h.get(t, "/v1/assets/a1/thumbnail.jpg?width=120", nil)
		}()
	}
	waitFor(t, "all requests to join the render", func() bool { return h.v.renders.Load() == 1 && h.v.shared.Load() == n-1 })
	close(release)
	wg.Wait()
	for i, res := range results {
		if res.StatusCode != http.StatusOK || !bytes.Equal(res.body, results[0].body) {
			t.Errorf("request %d: got %d, %d bytes", i, res.StatusCode, len(res.body))
		}
	}
	if w, hh := h.dimensions(t, results[0].body, "jpg"); w != 120 || hh != 90 {
		t.Errorf("got %dx%d, want 120x90", w, hh)
	}
	if got := h.v.renders.Load(); got != 1 {
		t.Errorf("got %d renders, want 1", got)
	}
}

// TestVariantBusy: with every slot taken, a request beyond the queue, or
// one that waits longer than Wait, gets a 503 with Retry-After.
func TestVariantBusy(t *testing.T) {
	busy := func(t *testing.T, res response) {
		t.Helper()
		var doc wire.Error
		_ = json.Unmarshal(res.body, &doc)
		if res.StatusCode != http.StatusServiceUnavailable || doc.Error.Code != "busy" || res.Header.Get("Retry-After") != "3" {
			t.Errorf("got %d %s, Retry-After %q; want 503 busy, 3", res.StatusCode, res.body, res.Header.Get("Retry-After"))
		}
	}
	t.Run("no queue", func(t *testing.T) {
		h := newHarness(t, VariantConfig{Concurrency: 1, Queue: -1, RetryAfter: 3 * time.Second})
		release := h.block()
		first := h.getAsync(t, "/v1/assets/a1/thumbnail.jpg?width=64")
		waitFor(t, "the first render", func() bool { return h.v.renders.Load() == 1 })
		busy(t, h.get(t, "/v1/assets/a1/thumbnail.jpg?width=96", nil))
		close(release)
		if res := <-first; res.StatusCode != http.StatusOK {
			t.Errorf("first: got %d %s", res.StatusCode, res.body)
		}
		// With the slot free again, the refused variant renders.
		if res := h.get(t, "/v1/assets/a1/thumbnail.jpg?width=96", nil); res.StatusCode != http.StatusOK {
			t.Errorf("after: got %d %s", res.StatusCode, res.body)
		}
	})
	t.Run("queue full", func(t *testing.T) {
		h := newHarness(t, VariantConfig{Concurrency: 1, Queue: 1, Wait: time.Hour, RetryAfter: 3 * time.Second})
		release := h.block()
		first := h.getAsync(t, "/v1/assets/a1/thumbnail.jpg?width=64")
		waitFor(t, "the first render", func() bool { return h.v.renders.Load() == 1 })
		second := h.getAsync(t, "/v1/assets/a1/thumbnail.jpg?width=80")
		waitFor(t, "the second to queue", func() bool { return h.v.waiting.Load() == 1 })
		busy(t, h.get(t, "/v1/assets/a1/thumbnail.jpg?width=96", nil))
		close(release)
		for _, c := range []chan response{first, second} {
			if res := <-c; res.StatusCode != http.StatusOK {
				t.Errorf("got %d %s", res.StatusCode, res.body)
			}
		}
	})
	t.Run("wait too long", func(t *testing.T) {
		h := newHarness(t, VariantConfig{Concurrency: 1, Queue: 4, Wait: time.Millisecond, RetryAfter: 2500 * time.Millisecond})
		release := h.block()
		defer close(release)
		first := h.getAsync(t, "/v1/assets/a1/thumbnail.jpg?width=64")
		waitFor(t, "the first render", func() bool { return h.v.renders.Load() == 1 })
		busy(t, h.get(t, "/v1/assets/a1/thumbnail.jpg?width=96", nil))
		go func() { <-first }()
	})
}

// TestVariantClose ends a render in progress.
func TestVariantClose(t *testing.T) {
	h := newHarness(t, VariantConfig{})
	h.block() // never released: only Close ends the render
	first := h.getAsync(t, "/v1/assets/a1/thumbnail.jpg?width=64")
	waitFor(t, "the render", func() bool { return h.v.renders.Load() == 1 })
	if err := h.v.Close(); err != nil {
		t.Fatal(err)
	}
	if res := <-first; res.StatusCode != http.StatusInternalServerError {
		t.Errorf("got %d %s, want 500", res.StatusCode, res.body)
	}
}

// FuzzVariantParams checks that the parser never panics, that what it
// accepts is in bounds, and that the canonical query reads back the same.
func FuzzVariantParams(f *testing.F) {
	for _, s := range []string{
		"", "time=12.5&width=320", "time=12.5s", "time=50%25&width=100&height=100&fit=crop",
		"duration=2&fps=10", "width=1&width=2", "fit=fill&width=16&height=1920", "time=9999999.999999",
		"time=1e3", "width=%zz", "width=100;height=1", "a=b&c", "X-Sluice-Expires=1&time=0",
		"duration=10s&fps=30", "time=100%25", "time=.5", "width=0016",
	} {
		for _, format := range []string{"jpg", "webp", "gif"} {
			f.Add(format, s)
		}
	}
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, format, query string) {
		p, err := ParseVariantParams(format, query, Limits{})
		if err != nil {
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("%T %v, want a *ParamError", err, err)
			}
			return
		}
		switch {
		case p.Width != 0 && (p.Width < minDimension || p.Width > lim.MaxDimension),
			p.Height != 0 && (p.Height < minDimension || p.Height > lim.MaxDimension),
			p.Width == 0 && p.Height == 0,
			p.Time < 0, p.Percent && p.Time > 100, math.IsNaN(p.Time),
			p.Duration < 0, p.Duration > maxAnimation, (p.Duration > 0) != (p.FPS > 0), p.FPS > maxFPS,
			!isFit(p.Fit):
			t.Fatalf("%s?%s: out of bounds: %+v", format, query, p)
		}
		again, err := ParseVariantParams(format, p.Query(), Limits{})
		if err != nil || again != p {
			t.Fatalf("%s?%s: canonical %q reads back as %+v, %v; want %+v", format, query, p.Query(), again, err, p)
		}
		o := media.FrameOptions{Format: p.Format, Width: p.Width, Height: p.Height, Fit: p.Fit, Duration: p.Duration, FPS: p.FPS}
		if err := o.Validate(); err != nil {
			t.Fatalf("%s?%s: %v", format, query, err)
		}
	})
}

// harness is a Variants over a file bucket holding a 3 s 320x240 clip as
// asset a1, and a few assets in other states, with the engines in auto
// mode: native FFmpeg and the WebAssembly build.
type harness struct {
	v      *Variants
	bucket *fileblob.Bucket
	assets fakeAssets
	mux    *http.ServeMux
}

type fakeAssets map[string]store.Asset

func (f fakeAssets) GetAsset(ctx context.Context, id string) (store.Asset, error) {
	a, ok := f[id]
	if !ok {
		return store.Asset{}, store.ErrNotFound
	}
	return a, nil
}

var (
	wasmOnce sync.Once
	wasmEng  *media.Wasm
)

func newHarness(t *testing.T, cfg VariantConfig) *harness {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	n, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		t.Fatal(err)
	}
	wasmOnce.Do(func() { wasmEng = media.NewWasm(media.WasmConfig{CacheDir: mediatest.WasmCacheDir()}) })
	if err := wasmEng.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	e := &media.Engines{Native: n, Wasm: wasmEng, Default: media.ModeAuto}
	root := t.TempDir()
	b, err := fileblob.Open(root, "media")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	h := &harness{bucket: b, assets: fakeAssets{}}
	cfg.ScratchDir = filepath.Join(root, "scratch")
	if err := os.Mkdir(cfg.ScratchDir, 0o750); err != nil {
		t.Fatal(err)
	}
	h.v, err = NewVariants(cfg, New(b, telemetry.New()), h.assets, e)
	if err != nil {
		t.Fatal(err)
	}
	h.v.Log = slog.New(slog.DiscardHandler)
	t.Cleanup(func() { h.v.Close() })
	h.mux = http.NewServeMux()
	for _, f := range VariantFiles {
		h.mux.Handle("GET /v1/assets/{id}/"+f, h.v)
	}
	h.mux.Handle("/v1/assets/{id}/{file}", h.v)

	dir := t.TempDir()
	h.addAsset(t, "a1", mediatest.Generate(t, dir, "clip", mediatest.Clip{Width: 320, Height: 240, Duration: 3, Video: true, Audio: true}))
	h.addAsset(t, "audio", mediatest.Generate(t, dir, "audio", mediatest.Clip{Duration: 1, Audio: true, Ext: ".m4a"}))
	h.assets["pending"] = store.Asset{ID: "pending", Key: "uploads/pending", Status: store.StatusProcessing}
	h.assets["failed"] = store.Asset{ID: "failed", Key: "uploads/failed", Status: store.StatusFailed, Error: "not a recognized audio or video file"}
	return h
}

// addAsset stores src as an asset's source and records its probe.
func (h *harness) addAsset(t *testing.T, id, src string) {
	t.Helper()
	ctx := context.Background()
	m, err := h.v.engines.Native.Probe(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key := "uploads/" + id + "/source"
	a, err := h.bucket.Put(ctx, key, f, blob.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	h.assets[id] = store.Asset{ID: id, Key: key, ETag: a.ETag, Status: store.StatusSucceeded, Media: raw}
}

// block makes renders wait until the returned channel is closed or their
// context ends, then render for real.
func (h *harness) block() chan struct{} {
	release := make(chan struct{})
	render := h.v.renderFrame
	h.v.renderFrame = func(ctx context.Context, input string, m *pipeline.Media, dir, name string, o media.FrameOptions) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return render(ctx, input, m, dir, name, o)
	}
	return release
}

type response struct {
	*http.Response
	body []byte
}

func (h *harness) do(t *testing.T, req *http.Request) response {
	rec := httptest.NewRecorder()
	h.mux.ServeHTTP(rec, req)
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return response{res, body}
}

func (h *harness) get(t *testing.T, target string, header http.Header) response {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	return h.do(t, req)
}

func (h *harness) getAsync(t *testing.T, target string) chan response {
	c := make(chan response, 1)
	go func() { c <- h.get(t, target, nil) }()
	return c
}

func (h *harness) dimensions(t *testing.T, body []byte, format string) (int, int) {
	t.Helper()
	w, hh, _ := h.pictureInfo(t, body, format)
	return w, hh
}

// pictureInfo returns a picture's size and, for an animation, its frame
// count (0 for a still). FFmpeg 5.1 cannot decode animated WebP, so that
// is read from its RIFF chunks.
func (h *harness) pictureInfo(t *testing.T, body []byte, format string) (w, hh, frames int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "picture."+format)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if format == "webp" {
		w, hh, frames, err := mediatest.WebPInfo(body)
		if err != nil {
			t.Fatal(err)
		}
		if frames > 0 {
			return w, hh, frames
		}
	}
	w, hh = mediatest.Dimensions(t, path)
	if format == "gif" {
		out := mediatest.Run(t, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path)
		if _, err := fmt.Sscanf(string(out), "%d", &frames); err != nil {
			t.Fatalf("frame count: %q", out)
		}
	}
	return w, hh, frames
}

// waitFor polls cond until it holds; the deadline only stops a hung test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
