// Package config gathers the configuration of every part of Sluice into
// one Config, with defaults that work on a laptop. Values come from the
// defaults, then SLUICE_* environment variables, then command-line flags,
// each overriding the one before.
package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/gateway"
	"github.com/sluice-media/sluice/internal/ingest"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/notify"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/webhook"
	"github.com/sluice-media/sluice/internal/worker"
)

// Roles a process plays.
const (
	// RoleAll runs everything in one process (`sluice serve`).
	RoleAll = "all"
	// RoleGateway serves HTTP (API, uploads, delivery) and reconciles;
	// it runs no jobs.
	RoleGateway = "gateway"
	// RoleWorker runs jobs of its pools and serves only /healthz,
	// /readyz and /metrics.
	RoleWorker = "worker"
)

// Config is the whole configuration of a Sluice process.
type Config struct {
	// Role is what this process does: RoleAll (default), RoleGateway or
	// RoleWorker. Gateways and workers share state through an external
	// NATS (and the store and bucket), so those roles need a NATS URL.
	Role string
	// Addr is the HTTP listen address.
	Addr string
	// DataDir holds everything the embedded defaults store: the bucket,
	// the state database, the queue's files, uploads in progress, secrets.
	DataDir string
	// PublicURL is how clients reach this server (for URLs in responses).
	PublicURL string
	// CORSOrigins allowed to call the API from browsers.
	CORSOrigins []string
	// ReconcileInterval is how often lost events and abandoned uploads are
	// looked for.
	ReconcileInterval time.Duration
	// HistoryInterval is how often the dashboard's metric history takes a
	// point (360 are kept). Default 10s.
	HistoryInterval time.Duration
	// ShutdownTimeout bounds how long in-flight HTTP requests may take to
	// finish on shutdown.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (slow clients
	// holding connections open).
	ReadHeaderTimeout time.Duration

	// Engine is the FFmpeg engine steps use unless their pipeline says
	// otherwise: auto, wasm or native.
	Engine string

	Upload upload.Config
	Queue  queue.Config
	Worker worker.Config
	Native media.NativeConfig
	Wasm   media.WasmConfig
	// Pipelines are pipeline files loaded after the built-in pipelines.
	Pipelines []string
	// AssetsDir holds files pipelines may name, such as watermark images
	// and fonts; steps read nothing outside it. Empty: none.
	AssetsDir string
	// AIConfig is the AI providers file ("": the local providers only:
	// Tesseract for OCR, nsfwjs for moderation and tags).
	AIConfig string
	// Variants bounds on-demand thumbnails.
	Variants delivery.VariantConfig

	// Dev serves the API without keys to loopback clients; it requires a
	// loopback listen address.
	Dev bool
	// Limits are the edge's rate limits per client address and per key.
	Limits gateway.LimitConfig
	// Quotas are the daily quotas of keys that set none of their own
	// (zero: unlimited).
	Quotas store.Limits
	// Ingest configures fetching sources for POST /v1/assets.
	Ingest ingest.FetchConfig
	// IngestConcurrency bounds fetches in flight.
	IngestConcurrency int
	// Delivery is how outputs are served unless the pipeline or the
	// asset says otherwise: "public" or "private" (signed URLs).
	Delivery string
	// AssetAccess is which assets an API key without the admin scope may
	// list, read, reprocess and render: "shared" (all) or "per-key" (those
	// it created). Empty: shared.
	AssetAccess string
	// PrivateURLTTL is how long signed output URLs stay valid.
	PrivateURLTTL time.Duration
	// Webhooks configures delivery: timeouts and the retry schedule.
	Webhooks webhook.Config
	// WebhookAllowPrivate lets webhook URLs point at private and loopback
	// addresses: tests and closed networks only (env
	// SLUICE_WEBHOOK_ALLOW_PRIVATE).
	WebhookAllowPrivate bool
	// DatabaseURL, when set, keeps the state in PostgreSQL instead of
	// SQLite in the data dir. Only from the environment
	// (SLUICE_DATABASE_URL or the file SLUICE_DATABASE_URL_FILE names):
	// it holds a password.
	DatabaseURL string `json:"-"`
	// S3, when its Bucket is set, stores objects in an S3-compatible
	// bucket instead of the data dir. Credentials come from the
	// environment only.
	S3 s3blob.Config
	// S3RawKeys says the store's bucket notifications carry object keys
	// as they are rather than URL-encoded (versitygw).
	S3RawKeys bool
	// BucketEventsSubject, when set, is a NATS subject (on the queue's
	// NATS) on which the store publishes its bucket notifications.
	BucketEventsSubject string
	// R2Queue, when its QueueID is set, pulls R2 event notifications
	// from a Cloudflare Queue. From the environment only.
	R2Queue notify.Config
	// OTLPEndpoint, when set, exports traces with OTLP over HTTP (e.g.
	// http://otel-collector:4318): one trace per upload, through its
	// event and every step of its job.
	OTLPEndpoint string
	// Tracing, when set, is used instead of OTLPEndpoint (tests).
	Tracing *telemetry.Tracing `json:"-"`
	// AdminToken is the token of the first admin key, created on first
	// start when the store has no keys; empty: a random one, printed
	// once. Only from the environment (SLUICE_ADMIN_TOKEN or the file
	// SLUICE_ADMIN_TOKEN_FILE names), never a flag.
	AdminToken string `json:"-"`
	// TLSCert and TLSKey are PEM files; when both are set the server
	// speaks HTTPS only.
	TLSCert, TLSKey string
}

