package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// startLogged starts a traced server whose JSON log lines the test reads.
func startLogged(t *testing.T) (*harness, *lockedBuffer) {
	t.Helper()
	var buf lockedBuffer
	log := slog.New(telemetry.ContextHandler{Handler: slog.NewJSONHandler(&buf, nil)})
	cfg := testConfig(t)
	cfg.Tracing = telemetry.NewTracingWith(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()), "all")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return &harness{Server: s, client: client.New(s.URL(), cfg.AdminToken)}, &buf
}

// findLine waits for a log line that match accepts.
func (l *lockedBuffer) findLine(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range l.lines() {
			if match(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for %s in:\n%v", what, l.lines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessLog writes one JSON line per request with its route, status,
// and the request and trace ids.
func TestAccessLog(t *testing.T) {
	s, buf := startLogged(t)
	if status, _, _ := request(t, "GET", s.URL()+"/v1/assets", nil, map[string]string{"X-Request-Id": "req-42"}, -1); status != 200 {
		t.Fatalf("list: %d", status)
	}
	l := buf.findLine(t, "the request", func(l map[string]any) bool { return l["msg"] == "http request" && l["request_id"] == "req-42" })
	if l["route"] != "GET /v1/assets" || l["status"] != float64(200) || l["trace_id"] == nil || l["trace_id"] == "" {
		t.Errorf("access log line: %v", l)
	}
}

// TestStepLog: each step's outcome is a log line with the asset, the
// step and the trace.
func TestStepLog(t *testing.T) {
	h, buf := startLogged(t)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true})
	a := h.wait(t, h.uploadPut(t, clip))
	l := buf.findLine(t, "the thumbnail step", func(l map[string]any) bool {
		return l["msg"] == "step finished" && l["step"] == "thumbnail"
	})
	if l["asset"] != a.ID || l["status"] != "succeeded" || l["trace_id"] == nil || l["trace_id"] == "" {
		t.Errorf("step log line: %v", l)
	}
}
