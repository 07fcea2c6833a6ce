// Package gateway is Sluice's HTTP edge: it routes the API, the signed
// upload endpoints, the tus endpoint and output delivery, wraps them in
// the middleware every request passes through (request id, panic
// recovery, CORS, metrics, body limits), and is the one place where
// domain errors become HTTP statuses (errors.go).
package gateway

import (
	"context"
	"go.opentelemetry.io/otel/trace"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/dashboard"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

// Config configures the gateway.
type Config struct {
	// PublicURL is the scheme and host clients reach Sluice at, used in
	// the URLs the API hands out. Empty: taken from each request's Host.
	PublicURL string
	// CORSOrigins lists origins allowed to call the API from a browser;
	// "*" allows any. Default "*": uploads go through signed URLs, which
	// are capabilities and need no cookie.
	CORSOrigins []string
	// Dev lets requests without an API key from loopback peers act as
	// admin, for trying Sluice on a laptop. Keys sent are still checked.
	Dev bool
	// Limits size the rate limits per client address and per key.
	Limits LimitConfig
	// PrivateURLTTL is how long the signed output URLs of private assets
	// stay valid. Default 4h.
	PrivateURLTTL time.Duration
	// S3Events decodes bucket notifications posted to /v1/events/s3.
	S3Events S3EventDecoder
	// PerKeyAssets limits a key without the admin scope to the assets it
	// created: others are "not found" to it. Otherwise every key with the
	// read scope sees every asset.
	PerKeyAssets bool
}

// DeadLetters is what the gateway needs of the queue.
type DeadLetters interface {
	DeadLetters(ctx context.Context, after uint64, limit int) ([]queue.DeadLetter, error)
	Replay(ctx context.Context, seq uint64) error
}

// Checker reports whether a dependency is ready.
type Checker func(ctx context.Context) error

// Deps are the parts the gateway serves.
type Deps struct {
	Store       store.Store
	Uploads     *upload.Service
	Delivery    *delivery.Server
	DeadLetters DeadLetters
	// Pipelines are the configured pipelines, for reprocessing and
	// GET /v1/pipelines.
	Pipelines *pipeline.Set
	// Variants renders and serves on-demand thumbnails.
	Variants *delivery.Variants
	Signer   *auth.Signer
	Keys     *auth.Keys
	// Usage reads a key's quota use for GET /v1/usage.
	Usage UsageReader
	// Private reports whether an asset's outputs are private.
	Private func(a store.Asset) bool
	// CheckWebhookURL refuses webhook URLs Sluice must not send to.
	CheckWebhookURL func(ctx context.Context, rawURL string) error
	Metrics         *telemetry.Metrics
	Log             *slog.Logger
	// Updates subscribes to the changes every process announces, for
	// GET /v1/events (nil: no live updates).
	Updates func(fn func(queue.Update)) (stop func(), err error)
	// History is the serving process's recent metrics, for
	// GET /v1/metrics/history (nil: not served).
	History interface{ Doc() wire.MetricsHistory }
	// Tracer traces requests (nil: no tracing).
	Tracer trace.Tracer
	// Ready lists checks /readyz runs.
	Ready map[string]Checker
}

// Gateway is the HTTP handler.
type Gateway struct {
	cfg    Config
	deps   Deps
	mux    *http.ServeMux
	tus    http.Handler
	limits *limits
	tracer trace.Tracer
	live   *hub
	// stopLive ends the subscription to updates.
	stopLive func()
}

// New builds the gateway's routes.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if cfg.PrivateURLTTL <= 0 {
		cfg.PrivateURLTTL = 4 * time.Hour
	}
	if len(cfg.CORSOrigins) == 0 {
		cfg.CORSOrigins = []string{"*"}
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	lim, err := newLimits(cfg.Limits, deps.Metrics)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, deps: deps, mux: http.NewServeMux(), limits: lim, tracer: deps.Tracer}
	if g.tracer == nil {
		g.tracer = telemetry.NoTracing().Tracer
	}
	tus, err := deps.Uploads.TusHandler(TusPath)
	if err != nil {
		return nil, err
	}
	g.tus = tus
	if deps.Variants != nil {
		deps.Variants.WriteError = func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, r, deps.Log, err)
		}
	}
	if deps.Updates != nil {
		g.live = &hub{clients: map[chan queue.Update]string{}}
		if g.stopLive, err = deps.Updates(g.live.publish); err != nil {
			return nil, err
		}
	}
	g.routes()
	return g, nil
}

// Close ends the gateway's subscriptions.
func (g *Gateway) Close() {
	if g.stopLive != nil {
		g.stopLive()
	}
}

// TusPath is where the tus endpoint is mounted.
const TusPath = "/v1/tus/"

