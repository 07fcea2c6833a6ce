package server

import (
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestTracing follows one upload in the traces: the PUT of its bytes,
// the job its event started (the trace context travels in the queue
// message's headers), and each step, all in one trace.
func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	cfg := testConfig(t)
	cfg.Tracing = telemetry.NewTracingWith(sdktrace.NewSimpleSpanProcessor(exp), "all")
	h := start(t, cfg)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true, Audio: true})
	id := h.uploadPut(t, clip)
	if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s", a.Status)
	}

	// The job's span ends just after the asset is recorded: wait for it.
	var put *tracetest.SpanStub
	names := map[string]bool{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !names["job fast"]; time.Sleep(20 * time.Millisecond) {
		spans := exp.GetSpans()
		for i, s := range spans {
			if s.Name == "PUT /v1/uploads/{id}/content" {
				put = &spans[i]
			}
		}
		if put == nil {
			continue
		}
		clear(names)
		for _, s := range spans {
			if s.SpanContext.TraceID() == put.SpanContext.TraceID() {
				names[s.Name] = true
			}
		}
	}
	if put == nil {
		t.Fatal("no span for the PUT of the bytes")
	}
	for _, want := range []string{"job fast", "step probe", "step thumbnail", "step audio"} {
		if !names[want] {
			var got []string
			for n := range names {
				got = append(got, n)
			}
			t.Errorf("the upload's trace lacks %q; it has %s", want, strings.Join(got, ", "))
		}
	}
}