// Default returns the configuration of `sluice serve` with no settings.
func Default() Config {
	return Config{
		Role:              RoleAll,
		Addr:              ":8080",
		DataDir:           "sluice-data",
		CORSOrigins:       []string{"*"},
		ReconcileInterval: time.Minute,
		HistoryInterval:   10 * time.Second,
		ShutdownTimeout:   30 * time.Second,
		ReadHeaderTimeout: 10 * time.Second,
		Upload: upload.Config{
			MaxSize:    10 << 30,
			URLExpiry:  time.Hour,
			TusExpiry:  24 * time.Hour,
			StaleAfter: 2 * time.Minute,
		},
		Queue: queue.Config{
			MaxDeliver:  5,
			AckWait:     30 * time.Second,
			StartupWait: time.Minute,
		},
		Worker: worker.Config{
			Concurrency:      2,
			HeavyConcurrency: 1,
			Lease:            30 * time.Second,
			StepTimeout:      10 * time.Minute,
			ShutdownGrace:    30 * time.Second,
		},
		Limits:            gateway.LimitConfig{IPRate: 100, IPBurst: 200, KeyRate: 50, KeyBurst: 100},
		Ingest:            ingest.FetchConfig{Timeout: 30 * time.Minute},
		IngestConcurrency: 4,
		Delivery:          "public",
		PrivateURLTTL:     4 * time.Hour,
		Engine:            media.ModeAuto,
		Native:            media.DefaultNativeConfig(),
		Wasm:              media.WasmConfig{MemoryLimit: 512 << 20},
	}
}

