package gateway

import (
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"log/slog"

	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/sluice-media/sluice/internal/telemetry"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

func requestID(ctx context.Context) string { return telemetry.RequestID(ctx) }

// middleware wraps every request: request id, recovery, CORS, metrics.
func (g *Gateway) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		securityHeaders(w.Header())
		// A span per request, in the caller's trace when it sent one.
		ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("sluice.request_id", id)))
		defer span.End()
		r = r.WithContext(telemetry.WithRequestID(ctx, id))
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK, rc: http.NewResponseController(w)}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &idleReader{ReadCloser: r.Body, rc: sw.rc}
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				if !sw.wrote {
					writeError(sw, r, g.deps.Log, fmt.Errorf("panic: %v", p))
				} else {
					g.deps.Log.Error("gateway: panic after response started", "panic", p, "request_id", id)
				}
			}
			route := r.Pattern
			if route == "" {
				route = "unmatched"
			}
			span.SetName(route)
			span.SetAttributes(attribute.Int("http.response.status_code", sw.code))
			if sw.code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(sw.code))
			}
			took := time.Since(start)
			g.deps.Metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
			g.deps.Metrics.HTTPDuration.WithLabelValues(route).Observe(took.Seconds())
			// The access log: one line per request (health checks aside),
			// with the request and trace ids the context handler adds.
			if route != "GET /healthz" && route != "GET /readyz" && route != "GET /metrics" {
				g.deps.Log.LogAttrs(r.Context(), slog.LevelInfo, "http request",
					slog.String("method", r.Method), slog.String("route", route), slog.Int("status", sw.code),
					slog.Duration("took", took), slog.String("remote", r.RemoteAddr))
			}
		}()
		// tusd answers CORS for its own routes.
		if !strings.HasPrefix(r.URL.Path, TusPath) && g.cors(sw, r) {
			return
		}
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" {
			if err := g.limits.allowIP(r); err != nil {
				writeError(sw, r, g.deps.Log, err)
				return
			}
		}
		next.ServeHTTP(sw, r)
	})
}

// securityHeaders go on every response. Nothing Sluice serves is a page
// to render: API JSON and stored outputs, some of which a user uploaded
// (an SVG, say). So: no sniffing of types, no framing, no referrer, and
// a CSP that blocks scripts and sandboxes the document should a browser
// open one directly. Outputs may be embedded from other origins (a
// player on the customer's site), which CORP allows.
func securityHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
}

// cors sets CORS headers for allowed origins and answers preflights; it
// reports whether the request was fully answered.
func (g *Gateway) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	w.Header().Add("Vary", "Origin")
	if !slices.Contains(g.cfg.CORSOrigins, "*") && !slices.Contains(g.cfg.CORSOrigins, origin) {
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", "ETag, Content-Length, Content-Range, X-Request-Id, Location")
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Content-MD5, X-Checksum-Sha256, X-Request-Id, Range, If-None-Match")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ioIdle is how long a request body may go without yielding a byte, and
// a response without taking one, before the connection is dropped: a
// slow client may take as long as it likes over a large transfer, but
// cannot hold a connection open doing nothing (slowloris). Headers have
// their own, shorter, limit (the server's ReadHeaderTimeout).
const ioIdle = time.Minute

// idleReader pushes the connection's read deadline ioIdle ahead before
// each read of the body, but never past until when that is set.
type idleReader struct {
	io.ReadCloser
	rc    *http.ResponseController
	until time.Time
}

func (r *idleReader) Read(p []byte) (int, error) {
	d := time.Now().Add(ioIdle)
	if !r.until.IsZero() && r.until.Before(d) {
		d = r.until
	}
	_ = r.rc.SetReadDeadline(d)
	return r.ReadCloser.Read(p)
}

// readWithin bounds the time left to read the request's body.
func readWithin(w http.ResponseWriter, r *http.Request, d time.Duration) {
	until := time.Now().Add(d)
	if ir, ok := r.Body.(*idleReader); ok {
		ir.until = until
	}
	_ = http.NewResponseController(w).SetReadDeadline(until)
}

// statusWriter remembers the status code for metrics and pushes the
// write deadline ioIdle ahead before each write.
type statusWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	code  int
	wrote bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote {
		s.code, s.wrote = code, true
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(ioIdle))
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.wrote = true
	_ = s.rc.SetWriteDeadline(time.Now().Add(ioIdle))
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
