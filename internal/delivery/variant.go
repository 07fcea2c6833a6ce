package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/wire"
)

// VariantFiles are the file names Variants serves below an asset, one
// per format: mount each as "GET /v1/assets/{id}/"+name (a GET pattern
// also takes HEAD).
var VariantFiles = []string{"thumbnail.jpg", "thumbnail.png", "thumbnail.webp", "thumbnail.gif"}

// Assets is what Variants needs of the state store.
type Assets interface {
	GetAsset(ctx context.Context, id string) (store.Asset, error)
}

// VariantConfig configures on-demand variants. Zero values take the
// defaults, which suit a laptop.
type VariantConfig struct {
	Limits
	// Concurrency is how many variants render at once; default 2.
	Concurrency int
	// Queue is how many renders may wait for a slot; beyond it a request
	// gets a 503 at once. Default 8; negative: none wait.
	Queue int
	// Wait is the longest a render waits for a slot before its requests
	// get a 503; default 10 s.
	Wait time.Duration
	// RenderTimeout bounds one render; default 60 s.
	RenderTimeout time.Duration
	// RetryAfter is what a 503 tells clients to wait; default 5 s.
	RetryAfter time.Duration
	// ScratchDir holds each render's input link and output ("": the
	// system's temporary directory). On the bucket's file system, a
	// render's input is a hard link and its output is renamed into place.
	ScratchDir string
	// Engine is the engine mode for renders ("": the engines' default).
	Engine string
}

func (c VariantConfig) withDefaults() VariantConfig {
	c.Limits = c.Limits.withDefaults()
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.Queue == 0 {
		c.Queue = 8
	}
	if c.Queue < 0 {
		c.Queue = 0
	}
	if c.Wait == 0 {
		c.Wait = 10 * time.Second
	}
	if c.RenderTimeout == 0 {
		c.RenderTimeout = time.Minute
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = 5 * time.Second
	}
	return c
}

// Validate reports settings that cannot work.
func (c VariantConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.MaxDimension < minDimension:
		return fmt.Errorf("delivery: variant max dimension %d is below %d", c.MaxDimension, minDimension)
	case c.MaxAnimationPixels < 0:
		return fmt.Errorf("delivery: negative variant animation pixel budget")
	case c.Concurrency < 0:
		return fmt.Errorf("delivery: negative variant concurrency")
	case c.Wait < 0 || c.RenderTimeout < 0 || c.RetryAfter < 0:
		return fmt.Errorf("delivery: negative variant timeout")
	}
	return nil
}

// Errors a variant request may end in besides *ParamError and the
// store's and bucket's not-found errors. ErrorStatus maps each to its
// HTTP status.
var (
	// ErrNoSuchVariant: the file name is not one of VariantFiles.
	ErrNoSuchVariant = errors.New("no such variant (want thumbnail.jpg, .png, .webp or .gif)")
	// ErrNotProbed: the asset is not yet probed, so its video is unknown.
	ErrNotProbed = errors.New("asset has not been probed yet; try again once processing has started")
	// ErrAssetFailed: processing failed before the asset was probed.
	ErrAssetFailed = errors.New("asset failed processing")
	// ErrNoVideo: the asset has no video stream (audio only, say).
	ErrNoVideo = errors.New("asset has no video")
	// ErrBusy: every render slot is taken and the queue is full, or a
	// slot did not come free in time. The response carries Retry-After.
	ErrBusy = errors.New("too many thumbnails are being rendered; try again shortly")
	// ErrRender: the video yields no picture for these parameters.
	ErrRender = errors.New("thumbnail could not be rendered")
	// ErrMethod: a method other than GET or HEAD.
	ErrMethod = errors.New("method not allowed on this route")
)