// Resolve fills the paths that derive from DataDir and checks the result.
func (c *Config) Resolve() error {
	if c.DataDir == "" {
		return errors.New("config: data dir is required")
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return err
	}
	c.DataDir = abs
	if c.Queue.URL == "" && c.Queue.StoreDir == "" {
		c.Queue.StoreDir = filepath.Join(abs, "nats")
	}
	if c.Upload.TusDir == "" {
		c.Upload.TusDir = filepath.Join(abs, "tus")
	}
	if c.Wasm.CacheDir == "" {
		c.Wasm.CacheDir = filepath.Join(abs, "wazero-cache")
	}
	switch c.Engine {
	case media.ModeAuto, media.ModeWasm, media.ModeNative:
	default:
		return fmt.Errorf("config: engine %q must be auto, wasm or native", c.Engine)
	}
	if c.Worker.ScratchDir == "" {
		c.Worker.ScratchDir = filepath.Join(abs, "scratch")
	}
	if err := c.Native.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.Variants.ScratchDir == "" {
		c.Variants.ScratchDir = filepath.Join(c.Worker.ScratchDir, "variants")
	}
	if err := c.Variants.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.Upload.MaxSize <= 0 {
		return errors.New("config: max upload size must be positive")
	}
	if c.Worker.Lease > c.Queue.AckWait && c.Queue.AckWait > 0 {
		return fmt.Errorf("config: worker lease (%s) must not exceed the queue ack wait (%s)", c.Worker.Lease, c.Queue.AckWait)
	}
	if c.PublicURL != "" && !strings.HasPrefix(c.PublicURL, "http://") && !strings.HasPrefix(c.PublicURL, "https://") {
		return fmt.Errorf("config: public URL %q must start with http:// or https://", c.PublicURL)
	}
	switch c.Role {
	case RoleAll:
	case RoleGateway, RoleWorker:
		if c.Queue.URL == "" {
			return fmt.Errorf("config: a %s process shares the queue with others: give --nats-url", c.Role)
		}
	default:
		return fmt.Errorf("config: unknown role %q", c.Role)
	}
	for _, p := range c.Worker.Pools {
		if p != queue.PoolFast && p != queue.PoolHeavy {
			return fmt.Errorf("config: pool %q must be %s or %s", p, queue.PoolFast, queue.PoolHeavy)
		}
	}
	if c.Dev {
		if err := loopbackAddr(c.Addr); err != nil {
			return fmt.Errorf("config: --dev serves the API without keys, so it listens on loopback only: %w (try --addr 127.0.0.1:8080)", err)
		}
	}
	if err := upload.ValidateTypePatterns(c.Upload.AllowedTypes); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if c.AssetAccess != "" && c.AssetAccess != "shared" && c.AssetAccess != "per-key" {
		return fmt.Errorf("config: asset access %q must be shared or per-key", c.AssetAccess)
	}
	if c.Delivery != "public" && c.Delivery != "private" {
		return fmt.Errorf("config: delivery %q must be public or private", c.Delivery)
	}
	if c.S3.Bucket != "" {
		if err := c.S3.Validate(); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	if c.R2Queue.QueueID != "" || c.R2Queue.AccountID != "" {
		if err := c.R2Queue.Validate(); err != nil {
			return fmt.Errorf("config: R2 queue (SLUICE_CF_*): %w", err)
		}
	}
	if err := c.Webhooks.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := c.Ingest.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("config: --tls-cert and --tls-key go together")
	}
	return c.Queue.Validate()
}

// loopbackAddr checks that a listen address binds a loopback interface.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q is not a loopback address", addr)
	}
	return nil
}

