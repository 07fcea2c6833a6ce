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

// TestAccessLog writes one JSON line per request with its route, status,
// and the request and trace ids.
func TestAccessLog(t *testing.T) {
	var buf lockedBuffer
	log := slog.New(telemetry.ContextHandler{Handler: slog.NewJSONHandler(&buf, nil)})
	cfg := testConfig(t)
	cfg.Tracing = telemetry.NewTracingWith(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()), "all")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if status, _, _ := request(t, "GET", s.URL()+"/v1/assets", nil, map[string]string{"X-Request-Id": "req-42"}, -1); status != 200 {
		t.Fatalf("list: %d", status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range buf.lines() {
			if l["msg"] == "http request" && l["request_id"] == "req-42" {
				if l["route"] != "GET /v1/assets" || l["status"] != float64(200) || l["trace_id"] == nil || l["trace_id"] == "" {
					t.Errorf("access log line: %v", l)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for the request in:\n%v", buf.lines())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