// ErrorStatus maps the errors Variants returns to an HTTP status and a
// stable code; ok is false for any other error.
func ErrorStatus(err error) (status int, code string, ok bool) {
	var pe *ParamError
	switch {
	case errors.As(err, &pe):
		return http.StatusBadRequest, "invalid_parameter", true
	case errors.Is(err, ErrNoSuchVariant):
		return http.StatusNotFound, "not_found", true
	case errors.Is(err, ErrNoVideo):
		return http.StatusNotFound, "no_video", true
	case errors.Is(err, ErrNotProbed):
		return http.StatusConflict, "not_ready", true
	case errors.Is(err, ErrAssetFailed):
		return http.StatusConflict, "asset_failed", true
	case errors.Is(err, ErrRender):
		return http.StatusUnprocessableEntity, "render_failed", true
	case errors.Is(err, ErrBusy):
		return http.StatusServiceUnavailable, "busy", true
	case errors.Is(err, ErrMethod):
		return http.StatusMethodNotAllowed, "method_not_allowed", true
	}
	return 0, "", false
}

// Variants serves pictures taken from an asset's video on demand —
// /v1/assets/{id}/thumbnail.jpg?time=12.5s&width=320, the URL style of
// video platforms' image APIs (see ParseVariantParams) — rendering each
// on its first request and serving it from the bucket afterwards.
//
// A variant is stored at assets/{id}/variants/{hash}.{ext}, where hash
// covers the resolved parameters and the source object's key and ETag:
// the key never holds other content, so responses are cacheable forever
// (Cache-Control immutable), with ETag, Range and 304s as for any output.
//
// Renders run under a semaphore with a bounded queue (ErrBusy, a 503 with
// Retry-After, beyond it), and concurrent requests for one variant share
// one render. A render is not tied to the request that started it: it
// finishes, and stores its result, even when every client has gone,
// within RenderTimeout.
//
// Mount it, with Log and WriteError set, as
//
//	for _, f := range delivery.VariantFiles {
//		mux.Handle("GET /v1/assets/{id}/"+f, variants)
//	}
//
// It reads the asset id from r.PathValue("id") and the format from the
// last path segment, so "GET /v1/assets/{id}/{file}" works as well.
// Call Close on shutdown, after the HTTP server has stopped.
type Variants struct {
	cfg     VariantConfig
	server  *Server
	bucket  blob.Bucket
	assets  Assets
	engines *media.Engines

	// WriteError sends an error response. The gateway sets its own, which
	// should map errors with ErrorStatus; nil writes the API's JSON error
	// document itself. Retry-After is set before it is called.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	// Log receives render failures and, when WriteError is nil, internal
	// errors (nil: slog.Default()).
	Log *slog.Logger

	// renderFrame renders one picture; tests replace it.
	renderFrame func(ctx context.Context, input string, m *pipeline.Media, dir, name string, o media.FrameOptions) error

	slots   chan struct{}
	waiting atomic.Int64
	renders atomic.Int64 // renders started
	shared  atomic.Int64 // requests that waited on another's render

	mu      sync.Mutex
	flights map[string]*flight
	// base ends renders on Close.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// flight is one render that requests for the same variant wait on.
type flight struct {
	done chan struct{}
	err  error
}

// NewVariants returns the variant handler. It serves stored variants
// through s, and so from s's bucket, where it also stores them.
func NewVariants(cfg VariantConfig, s *Server, assets Assets, e *media.Engines) (*Variants, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if s == nil || assets == nil || e == nil {
		return nil, errors.New("delivery: variants need a server, an asset store and media engines")
	}
	if err := e.Validate(cfg.Engine); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Variants{
		cfg: cfg, server: s, bucket: s.bucket, assets: assets, engines: e,
		slots:   make(chan struct{}, cfg.Concurrency),
		flights: map[string]*flight{},
	}
	v.renderFrame = func(ctx context.Context, input string, m *pipeline.Media, dir, name string, o media.FrameOptions) error {
		return media.RenderFrame(ctx, v.engines, input, m, dir, name, o)
	}
	v.base, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// Close stops waiting renders, cancels running ones and waits for them
// to end.
func (v *Variants) Close() error {
	v.cancel()
	v.wg.Wait()
	return nil
}

// ServeHTTP implements http.Handler.
func (v *Variants) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := v.serve(w, r)
	if err == nil || r.Context().Err() != nil {
		// Done, or the client is gone (a render it started goes on).
		return
	}
	if errors.Is(err, ErrBusy) {
		w.Header().Set("Retry-After", strconv.Itoa(int((v.cfg.RetryAfter+time.Second-1)/time.Second)))
	}
	if errors.Is(err, ErrMethod) {
		w.Header().Set("Allow", "GET, HEAD")
	}
	if v.WriteError != nil {
		v.WriteError(w, r, err)
		return
	}
	v.writeError(w, r, err)
}

func (v *Variants) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return ErrMethod
	}
	ctx := r.Context()
	format, ok := strings.CutPrefix(path.Base(r.URL.Path), "thumbnail.")
	if !ok {
		return ErrNoSuchVariant
	}
	switch format {
	case media.FormatJPEG, media.FormatPNG, media.FormatWebP, media.FormatGIF:
	default:
		return ErrNoSuchVariant
	}
	// Bad parameters are refused before anything is looked up.
	p, err := ParseVariantParams(format, r.URL.RawQuery, v.cfg.Limits)
	if err != nil {
		return err
	}
	a, err := v.assets.GetAsset(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	if a.Quarantine != "" {
		return fmt.Errorf("%w: %s", ErrHeld, a.Quarantine)
	}
	m, err := assetMedia(a)
	if err != nil {
		return err
	}
	o, err := p.resolve(m, v.cfg.Limits)
	if err != nil {
		return err
	}
	o.Engine = v.cfg.Engine
	key := variantKey(a, o)
	if err := v.server.ServeImmutable(ctx, w, r, key); !errors.Is(err, blob.ErrNotFound) {
		return err
	}
	if err := v.produce(ctx, key, a, m, o); err != nil {
		return err
	}
	return v.server.ServeImmutable(ctx, w, r, key)
}

