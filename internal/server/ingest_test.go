package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestIngest fetches a source by URL and processes it like an upload.
// The source server is on loopback, which only a test may allow.
func TestIngest(t *testing.T) {
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	src := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/media/clip.mp4":
			w.Header().Set("Content-Type", "text/plain") // a lie: sniffing decides
			_, _ = w.Write(data)
		case "/missing":
			http.NotFound(w, r)
		}
	}))
	defer src.Close()

	cfg := testConfig(t)
	cfg.Ingest.AllowPrivate = true
	h := start(t, cfg)
	status, code, body := request(t, "POST", h.URL()+"/v1/assets",
		strings.NewReader(`{"source_url":"`+src.URL+`/media/clip.mp4","metadata":{"origin":"cms"}}`), nil, -1)
	if status != http.StatusAccepted {
		t.Fatalf("ingest: %d %s %s", status, code, body)
	}
	var a wire.Asset
	decode(t, body, &a)
	got := h.wait(t, a.ID)
	if got.Status != wire.StatusSucceeded || got.Name != "clip.mp4" || got.Size != int64(len(data)) ||
		got.ContentType != "video/mp4" || got.Metadata["origin"] != "cms" {
		t.Fatalf("ingested asset: %+v", got)
	}
	output(t, got, "thumbnail.jpg")

	// A source that fails fails the asset with a reason, and nothing else.
	status, _, body = request(t, "POST", h.URL()+"/v1/assets", strings.NewReader(`{"source_url":"`+src.URL+`/missing"}`), nil, -1)
	if status != http.StatusAccepted {
		t.Fatalf("ingest of a missing source: %d", status)
	}
	decode(t, body, &a)
	if got := h.wait(t, a.ID); got.Status != wire.StatusFailed || !strings.Contains(got.Error, "error status") {
		t.Errorf("missing source: %s %q, want failed with the reason", got.Status, got.Error)
	}
}

// TestIngestRefusals refuses sources on private addresses and malformed
// URLs at once, creating nothing.
func TestIngestRefusals(t *testing.T) {
	h := start(t, testConfig(t))
	tests := []struct{ url, code string }{
		{"http://127.0.0.1:1/x.mp4", "source_refused"},
		{"http://localhost/x.mp4", "source_refused"},
		{"http://[::1]/x.mp4", "source_refused"},
		{"http://169.254.169.254/latest/meta-data/", "source_refused"},
		{"http://10.0.0.1/x.mp4", "source_refused"},
		{"http://2130706433/x.mp4", "source_refused"}, // 127.0.0.1 as a number
		{"http://0x7f.1/x.mp4", "source_refused"},
		{"http://[::ffff:127.0.0.1]/x.mp4", "source_refused"},
		{"file:///etc/passwd", "invalid_request"},
		{"gopher://example.com/", "invalid_request"},
		{"http://user:secret@example.com/x.mp4", "invalid_request"},
		{"/relative/path.mp4", "invalid_request"},
		{"http://" + strings.Repeat("a", 5000) + ".com/", "invalid_request"},
	}
	for _, tt := range tests {
		status, code, body := request(t, "POST", h.URL()+"/v1/assets", strings.NewReader(`{"source_url":"`+tt.url+`"}`), nil, -1)
		if status != http.StatusBadRequest || code != tt.code {
			t.Errorf("%.60s: %d %s %s, want 400 %s", tt.url, status, code, body, tt.code)
		}
		if strings.Contains(string(body), "127.0.0.1") && !strings.Contains(tt.url, "127.0.0.1") {
			t.Errorf("%.60s: the answer reveals a resolved address: %s", tt.url, body)
		}
	}
	// Webhook URLs get the same checks.
	if status, code, _ := request(t, "POST", h.URL()+"/v1/webhooks", strings.NewReader(`{"url":"http://127.0.0.1:9/hook"}`), nil, -1); status != 400 || code != "url_refused" {
		t.Errorf("webhook to loopback: %d %s, want 400 url_refused", status, code)
	}
	page, err := h.client.Assets(ctxT(t, 10*time.Second), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Assets) != 0 {
		t.Errorf("refused ingests created %d assets", len(page.Assets))
	}
	if objs, err := h.bucket.List(ctxT(t, 10*time.Second), ""); err != nil || len(objs) != 0 {
		t.Errorf("refused ingests stored objects: %v %v", objs, err)
	}
}

func decode(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
}
