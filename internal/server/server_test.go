package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// harness is a server running in-process on a random port.
type harness struct {
	*Server
	client *client.Client
	stop   func()
}

// testConfig is the default configuration with short timers, so that
// retries, redeliveries and reconciles happen within a test.
func testConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.ReconcileInterval = 500 * time.Millisecond
	cfg.Upload.StaleAfter = 5 * time.Second
	cfg.Queue.AckWait = 5 * time.Second
	cfg.Queue.MaxDeliver = 3
	cfg.Queue.Backoff = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}
	cfg.Worker.Lease = 5 * time.Second
	cfg.Worker.ShutdownGrace = 10 * time.Second
	cfg.Pipelines = []string{mediatest.LightPipeline(t, 320)}
	// Compile FFmpeg to native code once per machine, not once per test.
	cfg.Wasm.CacheDir = mediatest.WasmCacheDir()
	cfg.AdminToken = testToken
	return cfg
}

// testToken is the admin key of every test server.
var testToken = auth.NewToken()

// setHeaders sets hdr on req, and the test admin key unless hdr sets
// Authorization itself ("" for no key).
func setHeaders(req *http.Request, hdr map[string]string) {
	if _, ok := hdr["Authorization"]; !ok {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
}

// forSetups runs an end-to-end test on each engine setup: "auto" with
// native FFmpeg installed, and "wasm-only" with FFmpeg hidden from PATH,
// as on a machine that never installed it.
func forSetups(t *testing.T, test func(t *testing.T, cfg config.Config)) {
	t.Run("auto", func(t *testing.T) { test(t, testConfig(t)) })
	t.Run("wasm-only", func(t *testing.T) {
		mediatest.HidePATH(t)
		test(t, testConfig(t))
	})
}

func start(t testing.TB, cfg config.Config) *harness {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, newTestLogger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	h := &harness{Server: s, client: client.New(s.URL(), cfg.AdminToken)}
	var once bool
	h.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server run: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("server did not stop within 60s")
		}
	}
	t.Cleanup(h.stop)
	return h
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// uploadPut uploads a file with a signed PUT and returns the asset id.
func (h *harness) uploadPut(t testing.TB, path string) string {
	t.Helper()
	id, err := h.client.UploadFile(ctxT(t, time.Minute), path, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatalf("upload %s: %v", path, err)
	}
	return id
}

func (h *harness) wait(t testing.TB, id string) wire.Asset {
	t.Helper()
	a, err := h.client.Wait(ctxT(t, 2*time.Minute), id, 50*time.Millisecond)
	if err != nil {
		t.Fatalf("wait for %s: %v (last: %+v)", id, err, a)
	}
	return a
}

