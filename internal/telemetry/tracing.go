package telemetry

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName names Sluice's spans.
const TracerName = "github.com/sluice-media/sluice"

// Propagator carries trace context across processes: W3C traceparent
// and baggage, in HTTP headers and in queue message headers.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(
	propagation.TraceContext{}, propagation.Baggage{})

// Tracing is a process's tracer and how to stop it.
type Tracing struct {
	Tracer   trace.Tracer
	Provider trace.TracerProvider
	shutdown func(context.Context) error
}

// Shutdown flushes spans not yet exported.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// NoTracing is tracing off: spans cost next to nothing and go nowhere.
func NoTracing() *Tracing {
	p := noop.NewTracerProvider()
	return &Tracing{Tracer: p.Tracer(TracerName), Provider: p}
}

// NewTracing exports spans with OTLP over HTTP when endpoint is set (a
// collector such as the OpenTelemetry Collector, Jaeger or Tempo, e.g.
// http://otel-collector:4318), and is off otherwise. The exporter also
// reads the standard OTEL_EXPORTER_OTLP_* variables (headers, TLS).
func NewTracing(ctx context.Context, endpoint, role string, log *slog.Logger) (*Tracing, error) {
	if endpoint == "" {
		return NoTracing(), nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, fmt.Errorf("telemetry: OTLP exporter: %w", err)
	}
	return NewTracingWith(sdktrace.NewBatchSpanProcessor(exp), role), nil
}

// NewTracingWith traces into a span processor of the caller's (tests use
// an in-memory exporter).
func NewTracingWith(sp sdktrace.SpanProcessor, role string) *Tracing {
	res := resource.NewSchemaless(semconv.ServiceName("sluice"), attribute.String("sluice.role", role))
	p := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res))
	return &Tracing{Tracer: p.Tracer(TracerName), Provider: p, shutdown: p.Shutdown}
}

// SetGlobal makes t the process's tracer provider and propagator, for
// libraries that look them up.
func (t *Tracing) SetGlobal() {
	otel.SetTracerProvider(t.Provider)
	otel.SetTextMapPropagator(Propagator)
}

// TraceID is the trace id of ctx's span, or "" when there is none.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
