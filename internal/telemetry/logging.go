package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	assetKey
	stepKey
)

// WithRequestID returns ctx carrying the request's id, for logs.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// WithAsset returns ctx carrying the asset a job works on, for logs.
func WithAsset(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, assetKey, id)
}

// WithStep returns ctx carrying the pipeline step running in it, for logs.
func WithStep(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, stepKey, id)
}

// ContextHandler adds what a record's context knows to every record
// logged with one (the *Context logging methods): request_id, asset,
// step, trace_id and span_id, so that a log line can be found from a request,
// an asset or a trace, and the other way round.
type ContextHandler struct{ slog.Handler }

// Handle adds the context's attributes and passes the record on.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil {
		if id := RequestID(ctx); id != "" {
			r.AddAttrs(slog.String("request_id", id))
		}
		if id, _ := ctx.Value(assetKey).(string); id != "" {
			r.AddAttrs(slog.String("asset", id))
		}
		if id, _ := ctx.Value(stepKey).(string); id != "" {
			r.AddAttrs(slog.String("step", id))
		}
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
		}
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the derived handler.
func (h ContextHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ContextHandler{h.Handler.WithAttrs(as)}
}

// WithGroup keeps the wrapper around the derived handler.
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{h.Handler.WithGroup(name)}
}