func (h *harness) get(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	setHeaders(req, hdr)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func output(t *testing.T, a wire.Asset, name string) wire.Output {
	t.Helper()
	for _, o := range a.Outputs {
		if o.Name == name {
			return o
		}
	}
	t.Fatalf("asset %s has no output %q (outputs: %+v)", a.ID, name, a.Outputs)
	return wire.Output{}
}

// download saves an output to a temp file for ffprobe.
func (h *harness) download(t *testing.T, o wire.Output) string {
	t.Helper()
	resp, body := h.get(t, o.URL, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", o.URL, resp.Status)
	}
	p := filepath.Join(t.TempDir(), path.Base(o.Name))
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEndToEnd(t *testing.T) { forSetups(t, testEndToEnd) }

func testEndToEnd(t *testing.T, cfg config.Config) {
	h := start(t, cfg)
	_, lookErr := exec.LookPath("ffmpeg")
	if got, want := h.engines.Native != nil, lookErr == nil; got != want {
		t.Fatalf("server has native FFmpeg: %v, but ffmpeg on PATH: %v", got, want)
	}
	media := t.TempDir()
	video := mediatest.Generate(t, media, "clip", mediatest.Clip{Width: 1280, Height: 720, Duration: 4, Video: true, Audio: true})
	audioOnly := mediatest.Generate(t, media, "song", mediatest.Clip{Duration: 3.5, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"})

	putID := h.uploadPut(t, video)
	f, err := os.Open(video)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	// Small chunks so that the tus upload takes several PATCH requests.
	tusID, err := h.client.TusUpload(ctxT(t, time.Minute), f, fi.Size(), client.TusOptions{Name: "tus clip.mp4", ChunkSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	audioID := h.uploadPut(t, audioOnly)

	for _, tc := range []struct {
		id, name string
	}{{putID, "clip.mp4"}, {tusID, "tus clip.mp4"}} {
		a := h.wait(t, tc.id)
		if a.Status != wire.StatusSucceeded {
			t.Fatalf("%s: status %s (%s), want succeeded", tc.name, a.Status, a.Error)
		}
		if a.Name != tc.name {
			t.Errorf("name = %q, want %q", a.Name, tc.name)
		}
		var m struct {
			Duration      float64
			Width, Height int
		}
		if err := json.Unmarshal(a.Media, &m); err != nil || m.Width != 1280 || m.Height != 720 || math.Abs(m.Duration-4) > 0.1 {
			t.Errorf("media = %s, want 1280x720, 4s", a.Media)
		}
		var names []string
		for _, s := range a.Steps {
			names = append(names, s.Name+":"+s.Status)
			if s.Attempts != 1 || s.StartedAt == nil || s.FinishedAt == nil {
				t.Errorf("step %+v: want one attempt with timings", s)
			}
		}
		if got, want := strings.Join(names, ","), "probe:succeeded,thumbnail:succeeded,audio:succeeded"; got != want {
			t.Errorf("steps = %s, want %s", got, want)
		}
		thumb := h.download(t, output(t, a, "thumbnail.jpg"))
		if w, hgt := mediatest.Dimensions(t, thumb); w != 320 || hgt != 180 {
			t.Errorf("thumbnail = %dx%d, want 320x180", w, hgt)
		}
		audio := h.download(t, output(t, a, "audio.m4a"))
		if d := mediatest.Duration(t, audio); math.Abs(d-4) > 0.1 {
			t.Errorf("audio duration = %.3f, want 4 ± 0.1", d)
		}
	}

	a := h.wait(t, audioID)
	if a.Status != wire.StatusSucceeded || len(a.Outputs) != 1 || a.Outputs[0].Name != "audio.m4a" {
		t.Fatalf("audio-only asset: status %s, outputs %+v; want succeeded with audio.m4a only", a.Status, a.Outputs)
	}
	if d := mediatest.Duration(t, h.download(t, a.Outputs[0])); math.Abs(d-3.5) > 0.1 {
		t.Errorf("audio duration = %.3f, want 3.5 ± 0.1", d)
	}
	var stepStatus []string
	for _, s := range a.Steps {
		stepStatus = append(stepStatus, s.Name+":"+s.Status)
	}
	if got, want := strings.Join(stepStatus, ","), "probe:succeeded,thumbnail:skipped,audio:succeeded"; got != want {
		t.Errorf("audio-only steps = %s, want %s", got, want)
	}

	// Listing: newest first, with a cursor.
	l, err := h.client.Assets(ctxT(t, 10*time.Second), "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Assets) != 2 || l.Assets[0].ID != audioID || l.NextCursor == "" {
		t.Fatalf("first page = %d assets, first %s, next %q; want 2, %s, a cursor", len(l.Assets), l.Assets[0].ID, l.NextCursor, audioID)
	}
	l2, err := h.client.Assets(ctxT(t, 10*time.Second), l.NextCursor, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(l2.Assets) != 1 || l2.Assets[0].ID != putID || l2.NextCursor != "" {
		t.Errorf("second page = %+v, want only %s", l2, putID)
	}
}

func TestDelivery(t *testing.T) {
	h := start(t, testConfig(t))
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true})
	a := h.wait(t, h.uploadPut(t, clip))
	o := output(t, a, "thumbnail.jpg")

	resp, full := h.get(t, o.URL, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" ||
		resp.Header.Get("ETag") != `"`+o.ETag+`"` || resp.Header.Get("Last-Modified") == "" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || int64(len(full)) != o.Size {
		t.Fatalf("GET: %s %v (%d bytes)", resp.Status, resp.Header, len(full))
	}
	resp, part := h.get(t, o.URL, map[string]string{"Range": "bytes=10-19"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, full[10:20]) ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", len(full)) {
		t.Errorf("range: %s %q", resp.Status, resp.Header.Get("Content-Range"))
	}
	resp, _ = h.get(t, o.URL, map[string]string{"Range": "bytes=0-1,5-6"})
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Errorf("multi-range: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	resp, body := h.get(t, o.URL, map[string]string{"If-None-Match": `"` + o.ETag + `"`})
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match: %s with %d bytes, want 304 and none", resp.Status, len(body))
	}
	resp, _ = h.get(t, o.URL, map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(full)+10)})
	if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past end: %s, want 416", resp.Status)
	}
	unversioned := strings.Split(o.URL, "?")[0]
	if resp, _ = h.get(t, unversioned, nil); strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Errorf("unversioned URL cached as immutable: %s", resp.Header.Get("Cache-Control"))
	}
	// Sources and paths outside outputs are not served.
	for _, p := range []string{"/o/uploads/" + a.ID, "/o/assets/../uploads/" + a.ID, "/o/assets/" + a.ID + "/missing.jpg"} {
		if resp, _ := h.get(t, h.URL()+p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
}

func TestHealthAndMetrics(t *testing.T) {
	h := start(t, testConfig(t))
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true, Audio: true})
	h.wait(t, h.uploadPut(t, clip))
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, body := h.get(t, h.URL()+p, nil); resp.StatusCode != 200 {
			t.Errorf("%s: %s %s", p, resp.Status, body)
		}
	}
	wants := []string{
		`sluice_uploads_total{method="put",outcome="ok"} 1`,
		`sluice_upload_bytes_total{method="put"}`,
		`sluice_events_published_total{source="upload"} 1`,
		`sluice_queue_pending{pool="fast"} 0`,
		`sluice_queue_pending{pool="heavy"} 0`,
		`sluice_step_duration_seconds_count{outcome="succeeded",step="thumbnail"} 1`,
		`sluice_jobs_total{outcome="succeeded"} 1`,
		`sluice_dead_letters_total 0`,
	}
	// The asset reads succeeded as soon as its result is recorded; the
	// worker acknowledges the delivery and counts the job just after.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, body := h.get(t, h.URL()+"/metrics", nil)
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(string(body), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range missing {
		t.Errorf("metrics lack %q", want)
	}
}

// TestSecurityHeaders: API documents and outputs carry headers that stop
// a browser from sniffing, framing or running what Sluice serves.
func TestSecurityHeaders(t *testing.T) {
	h := start(t, testConfig(t))
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 320, Height: 240, Duration: 1, Video: true})
	a := h.wait(t, h.uploadPut(t, clip))
	for _, url := range []string{h.URL() + "/v1/assets/" + a.ID, output(t, a, "thumbnail.jpg").URL, h.URL() + "/nope"} {
		resp, _ := h.get(t, url, nil)
		for k, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "no-referrer",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; sandbox",
		} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %s = %q, want %q", url, k, got, want)
			}
		}
	}
}

