// Package server assembles one Sluice process from its parts: the state
// store, the bucket, the queue, ingest, the worker and the gateway, on the
// embedded defaults (SQLite, a file bucket and NATS JetStream, all inside
// the data dir). cmd/sluice and the end-to-end tests both start Sluice
// through it, so tests run exactly what users run.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-media/sluice/internal/ai"
	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/dashboard"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/gateway"
	"github.com/sluice-media/sluice/internal/ingest"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/notify"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/webhook"
	"github.com/sluice-media/sluice/internal/worker"
)

// BucketName is the name of the embedded bucket, as events carry it.
const BucketName = "sluice"

// Registry returns every step type Sluice has, running on the given
// engines, with pipeline files (watermark images, fonts) read from
// assetsDir. `sluice pipelines validate` passes engines with none set:
// step types are built without touching them.
func Registry(e *media.Engines, assetsDir string, g *ai.Gateway) (*pipeline.Registry, error) {
	return pipeline.NewRegistry(append(media.Types(e, assetsDir), ai.Types(g, e)...)...)
}

// OpenAI builds the inference gateway from the AI configuration file
// (path "" for the local providers only). Its result cache is the
// directory the file names, else shared when given (a cache every worker
// sees), else the directory cacheDir.
func OpenAI(path, cacheDir string, shared ai.Cache, reg prometheus.Registerer, log *slog.Logger) (*ai.Gateway, error) {
	cfg, pcs, err := ai.LoadConfig(path, os.Getenv)
	if err != nil {
		return nil, err
	}
	providers, err := ai.NewProviders(pcs)
	if err != nil {
		return nil, err
	}
	if cfg.CacheDir == "" && shared != nil {
		return ai.New(cfg, providers, shared, reg, log)
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = cacheDir
	}
	cache, err := ai.NewFileCache(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	return ai.New(cfg, providers, cache, reg, log)
}

// Server is a running Sluice process.
type Server struct {
	cfg       config.Config
	history   *telemetry.History
	log       *slog.Logger
	lock      *os.File
	store     store.Store
	bucket    blob.Bucket
	queue     *queue.Queue
	uploads   *upload.Service
	worker    *worker.Worker
	wasm      *media.Wasm
	engines   *media.Engines
	pipelines *pipeline.Set
	variants  *delivery.Variants
	ai        *ai.Gateway
	keys      *auth.Keys
	hooks     *webhook.Dispatcher
	tracing   *telemetry.Tracing
	gw        *gateway.Gateway
	// Bucket notifications: a NATS subscription, a Cloudflare Queue.
	stopBucketEvents func()
	r2               *notify.Puller
	// adminToken is the admin key created on this, the first, start.
	adminToken string
	tls        bool // serving HTTPS
	http       *http.Server
	ln         net.Listener
	Metrics    *telemetry.Metrics
}

// New opens everything cfg describes and starts listening; Run serves.
// On error, whatever was opened is closed again.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (s *Server, err error) {
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	s = &Server{cfg: cfg, log: log, Metrics: telemetry.New()}
	// Every error return sets s to nil; close what this one opened.
	opened := s
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, err
	}
	// The embedded NATS server owns its files: one process per data dir.
	// With an external NATS, processes on one machine may share a data
	// dir (SQLite and the file bucket are safe across processes).
	if cfg.Queue.URL == "" {
		if s.lock, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	if s.tracing = cfg.Tracing; s.tracing == nil {
		if s.tracing, err = telemetry.NewTracing(ctx, cfg.OTLPEndpoint, cfg.Role, log); err != nil {
			return nil, err
		}
	}
	engines, err := s.openEngines(cfg, log)
	if err != nil {
		return nil, err
	}
	if s.store, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	if s.bucket, err = openBucket(ctx, cfg); err != nil {
		return nil, err
	}
	if s.queue, err = queue.Open(ctx, cfg.Queue, log); err != nil {
		return nil, err
	}
	signer, err := loadSigner(cfg.DataDir, os.Getenv)
	if err != nil {
		return nil, err
	}
	s.uploads = upload.New(cfg.Upload, s.store, s.bucket, s.queue, signer, s.Metrics, log)
	if cfg.S3.Bucket != "" && cfg.Role != config.RoleWorker {
		// Resumable uploads in progress live in the bucket, where every
		// gateway sees them; their locks go in NATS, where every gateway
		// sees them too, so that no gateway needs session affinity.
		locks, err := s.queue.Locks(ctx, tusLockTTL)
		if err != nil {
			return nil, err
		}
		s.uploads.UseLocks(locks)
	}
	icfg := cfg.Ingest
	if icfg.MaxBytes == 0 {
		icfg.MaxBytes = cfg.Upload.MaxSize
	}
	s.uploads.EnableIngest(ingest.NewFetcher(icfg), cfg.IngestConcurrency)
	s.keys = auth.NewKeys(s.store, cfg.Quotas)
	if err := s.bootstrapKey(ctx); err != nil {
		return nil, err
	}

	var shared ai.Cache
	if cfg.S3.Bucket != "" {
		// Every worker reads and writes the same bucket: results one
		// worker paid for serve them all.
		shared = ai.BucketCache{Bucket: s.bucket, Prefix: upload.CachePrefix + "ai/"}
	}
	if s.ai, err = OpenAI(cfg.AIConfig, filepath.Join(cfg.DataDir, "ai-cache"), shared, s.Metrics.Registry, log); err != nil {
		return nil, err
	}
	s.ai.Quota = auth.NewAIQuota(s.keys, s.store, log)
	s.ai.Accounts = s.store // budgets shared by every worker
	reg, err := Registry(engines, cfg.AssetsDir, s.ai)
	if err != nil {
		return nil, err
	}
	if s.pipelines, err = pipeline.DefaultSet(reg, cfg.Pipelines...); err != nil {
		return nil, err
	}
	if s.worker, err = worker.New(cfg.Worker, s.store, s.bucket, s.queue, s.pipelines, s.Metrics, log); err != nil {
		return nil, err
	}
	// Webhook requests go only where URL ingest may fetch from (host
	// allowlist aside): never to private or metadata addresses.
	hookNet := ingest.NewFetcher(ingest.FetchConfig{AllowPrivate: cfg.WebhookAllowPrivate})
	sender, err := webhook.NewSender(cfg.Webhooks, hookNet.Client(), nil)
	if err != nil {
		return nil, err
	}
	s.hooks = webhook.NewDispatcher(webhook.DispatchConfig{Secrets: signer}, s.store, sender, log)
	// Endpoint secrets are sealed at rest under the signing key: seal any
	// kept in the clear by an older version, and those sealed under a
	// previous key, so that the previous key can be retired.
	if n, err := webhook.ResealSecrets(ctx, s.store, signer, log); err != nil {
		return nil, err
	} else if n > 0 {
		log.Info("webhook secrets sealed under the current signing key", "endpoints", n)
	}
	s.worker.OnFinish = s.hooks.AssetFinished
	s.uploads.OnDelete = s.hooks.AssetDeleted
	s.worker.Tracer = s.tracing.Tracer
	s.registerQueueDepth()
	s.queue.OnAbandoned(func(ctx context.Context, ev event.ObjectCreated, reason string) {
		s.Metrics.DeadLetters.Inc()
		if err := s.store.SetAssetStatus(ctx, ev.AssetID, store.StatusFailed, reason); err != nil {
			log.Error("mark abandoned asset failed", "asset", ev.AssetID, "err", err)
			return
		}
		if err := s.hooks.AssetFinished(ctx, ev.AssetID, ev.IdempotencyKey()); err != nil {
			log.Error("announce abandoned asset", "asset", ev.AssetID, "err", err)
		}
	})

	deliv := delivery.New(s.bucket, s.Metrics)
	deliv.Signer = signer
	deliv.Access = func(ctx context.Context, assetID string) (delivery.Access, error) {
		a, err := s.store.GetAsset(ctx, assetID)
		return delivery.Access{Held: a.Quarantine, Private: s.private(a)}, err
	}
	if err := os.MkdirAll(cfg.Variants.ScratchDir, 0o750); err != nil {
		return nil, err
	}
	if s.variants, err = delivery.NewVariants(cfg.Variants, deliv, s.store, engines); err != nil {
		return nil, err
	}
	s.variants.Log = log
	s.history = telemetry.NewHistory(s.Metrics.Registry, cmp.Or(cfg.HistoryInterval, 10*time.Second), 360)
	gcfg := gateway.Config{PublicURL: cfg.PublicURL, CORSOrigins: cfg.CORSOrigins, Dev: cfg.Dev, Limits: cfg.Limits,
		PrivateURLTTL: cfg.PrivateURLTTL, S3Events: gateway.S3EventDecoder{RawKeys: cfg.S3RawKeys},
		PerKeyAssets: cfg.AssetAccess == "per-key"}
	gw, err := gateway.New(gcfg, gateway.Deps{
		Store:           s.store,
		Uploads:         s.uploads,
		Delivery:        deliv,
		Variants:        s.variants,
		DeadLetters:     s.queue,
		Pipelines:       s.pipelines,
		Signer:          signer,
		Keys:            s.keys,
		Usage:           s.store,
		Private:         s.private,
		CheckWebhookURL: hookNet.Check,
		Metrics:         s.Metrics,
		Tracer:          s.tracing.Tracer,
		Updates:         s.queue.SubscribeUpdates,
		History:         s.history,
		Log:             log,
		Ready: map[string]gateway.Checker{
			"store":       s.store.Ping,
			"queue":       s.queue.Ping,
			"ffmpeg-wasm": engines.Ready,
		},
	})
	if err != nil {
		return nil, err
	}
	s.gw = gw
	var handler http.Handler = gw
	if cfg.Role == config.RoleWorker {
		handler = gw.Operations()
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := s.openBucketEvents(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		s.http.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		s.tls = true
	}
	if s.ln, err = net.Listen("tcp", cfg.Addr); err != nil {
		return nil, err
	}
	return s, nil
}

// bootstrapKey creates the first admin key when the store has none: with
// the configured token (from the environment), else a random one that
// AdminToken returns for `sluice serve` to print once.
func (s *Server) bootstrapKey(ctx context.Context) error {
	given := s.cfg.AdminToken
	token, err := s.keys.Bootstrap(ctx, given)
	if err != nil {
		return fmt.Errorf("create the first admin key: %w", err)
	}
	if token != "" {
		s.log.Info("created the first admin key", "from_env", given != "")
		if given == "" {
			s.adminToken = token
		}
	}
	return nil
}

// private reports whether an asset's outputs are served only through
// signed URLs: the asset's own choice, else its pipeline's, else the
// server's default.
func (s *Server) private(a store.Asset) bool {
	if a.Visibility != "" {
		return a.Visibility == pipeline.DeliveryPrivate
	}
	if p := s.pipelines.Get(a.Pipeline); p != nil && p.Delivery != "" {
		return p.Delivery == pipeline.DeliveryPrivate
	}
	return s.cfg.Delivery == pipeline.DeliveryPrivate
}

// tusLockTTL is how long the lock of a resumable upload outlives a
// gateway that died holding it (tusd waits 20 s for a lock).
const tusLockTTL = 15 * time.Second

// AdminToken is the admin key this start created, or "" when keys
// existed already or the token came from the environment.
func (s *Server) AdminToken() string { return s.adminToken }

// urlScheme is "https" when the server has a certificate.
func (s *Server) urlScheme() string {
	if s.tls {
		return "https"
	}
	return "http"
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the base URL of the server on loopback.
func (s *Server) URL() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return s.urlScheme() + "://127.0.0.1:" + port
}

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting connections and lets requests in flight finish, stops taking
// events and lets running jobs finish within the shutdown grace (the rest
// are handed back to the queue and resume after restart), then closes
// the queue, the store and the data dir lock.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(6)
	go func() {
		defer wg.Done()
		if stop := s.shareSamples(); stop != nil {
			defer stop()
		}
		s.history.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if s.r2 != nil {
			if err := s.r2.Run(ctx, notify.HandleR2(s.bucketEvent)); err != nil {
				s.log.Error("R2 event queue: pulling stopped", "err", err)
			}
		}
	}()
	go func() {
		defer wg.Done()
		s.hooks.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		serve := func() error { return s.http.Serve(s.ln) }
		if s.tls {
			serve = func() error { return s.http.ServeTLS(s.ln, "", "") }
		}
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go func() {
		defer wg.Done()
		if s.cfg.Role != config.RoleGateway {
			_ = s.worker.Run(ctx)
		}
	}()
	go func() {
		defer wg.Done()
		if s.cfg.Role != config.RoleWorker {
			s.uploads.RunReconciler(ctx, s.cfg.ReconcileInterval)
		}
	}()
	attrs := []any{"role", s.cfg.Role, "addr", s.Addr(), "data_dir", s.cfg.DataDir}
	if s.cfg.Role != config.RoleWorker {
		attrs = append(attrs, "dashboard", s.URL()+dashboard.Prefix)
	}
	s.log.Info("sluice serving", attrs...)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("sluice shutting down")
	defer s.uploads.StopIngest()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := s.http.Shutdown(sctx); serr != nil {
		s.log.Warn("http shutdown", "err", serr)
	}
	wg.Wait()
	return err
}

// openEngines finds native FFmpeg, if installed, and starts compiling the
// WebAssembly build in the background (from the cache in the data dir
// after the first start); /readyz reports when it is done.
func (s *Server) openEngines(cfg config.Config, log *slog.Logger) (*media.Engines, error) {
	e := &media.Engines{Default: cfg.Engine}
	ncfg := cfg.Native
	ncfg.Log = log
	if ncfg.TempDir == "" {
		// Children's private temp dirs live beside the jobs, inside the
		// data dir.
		ncfg.TempDir = filepath.Join(cfg.Worker.ScratchDir, "tmp")
		if err := os.MkdirAll(ncfg.TempDir, 0o750); err != nil {
			return nil, err
		}
	}
	native, err := media.NewNative(ncfg)
	switch {
	case err == nil:
		e.Native = native
		if !native.Sandboxed() {
			log.Warn("prlimit not found: native FFmpeg runs without a memory cap (install util-linux)")
		}
		log.Info("native FFmpeg", "sandbox", native.Sandbox(), "hwaccel", native.HWAccel())
	case errors.Is(err, media.ErrNotInstalled):
		log.Info("native FFmpeg not found; every step runs on the WebAssembly engine (install ffmpeg for native-speed encodes)")
	default:
		return nil, err
	}
	if err := os.MkdirAll(cfg.Wasm.CacheDir, 0o750); err != nil {
		return nil, err
	}
	s.wasm = media.NewWasm(cfg.Wasm)
	e.Wasm = s.wasm
	s.engines = e
	if err := e.Validate(cfg.Engine); err != nil {
		return nil, err
	}
	go func() {
		if err := s.wasm.Ready(context.Background()); err != nil {
			log.Error("WebAssembly FFmpeg failed to compile", "err", err)
			return
		}
		log.Info("WebAssembly FFmpeg ready", "took", s.wasm.CompileTime().Round(time.Millisecond))
	}()
	return e, nil
}

// openBucketEvents subscribes to the store's own notifications, when
// configured: S3 events on a NATS subject, R2 events from a Cloudflare
// Queue. Gateways (and single processes) take them; workers do not.
func (s *Server) openBucketEvents(ctx context.Context, cfg config.Config) error {
	if cfg.Role == config.RoleWorker {
		return nil
	}
	if cfg.BucketEventsSubject != "" {
		dec := notify.S3Decoder{RawKeys: cfg.S3RawKeys}
		stop, err := s.queue.ConsumeRaw(ctx, cfg.BucketEventsSubject, "sluice-bucket-events", func(ctx context.Context, data []byte) error {
			evs, err := dec.Decode(data)
			if err != nil {
				s.log.Warn("bucket notification on NATS: undecodable; dropped", "err", err)
				return nil // it would not decode next time either
			}
			for _, ev := range evs {
				ctx, cancel := context.WithTimeout(ctx, time.Minute)
				err := s.bucketEvent(ctx, ev)
				cancel()
				switch {
				case errors.Is(err, notify.ErrPoison):
					// It would fail the same way every time.
					s.log.Warn("bucket notification on NATS: refused", "key", ev.Key, "err", err)
				case err != nil:
					// Events already handled are deduplicated when the
					// notification comes again.
					s.log.Warn("bucket notification on NATS; will retry", "key", ev.Key, "err", err)
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.stopBucketEvents = stop
	}
	if cfg.R2Queue.QueueID != "" {
		rcfg := cfg.R2Queue
		rcfg.Logger = s.log
		p, err := notify.NewPuller(rcfg, nil)
		if err != nil {
			return err
		}
		s.r2 = p
	}
	return nil
}

// bucketEvent completes the upload a bucket notification announces.
// Notifications that can never be taken (another bucket, a refused type)
// are poison for a queue: retrying them cannot help.
func (s *Server) bucketEvent(ctx context.Context, ev event.ObjectCreated) error {
	err := s.uploads.ObjectCreated(ctx, ev)
	if errors.Is(err, upload.ErrInvalid) || errors.Is(err, upload.ErrUnsupportedType) {
		return fmt.Errorf("%w: %w", notify.ErrPoison, err)
	}
	return err
}

func (s *Server) close() {
	if s.gw != nil {
		s.gw.Close()
	}
	if s.tracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.tracing.Shutdown(ctx); err != nil {
			s.log.Warn("flush traces", "err", err)
		}
		cancel()
	}
	if s.stopBucketEvents != nil {
		s.stopBucketEvents()
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
	if s.variants != nil {
		_ = s.variants.Close()
	}
	if s.ai != nil {
		_ = s.ai.Close()
	}
	if s.queue != nil {
		s.queue.Close()
	}
	if c, ok := s.bucket.(io.Closer); ok {
		_ = c.Close()
	}
	if s.store != nil {
		_ = s.store.Close()
	}
	if s.wasm != nil {
		_ = s.wasm.Close()
	}
	if s.lock != nil {
		_ = s.lock.Close()
	}
}

// shareSamples, with an external NATS, hands this process's metrics
// samples to the other processes and, where the dashboard is served,
// merges theirs, so that its charts cover the cluster (a gateway has no
// step timings of its own). It returns the subscription's stop, or nil.
func (s *Server) shareSamples() (stop func()) {
	if s.cfg.Queue.URL == "" {
		return nil // one process: nothing to share
	}
	host, _ := os.Hostname()
	self := fmt.Sprintf("%s/%s/%d", s.cfg.Role, host, os.Getpid())
	s.history.Share(func(data []byte) { s.queue.PublishSample(self, data) })
	if s.cfg.Role == config.RoleWorker {
		return nil
	}
	stop, err := s.queue.SubscribeSamples(self, func(process string, data []byte) {
		if err := s.history.Observe(process, data, time.Now()); err != nil {
			s.log.Warn("metrics history: a process's sample", "err", err)
		}
	})
	if err != nil {
		s.log.Warn("metrics history: charts show this process only", "err", err)
		return nil
	}
	return stop
}

func (s *Server) registerQueueDepth() {
	for _, pool := range []string{queue.PoolFast, queue.PoolHeavy} {
		depth := func(pick func(queue.Depth) float64) func() float64 {
			return func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				d, err := s.queue.Depth(ctx, pool)
				if err != nil {
					return -1
				}
				return pick(d)
			}
		}
		s.Metrics.RegisterQueueDepth(pool,
			depth(func(d queue.Depth) float64 { return float64(d.Pending) }),
			depth(func(d queue.Depth) float64 { return float64(d.AckPending) }),
		)
	}
}

// lockDataDir keeps two processes from sharing one data dir.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another sluice process", dir)
	}
	return f, nil
}