// assetMedia returns what the probe found in the asset, or why there is
// nothing to take a picture from.
func assetMedia(a store.Asset) (*pipeline.Media, error) {
	if len(a.Media) == 0 {
		if a.Status == store.StatusFailed {
			if a.Error != "" {
				return nil, fmt.Errorf("%w: %s", ErrAssetFailed, a.Error)
			}
			return nil, ErrAssetFailed
		}
		return nil, ErrNotProbed
	}
	var m pipeline.Media
	if err := json.Unmarshal(a.Media, &m); err != nil {
		return nil, fmt.Errorf("delivery: asset %s media: %w", a.ID, err)
	}
	if m.Video() == nil {
		return nil, ErrNoVideo
	}
	return &m, nil
}

// variantVersion changes whenever rendering changes what a set of
// parameters produces, so that old variants are not served for new.
const variantVersion = "1"

// variantKey is the bucket key of the variant o of asset a.
func variantKey(a store.Asset, o media.FrameOptions) string {
	canonical := strings.Join([]string{
		variantVersion, a.ID, a.Key, a.ETag, o.Format,
		strconv.FormatFloat(o.At, 'f', 3, 64),
		strconv.Itoa(o.Width), strconv.Itoa(o.Height), o.Fit,
		strconv.FormatFloat(o.Duration, 'f', 3, 64), strconv.Itoa(o.FPS),
	}, "\n")
	sum := sha256.Sum256([]byte(canonical))
	return "assets/" + a.ID + "/variants/" + hex.EncodeToString(sum[:8]) + "." + o.Format
}