// routes registers every route with what it requires: an API key with a
// scope for /v1, except the signed upload PUT; a signature or nothing
// for outputs, depending on their visibility.
func (g *Gateway) routes() {
	m := g.mux
	up, read, admin := auth.ScopeUpload, auth.ScopeRead, auth.ScopeAdmin
	m.Handle("POST /v1/uploads", g.scopedFunc(up, g.createUpload))
	m.HandleFunc("PUT /v1/uploads/{id}/content", g.putContent)
	// tusd routes on the path below its base. Browsers' CORS preflights
	// carry no credentials, so OPTIONS passes to tusd unauthenticated.
	tus := http.StripPrefix(strings.TrimSuffix(TusPath, "/"), g.tus)
	m.Handle("OPTIONS "+TusPath, tus)
	m.Handle(TusPath, g.scoped(up, tus))
	m.Handle("GET /v1/assets", g.scopedFunc(read, g.listAssets))
	m.Handle("POST /v1/assets", g.scopedFunc(up, g.ingest))
	m.Handle("GET /v1/assets/{id}", g.scopedFunc(read, g.getAsset))
	m.Handle("DELETE /v1/assets/{id}", g.scopedFunc(up, g.deleteAsset))
	m.Handle("POST /v1/assets/{id}/reprocess", g.scopedFunc(up, g.reprocess))
	m.Handle("POST /v1/assets/{id}/release", g.scopedFunc(admin, g.release))
	m.Handle("GET /v1/pipelines", g.scopedFunc(read, g.listPipelines))
	if g.deps.Variants != nil {
		for _, f := range delivery.VariantFiles {
			m.Handle("GET /v1/assets/{id}/"+f, g.scoped(read, g.visibleAsset(g.deps.Variants)))
		}
	}
	m.Handle("GET /v1/dead-letters", g.scopedFunc(admin, g.listDeadLetters))
	m.Handle("POST /v1/dead-letters/{seq}/replay", g.scopedFunc(admin, g.replayDeadLetter))
	m.Handle("GET /v1/usage", g.scopedFunc(read, g.usage))
	if g.deps.History != nil {
		m.Handle("GET /v1/metrics/history", g.scopedFunc(read, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, g.deps.History.Doc())
		}))
	}
	m.Handle("GET /v1/events", g.scopedFunc(read, g.events))
	m.Handle("POST /v1/keys", g.scopedFunc(admin, g.createKey))
	m.Handle("GET /v1/keys", g.scopedFunc(admin, g.listKeys))
	m.Handle("DELETE /v1/keys/{id}", g.scopedFunc(admin, g.revokeKey))
	m.Handle("POST /v1/events/s3", g.scopedFunc(auth.ScopeEvents, g.bucketEvents))
	m.Handle("POST /v1/webhooks", g.scopedFunc(read, g.createWebhook))
	m.Handle("GET /v1/webhooks", g.scopedFunc(read, g.listWebhooks))
	m.Handle("DELETE /v1/webhooks/{id}", g.scopedFunc(read, g.deleteWebhook))
	m.Handle("GET /v1/webhooks/{id}/deliveries", g.scopedFunc(read, g.listDeliveries))
	m.Handle("POST /v1/webhooks/{id}/rotate-secret", g.scopedFunc(read, g.rotateSecret))
	m.HandleFunc("GET "+delivery.Prefix+"{key...}", g.serveOutput)
	var mediaOrigins []string
	if g.cfg.PublicURL != "" {
		mediaOrigins = append(mediaOrigins, g.cfg.PublicURL)
	}
	m.Handle("GET "+dashboard.Prefix, dashboard.Handler(mediaOrigins...))
	m.Handle("GET /{$}", http.RedirectHandler(dashboard.Prefix, http.StatusFound))
	g.operationRoutes(m)
}

// operationRoutes are the routes every process serves, workers too.
func (g *Gateway) operationRoutes(m *http.ServeMux) {
	m.Handle("GET /metrics", promhttp.HandlerFor(g.deps.Metrics.Registry, promhttp.HandlerOpts{}))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	m.HandleFunc("GET /readyz", g.readyz)
}

// Operations is the handler of a worker process: /healthz, /readyz and
// /metrics only, with the same middleware.
func (g *Gateway) Operations() http.Handler {
	mux := http.NewServeMux()
	g.operationRoutes(mux)
	return g.middleware(mux)
}

// ServeHTTP runs the middleware chain, then the route.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.middleware(http.HandlerFunc(g.route)).ServeHTTP(w, r)
}

// route dispatches to the mux, turning its plain-text 404 and 405 into
// JSON errors.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request) {
	if h, pattern := g.mux.Handler(r); pattern == "" {
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.code == http.StatusMethodNotAllowed {
			writeError(w, r, g.deps.Log, errMethodNotAllowed)
			return
		}
		writeError(w, r, g.deps.Log, errRouteNotFound)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// statusRecorder captures what the mux's fallback handlers write.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := http.StatusOK
	checks := map[string]string{}
	for name, check := range g.deps.Ready {
		if err := check(ctx); err != nil {
			status = http.StatusServiceUnavailable
			checks[name] = err.Error()
			continue
		}
		checks[name] = "ok"
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}

// baseURL is the scheme and host for URLs handed to clients.
func (g *Gateway) baseURL(r *http.Request) string {
	if g.cfg.PublicURL != "" {
		return g.cfg.PublicURL
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