// Flags binds the settings to fs, with defaults taken from c (so that
// environment values read before show as defaults).
func (c *Config) Flags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "HTTP listen address (env SLUICE_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the bucket, state, queue and secrets (env SLUICE_DATA_DIR)")
	fs.StringVar(&c.PublicURL, "public-url", c.PublicURL, "scheme and host clients use to reach this server, e.g. https://media.example.com (env SLUICE_PUBLIC_URL)")
	fs.Int64Var(&c.Upload.MaxSize, "max-upload-size", c.Upload.MaxSize, "largest accepted upload in bytes (env SLUICE_MAX_UPLOAD_SIZE)")
	fs.IntVar(&c.Worker.Concurrency, "concurrency", c.Worker.Concurrency, "jobs run at once (env SLUICE_CONCURRENCY)")
	fs.StringVar(&c.Queue.URL, "nats-url", c.Queue.URL, "external NATS server URLs, comma-separated; empty runs an embedded server (env SLUICE_NATS_URL)")
	fs.DurationVar(&c.HistoryInterval, "metrics-history-interval", c.HistoryInterval, "how often the dashboard's metric charts take a point; 360 are kept (env SLUICE_METRICS_HISTORY_INTERVAL)")
	fs.DurationVar(&c.Queue.StartupWait, "nats-startup-wait", c.Queue.StartupWait, "how long to wait at start for an external NATS whose JetStream is not ready yet (env SLUICE_NATS_STARTUP_WAIT)")
	fs.IntVar(&c.Queue.Replicas, "nats-replicas", c.Queue.Replicas, "replicas of Sluice's streams on an external NATS cluster: 1, 3 or 5 (env SLUICE_NATS_REPLICAS)")
	fs.StringVar(&c.Engine, "engine", c.Engine, "FFmpeg engine for steps that name none: auto (WebAssembly for parsing and light work, native for encodes), wasm or native (env SLUICE_ENGINE)")
	fs.Int64Var(&c.Wasm.MemoryLimit, "wasm-memory-limit", c.Wasm.MemoryLimit, "memory cap of each WebAssembly FFmpeg run, in bytes (env SLUICE_WASM_MEMORY_LIMIT)")
	fs.StringVar(&c.Native.FFmpeg, "ffmpeg", c.Native.FFmpeg, "ffmpeg binary (env SLUICE_FFMPEG)")
	fs.StringVar(&c.Native.FFprobe, "ffprobe", c.Native.FFprobe, "ffprobe binary (env SLUICE_FFPROBE)")
	fs.StringVar(&c.Native.HWAccel, "hwaccel", c.Native.HWAccel, "H.264 hardware encoder for encodes: none, auto, nvenc, vaapi or qsv; falls back to libx264 (env SLUICE_HWACCEL)")
	fs.StringVar(&c.Native.Cgroup, "ffmpeg-cgroup", c.Native.Cgroup, "cgroup v2 for native FFmpeg children: auto, off, or a delegated cgroup directory (env SLUICE_FFMPEG_CGROUP)")
	fs.Int64Var(&c.Native.MemoryLimit, "ffmpeg-memory-limit", c.Native.MemoryLimit, "memory cap of each native FFmpeg run, in bytes (env SLUICE_FFMPEG_MEMORY_LIMIT)")
	fs.IntVar(&c.Worker.HeavyConcurrency, "heavy-concurrency", c.Worker.HeavyConcurrency, "jobs the heavy pool (encodes) runs at once; -1 for none in this process (env SLUICE_HEAVY_CONCURRENCY)")
	fs.Func("pipelines", "pipeline file loaded after the built-in pipelines; repeatable, or comma-separated (env SLUICE_PIPELINES)", func(v string) error {
		c.Pipelines = append(c.Pipelines, splitList(v)...)
		return nil
	})
	fs.StringVar(&c.AIConfig, "ai-config", c.AIConfig, "AI providers file: providers, chains, limits, budgets; API keys come from the environment or files it names (env SLUICE_AI_CONFIG)")
	fs.StringVar(&c.AssetsDir, "assets-dir", c.AssetsDir, "directory of files pipelines may name: watermark images, fonts (env SLUICE_ASSETS_DIR)")
	fs.IntVar(&c.Variants.Concurrency, "render-concurrency", c.Variants.Concurrency, "on-demand thumbnails rendered at once (env SLUICE_RENDER_CONCURRENCY; default 2)")
	fs.DurationVar(&c.Worker.StepTimeout, "step-timeout", c.Worker.StepTimeout, "default time limit of a pipeline step (env SLUICE_STEP_TIMEOUT)")
	fs.Func("ack-wait", "how long a job may go without a sign of life before its event is redelivered; also the job lease (env SLUICE_ACK_WAIT; default 30s)", func(v string) error {
		d, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		c.Queue.AckWait, c.Worker.Lease = d, d
		return nil
	})
	fs.BoolVar(&c.Dev, "dev", c.Dev, "serve the API without API keys to clients on this machine (loopback --addr only) (env SLUICE_DEV=1)")
	fs.Float64Var(&c.Limits.IPRate, "ip-rate", c.Limits.IPRate, "requests per second allowed per client address (IPv6 /64); 0: no limit (env SLUICE_IP_RATE)")
	fs.IntVar(&c.Limits.IPBurst, "ip-burst", c.Limits.IPBurst, "burst of requests per client address (env SLUICE_IP_BURST)")
	fs.Float64Var(&c.Limits.KeyRate, "key-rate", c.Limits.KeyRate, "requests per second allowed per API key unless the key sets its own; 0: no limit (env SLUICE_KEY_RATE)")
	fs.IntVar(&c.Limits.KeyBurst, "key-burst", c.Limits.KeyBurst, "burst of requests per API key (env SLUICE_KEY_BURST)")
	fs.Func("trusted-proxies", "IPs or CIDRs of reverse proxies whose X-Forwarded-For names the client, comma-separated (env SLUICE_TRUSTED_PROXIES)", func(v string) error {
		c.Limits.TrustedProxies = splitList(v)
		return nil
	})
	fs.Int64Var(&c.Quotas.BytesPerDay, "quota-bytes", c.Quotas.BytesPerDay, "bytes a key may upload per UTC day unless it sets its own; 0: unlimited (env SLUICE_QUOTA_BYTES)")
	fs.Int64Var(&c.Quotas.AssetsPerDay, "quota-assets", c.Quotas.AssetsPerDay, "assets a key may create per UTC day; 0: unlimited (env SLUICE_QUOTA_ASSETS)")
	fs.Float64Var(&c.Quotas.AIUnitsPerDay, "quota-ai-units", c.Quotas.AIUnitsPerDay, "AI units a key's assets may use per UTC day; 0: unlimited (env SLUICE_QUOTA_AI_UNITS)")
	fs.Func("allowed-types", "content types accepted as uploads, judged from their first bytes: type/subtype or type/*, comma-separated (env SLUICE_ALLOWED_TYPES; default video/*,audio/*,image/*)", func(v string) error {
		c.Upload.AllowedTypes = splitList(v)
		return nil
	})
	fs.Func("ingest-hosts", "hosts URL ingest may fetch from, comma-separated; *.example.com for subdomains; empty: any public host (env SLUICE_INGEST_HOSTS)", func(v string) error {
		c.Ingest.AllowedHosts = splitList(v)
		return nil
	})
	fs.DurationVar(&c.Ingest.Timeout, "ingest-timeout", c.Ingest.Timeout, "time limit of one URL ingest fetch, body included (env SLUICE_INGEST_TIMEOUT)")
	fs.StringVar(&c.AssetAccess, "asset-access", c.AssetAccess, "which assets a key without the admin scope may list, read, reprocess and render: shared (all) or per-key (those it created) (env SLUICE_ASSET_ACCESS)")
	fs.StringVar(&c.Delivery, "delivery", c.Delivery, "how outputs are served unless a pipeline or an asset chooses: public, or private (signed, expiring URLs) (env SLUICE_DELIVERY)")
	fs.DurationVar(&c.PrivateURLTTL, "private-url-ttl", c.PrivateURLTTL, "how long signed URLs of private outputs stay valid (env SLUICE_PRIVATE_URL_TTL)")
	fs.StringVar(&c.S3.Endpoint, "s3-endpoint", c.S3.Endpoint, "S3-compatible endpoint, e.g. https://ACCOUNT.r2.cloudflarestorage.com; empty with --s3-bucket: AWS S3 (env SLUICE_S3_ENDPOINT)")
	fs.StringVar(&c.S3.Region, "s3-region", c.S3.Region, "S3 signing region; R2 takes auto (env SLUICE_S3_REGION)")
	fs.StringVar(&c.S3.Bucket, "s3-bucket", c.S3.Bucket, "store objects in this S3 bucket instead of the data dir; credentials from SLUICE_S3_ACCESS_KEY_ID and SLUICE_S3_SECRET_ACCESS_KEY (env SLUICE_S3_BUCKET)")
	fs.BoolVar(&c.S3.PathStyle, "s3-path-style", c.S3.PathStyle, "bucket in the URL path, as MinIO and versitygw need (env SLUICE_S3_PATH_STYLE)")
	fs.Int64Var(&c.S3.PartSize, "s3-part-size", c.S3.PartSize, "multipart part size in bytes; every part but the last has it, as R2 requires (env SLUICE_S3_PART_SIZE; default 16 MiB)")
	fs.BoolVar(&c.S3RawKeys, "s3-events-raw-keys", c.S3RawKeys, "bucket notifications carry keys unencoded (versitygw) (env SLUICE_S3_EVENTS_RAW_KEYS)")
	fs.StringVar(&c.BucketEventsSubject, "bucket-events-subject", c.BucketEventsSubject, "NATS subject the store publishes bucket notifications on (env SLUICE_BUCKET_EVENTS_SUBJECT)")
	fs.BoolVar(&c.Upload.ThroughSluice, "uploads-through-sluice", c.Upload.ThroughSluice, "send signed PUTs through Sluice even when the bucket can take them directly (env SLUICE_UPLOADS_THROUGH_SLUICE)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "OpenTelemetry collector to send traces to, OTLP over HTTP, e.g. http://otel-collector:4318; empty: no tracing (env SLUICE_OTLP_ENDPOINT)")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate (chain) file; with --tls-key, serve HTTPS (env SLUICE_TLS_CERT)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key file for --tls-cert (env SLUICE_TLS_KEY)")
	fs.DurationVar(&c.Worker.ShutdownGrace, "shutdown-grace", c.Worker.ShutdownGrace, "how long running jobs may finish after SIGTERM (env SLUICE_SHUTDOWN_GRACE)")
}

