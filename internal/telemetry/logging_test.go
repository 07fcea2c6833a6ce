package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/sluice-media/sluice/internal/telemetry"
)

func TestContextHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(telemetry.ContextHandler{Handler: slog.NewJSONHandler(&buf, nil)}).With("component", "test")
	tr := telemetry.NewTracingWith(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()), "all")
	ctx, span := tr.Tracer.Start(telemetry.WithStep(telemetry.WithAsset(telemetry.WithRequestID(context.Background(), "req1"), "a1"), "hls"), "op")
	log.InfoContext(ctx, "hello")
	span.End()
	log.Info("no context")

	dec := json.NewDecoder(&buf)
	var first, second map[string]any
	if err := dec.Decode(&first); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&second); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"request_id": "req1", "asset": "a1", "step": "hls", "component": "test",
		"trace_id": span.SpanContext().TraceID().String(), "span_id": span.SpanContext().SpanID().String()}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, first[k], v, first)
		}
	}
	if _, ok := second["request_id"]; ok {
		t.Errorf("a line logged without a context got a request id: %v", second)
	}
}