// produce makes sure the variant at key exists, rendering it unless a
// render of it is already under way, and waits for that render (or ctx).
func (v *Variants) produce(ctx context.Context, key string, a store.Asset, m *pipeline.Media, o media.FrameOptions) error {
	v.mu.Lock()
	f, ok := v.flights[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		v.flights[key] = f
		v.wg.Add(1)
		go func() {
			defer v.wg.Done()
			f.err = v.runFlight(key, a, m, o)
			v.mu.Lock()
			delete(v.flights, key)
			v.mu.Unlock()
			close(f.done)
		}()
	} else {
		v.shared.Add(1)
	}
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runFlight takes a render slot, waiting in the queue if there is room,
// and renders.
func (v *Variants) runFlight(key string, a store.Asset, m *pipeline.Media, o media.FrameOptions) error {
	select {
	case v.slots <- struct{}{}:
	default:
		if v.waiting.Add(1) > int64(v.cfg.Queue) {
			v.waiting.Add(-1)
			return ErrBusy
		}
		t := time.NewTimer(v.cfg.Wait)
		select {
		case v.slots <- struct{}{}:
			t.Stop()
			v.waiting.Add(-1)
		case <-t.C:
			v.waiting.Add(-1)
			return ErrBusy
		case <-v.base.Done():
			v.waiting.Add(-1)
			return ErrBusy
		}
	}
	defer func() { <-v.slots }()
	ctx, cancel := context.WithTimeout(v.base, v.cfg.RenderTimeout)
	defer cancel()
	start := time.Now()
	err := v.render(ctx, key, a, m, o)
	if err != nil {
		v.log().Warn("delivery: variant render failed", "asset", a.ID, "key", key, "err", err)
		return err
	}
	v.log().Debug("delivery: variant rendered", "asset", a.ID, "key", key, "took", time.Since(start))
	return nil
}

// render renders the variant into a scratch directory and stores it.
func (v *Variants) render(ctx context.Context, key string, a store.Asset, m *pipeline.Media, o media.FrameOptions) error {
	// Another flight (in this process, just ended, or in another gateway)
	// may have stored it since the request looked.
	if _, err := v.bucket.Stat(ctx, key); err == nil {
		return nil
	}
	dir, err := os.MkdirTemp(v.cfg.ScratchDir, "variant-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	input, err := localInput(ctx, v.bucket, a.Key, dir)
	if errors.Is(err, blob.ErrNotFound) {
		// Not the client's 404: the asset is there, its source is not.
		return fmt.Errorf("delivery: source object %s of asset %s is missing", a.Key, a.ID)
	}
	if err != nil {
		return err
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o750); err != nil {
		return err
	}
	name := "variant." + o.Format
	v.renders.Add(1)
	if err := v.renderFrame(ctx, input, m, out, name, o); err != nil {
		var me *pipeline.MediaError
		if errors.As(err, &me) {
			return fmt.Errorf("%w: %s", ErrRender, me.Reason)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w: it took longer than %s", ErrRender, v.cfg.RenderTimeout)
		}
		return err
	}
	_, err = blob.Import(ctx, v.bucket, key, filepath.Join(out, name), blob.PutOptions{ContentType: o.ContentType(), Size: -1})
	return err
}

// localInput places the source at dir/in/source, a directory holding
// nothing else, since a sandboxed engine is given the input's whole
// directory: a hard link to the bucket's file when the bucket is local
// and on the same file system, else a streamed copy.
func localInput(ctx context.Context, b blob.Bucket, key, dir string) (string, error) {
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o750); err != nil {
		return "", err
	}
	p := filepath.Join(in, "source")
	if lp, ok := b.(blob.LocalPather); ok {
		if src, err := lp.LocalPath(key); err == nil && os.Link(src, p) == nil {
			return p, nil
		}
	}
	obj, err := b.Open(ctx, key)
	if err != nil {
		return "", fmt.Errorf("source object %s: %w", key, err)
	}
	defer obj.Close()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(f, obj); err != nil {
		return "", fmt.Errorf("copy source: %w", err)
	}
	return p, f.Close()
}

func (v *Variants) log() *slog.Logger {
	if v.Log != nil {
		return v.Log
	}
	return slog.Default()
}

// writeError writes err as the API's JSON error document, for use
// without the gateway.
func (v *Variants) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, ok := ErrorStatus(err)
	msg := err.Error()
	switch {
	case ok:
	case errors.Is(err, store.ErrNotFound), errors.Is(err, blob.ErrNotFound):
		status, code, msg = http.StatusNotFound, "not_found", "no such asset"
	default:
		v.log().Error("delivery: variant request failed", "path", r.URL.Path, "err", err)
		status, code, msg = http.StatusInternalServerError, "internal", "internal error"
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Error{Error: wire.ErrorBody{Code: code, Message: msg}})
}