// TestAssetListFilters: the list filters by name and pipeline and shows
// each asset's thumbnail; the dashboard's metric history is served.
func TestAssetListFilters(t *testing.T) {
	cfg := testConfig(t)
	cfg.HistoryInterval = 100 * time.Millisecond
	h := start(t, cfg)
	dir := t.TempDir()
	holiday := h.wait(t, h.uploadPut(t, mediatest.Generate(t, dir, "Holiday", mediatest.Clip{Duration: 1, Video: true})))
	h.wait(t, h.uploadPut(t, mediatest.Generate(t, dir, "talk", mediatest.Clip{Duration: 1, Video: true})))

	list := func(query string) wire.AssetList {
		t.Helper()
		status, _, body := request(t, "GET", h.URL()+"/v1/assets?"+query, nil, nil, -1)
		var l wire.AssetList
		if status != http.StatusOK || json.Unmarshal(body, &l) != nil {
			t.Fatalf("list ?%s: %d %s", query, status, body)
		}
		return l
	}
	if l := list("q=hOLi"); len(l.Assets) != 1 || l.Assets[0].ID != holiday.ID {
		t.Errorf("?q=hOLi = %+v, want the holiday clip", l.Assets)
	} else if resp, body := h.get(t, l.Assets[0].ThumbnailURL, nil); resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" || len(body) == 0 {
		t.Errorf("thumbnail %q: %s %s", l.Assets[0].ThumbnailURL, resp.Status, resp.Header.Get("Content-Type"))
	}
	if l := list("pipeline=light"); len(l.Assets) != 2 {
		t.Errorf("?pipeline=light: %d assets, want 2", len(l.Assets))
	}
	if l := list("pipeline=light&q=nothing-like-it"); len(l.Assets) != 0 {
		t.Errorf("?q=nothing-like-it: %d assets, want none", len(l.Assets))
	}
	if status, _, _ := request(t, "GET", h.URL()+"/v1/assets?q="+strings.Repeat("x", 201), nil, nil, -1); status != http.StatusBadRequest {
		t.Errorf("a 201-byte q: %d, want 400", status)
	}

	var hist wire.MetricsHistory
	waitUntil(t, "a point of metric history", func() bool {
		_, _, body := request(t, "GET", h.URL()+"/v1/metrics/history", nil, nil, -1)
		return json.Unmarshal(body, &hist) == nil && len(hist.Series) > 0 && len(hist.Series[0].Points) > 0
	})
	charts := map[string]bool{}
	for _, s := range hist.Series {
		charts[s.Chart] = true
	}
	for _, c := range []string{"Throughput", "Queue depth", "Step latency", "Model latency", "Cache hit rate", "Error rate"} {
		if !charts[c] {
			t.Errorf("metric history lacks the %q chart", c)
		}
	}
}