// FromEnv applies SLUICE_* environment variables to c.
func (c *Config) FromEnv(getenv func(string) string) error {
	if getenv == nil {
		getenv = os.Getenv
	}
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	var errs []error
	num := func(name string, dst *int64) {
		if v := getenv(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: %s: %w", name, err))
				return
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: %s: %w", name, err))
				return
			}
			*dst = d
		}
	}
	str("SLUICE_ADDR", &c.Addr)
	str("SLUICE_DATA_DIR", &c.DataDir)
	str("SLUICE_PUBLIC_URL", &c.PublicURL)
	str("SLUICE_NATS_URL", &c.Queue.URL)
	parsed(getenv, &errs, "SLUICE_NATS_REPLICAS", &c.Queue.Replicas, strconv.Atoi)
	dur("SLUICE_NATS_STARTUP_WAIT", &c.Queue.StartupWait)
	dur("SLUICE_METRICS_HISTORY_INTERVAL", &c.HistoryInterval)
	str("SLUICE_ENGINE", &c.Engine)
	num("SLUICE_WASM_MEMORY_LIMIT", &c.Wasm.MemoryLimit)
	str("SLUICE_WASM_CACHE_DIR", &c.Wasm.CacheDir)
	str("SLUICE_FFMPEG", &c.Native.FFmpeg)
	str("SLUICE_FFPROBE", &c.Native.FFprobe)
	str("SLUICE_HWACCEL", &c.Native.HWAccel)
	str("SLUICE_ASSETS_DIR", &c.AssetsDir)
	str("SLUICE_AI_CONFIG", &c.AIConfig)
	str("SLUICE_FFMPEG_CGROUP", &c.Native.Cgroup)
	num("SLUICE_FFMPEG_MEMORY_LIMIT", &c.Native.MemoryLimit)
	num("SLUICE_MAX_UPLOAD_SIZE", &c.Upload.MaxSize)
	var conc, heavy int64 = int64(c.Worker.Concurrency), int64(c.Worker.HeavyConcurrency)
	num("SLUICE_CONCURRENCY", &conc)
	num("SLUICE_HEAVY_CONCURRENCY", &heavy)
	var render int64 = int64(c.Variants.Concurrency)
	num("SLUICE_RENDER_CONCURRENCY", &render)
	c.Worker.Concurrency, c.Worker.HeavyConcurrency, c.Variants.Concurrency = int(conc), int(heavy), int(render)
	if v := getenv("SLUICE_PIPELINES"); v != "" {
		c.Pipelines = splitList(v)
	}
	dur("SLUICE_STEP_TIMEOUT", &c.Worker.StepTimeout)
	dur("SLUICE_SHUTDOWN_GRACE", &c.Worker.ShutdownGrace)
	dur("SLUICE_ACK_WAIT", &c.Queue.AckWait)
	if getenv("SLUICE_ACK_WAIT") != "" {
		c.Worker.Lease = c.Queue.AckWait
	}
	secret := func(name string, dst *string) {
		str(name, dst)
		if f := getenv(name + "_FILE"); *dst == "" && f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				errs = append(errs, fmt.Errorf("config: %s_FILE: %w", name, err))
			}
			*dst = strings.TrimSpace(string(b))
		}
	}
	secret("SLUICE_ADMIN_TOKEN", &c.AdminToken)
	if v := getenv("SLUICE_ALLOWED_TYPES"); v != "" {
		c.Upload.AllowedTypes = splitList(v)
	}
	if v := getenv("SLUICE_INGEST_HOSTS"); v != "" {
		c.Ingest.AllowedHosts = splitList(v)
	}
	dur("SLUICE_INGEST_TIMEOUT", &c.Ingest.Timeout)
	// Lifting the SSRF checks is for tests and closed networks only, so
	// it has no flag.
	parsed(getenv, &errs, "SLUICE_WEBHOOK_ALLOW_PRIVATE", &c.WebhookAllowPrivate, strconv.ParseBool)
	parsed(getenv, &errs, "SLUICE_INGEST_ALLOW_PRIVATE", &c.Ingest.AllowPrivate, strconv.ParseBool)
	str("SLUICE_OTLP_ENDPOINT", &c.OTLPEndpoint)
	str("SLUICE_DELIVERY", &c.Delivery)
	str("SLUICE_ASSET_ACCESS", &c.AssetAccess)
	dur("SLUICE_PRIVATE_URL_TTL", &c.PrivateURLTTL)
	dur("SLUICE_READ_HEADER_TIMEOUT", &c.ReadHeaderTimeout)
	secret("SLUICE_DATABASE_URL", &c.DatabaseURL)
	str("SLUICE_S3_ENDPOINT", &c.S3.Endpoint)
	str("SLUICE_S3_REGION", &c.S3.Region)
	str("SLUICE_S3_BUCKET", &c.S3.Bucket)
	parsed(getenv, &errs, "SLUICE_S3_PATH_STYLE", &c.S3.PathStyle, strconv.ParseBool)
	num("SLUICE_S3_PART_SIZE", &c.S3.PartSize)
	str("AWS_ACCESS_KEY_ID", &c.S3.AccessKeyID)
	secret("AWS_SECRET_ACCESS_KEY", &c.S3.SecretAccessKey)
	str("SLUICE_S3_ACCESS_KEY_ID", &c.S3.AccessKeyID)
	secret("SLUICE_S3_SECRET_ACCESS_KEY", &c.S3.SecretAccessKey)
	parsed(getenv, &errs, "SLUICE_S3_EVENTS_RAW_KEYS", &c.S3RawKeys, strconv.ParseBool)
	str("SLUICE_BUCKET_EVENTS_SUBJECT", &c.BucketEventsSubject)
	parsed(getenv, &errs, "SLUICE_UPLOADS_THROUGH_SLUICE", &c.Upload.ThroughSluice, strconv.ParseBool)
	str("SLUICE_CF_ACCOUNT_ID", &c.R2Queue.AccountID)
	str("SLUICE_CF_QUEUE_ID", &c.R2Queue.QueueID)
	secret("SLUICE_CF_API_TOKEN", &c.R2Queue.Token)
	str("SLUICE_TLS_CERT", &c.TLSCert)
	str("SLUICE_TLS_KEY", &c.TLSKey)
	num("SLUICE_QUOTA_BYTES", &c.Quotas.BytesPerDay)
	num("SLUICE_QUOTA_ASSETS", &c.Quotas.AssetsPerDay)
	flt := func(v string) (float64, error) { return strconv.ParseFloat(v, 64) }
	parsed(getenv, &errs, "SLUICE_QUOTA_AI_UNITS", &c.Quotas.AIUnitsPerDay, flt)
	parsed(getenv, &errs, "SLUICE_IP_RATE", &c.Limits.IPRate, flt)
	parsed(getenv, &errs, "SLUICE_KEY_RATE", &c.Limits.KeyRate, flt)
	var ipBurst, keyBurst = int64(c.Limits.IPBurst), int64(c.Limits.KeyBurst)
	num("SLUICE_IP_BURST", &ipBurst)
	num("SLUICE_KEY_BURST", &keyBurst)
	c.Limits.IPBurst, c.Limits.KeyBurst = int(ipBurst), int(keyBurst)
	if v := getenv("SLUICE_TRUSTED_PROXIES"); v != "" {
		c.Limits.TrustedProxies = splitList(v)
	}
	parsed(getenv, &errs, "SLUICE_DEV", &c.Dev, strconv.ParseBool)
	if v := getenv("SLUICE_CORS_ORIGINS"); v != "" {
		c.CORSOrigins = strings.Split(v, ",")
	}
	return errors.Join(errs...)
}

// parsed sets *dst from the environment variable name, if set, through
// parse; a value that does not parse is added to errs.
func parsed[T any](getenv func(string) string, errs *[]error, name string, dst *T, parse func(string) (T, error)) {
	v := getenv(name)
	if v == "" {
		return
	}
	x, err := parse(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("config: %s: %w", name, err))
		return
	}
	*dst = x
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
