package ai

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

// gwProvider is an in-process provider that can do every task. Its
// answer for the n-th call (from 1) comes from fn; by default it answers
// "<name> #n". It counts calls and the most calls in flight at once.
type gwProvider struct {
	name  string
	model string
	fn    func(ctx context.Context, n int) (string, Usage, error)
	avail func() error

	calls      atomic.Int64
	availCalls atomic.Int64
	inFlight   atomic.Int64
	maxFlight  atomic.Int64
	log        *gwCallLog
}

// gwCallLog records the order in which providers were called.
type gwCallLog struct {
	mu    sync.Mutex
	names []string
}

func (l *gwCallLog) add(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.names = append(l.names, name)
}

func (l *gwCallLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.names)
}

func (p *gwProvider) Name() string      { return p.name }
func (p *gwProvider) Model(Task) string { return p.model }
func (p *gwProvider) Available(context.Context) error {
	p.availCalls.Add(1)
	if p.avail != nil {
		return p.avail()
	}
	return nil
}

func (p *gwProvider) do(ctx context.Context) (string, Usage, error) {
	n := p.calls.Add(1)
	if p.log != nil {
		p.log.add(p.name)
	}
	cur := p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	for {
		m := p.maxFlight.Load()
		if cur <= m || p.maxFlight.CompareAndSwap(m, cur) {
			break
		}
	}
	if p.fn != nil {
		return p.fn(ctx, int(n))
	}
	return fmt.Sprintf("%s #%d", p.name, n), Usage{}, nil
}

func (p *gwProvider) Transcribe(ctx context.Context, req TranscribeRequest) (Transcript, Usage, error) {
	s, u, err := p.do(ctx)
	return Transcript{Text: s, Segments: []Segment{{0, req.Duration, s}}}, u, err
}

func (p *gwProvider) Describe(ctx context.Context, _ DescribeRequest) (Description, Usage, error) {
	s, u, err := p.do(ctx)
	return Description{Text: s}, u, err
}

func (p *gwProvider) Tag(ctx context.Context, _ TagRequest) ([]Label, Usage, error) {
	s, u, err := p.do(ctx)
	return []Label{{Name: s, Score: 0.5}}, u, err
}

func (p *gwProvider) Moderate(ctx context.Context, _ ModerateRequest) (Moderation, Usage, error) {
	s, u, err := p.do(ctx)
	return Moderation{Categories: map[string]float64{s: 0.1}}, u, err
}

func (p *gwProvider) OCR(ctx context.Context, _ OCRRequest) (OCRResult, Usage, error) {
	s, u, err := p.do(ctx)
	return OCRResult{Text: s}, u, err
}

func (p *gwProvider) Summarize(ctx context.Context, _ SummarizeRequest) (Summary, Usage, error) {
	s, u, err := p.do(ctx)
	return Summary{Text: s}, u, err
}

// ocrOnly can do OCR and nothing else.
type ocrOnly struct{ p *gwProvider }

func (o ocrOnly) Name() string                        { return o.p.Name() }
func (o ocrOnly) Model(t Task) string                 { return o.p.Model(t) }
func (o ocrOnly) Available(ctx context.Context) error { return o.p.Available(ctx) }
func (o ocrOnly) OCR(ctx context.Context, req OCRRequest) (OCRResult, Usage, error) {
	return o.p.OCR(ctx, req)
}

// gwClock is the gateway's clock in tests.
type gwClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *gwClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *gwClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gwHarness is a gateway over test providers, with a registry, a clock
// and a record of the waits between retries (which return at once).
type gwHarness struct {
	g      *Gateway
	reg    *prometheus.Registry
	clock  *gwClock
	mu     sync.Mutex
	sleeps []time.Duration
}

func (h *gwHarness) waits() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sleeps)
}

func newGW(t *testing.T, cfg Config, cache Cache, providers ...Provider) *gwHarness {
	t.Helper()
	h := &gwHarness{reg: prometheus.NewRegistry(), clock: &gwClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}}
	g, err := New(cfg, providers, cache, h.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.now = h.clock.Now
	g.sleep = func(ctx context.Context, d time.Duration) error {
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
		return ctx.Err()
	}
	h.g = g
	return h
}

// gwChain configures one task's chain, with the same limits for every
// provider named.
func gwChain(t Task, lim Limits, names ...string) Config {
	cfg := Config{Chains: map[Task][]string{t: names}, Limits: map[string]Limits{}}
	for _, n := range names {
		cfg.Limits[n] = lim
	}
	return cfg
}

func gwImage(s string) Image { return Image{Data: []byte(s), ContentType: "image/png"} }

func gwOCR(h *gwHarness, ctx context.Context, input string) (OCRResult, Meta, error) {
	return h.g.OCR(ctx, OCRRequest{Image: gwImage(input)}, Call{AssetID: "asset-1"})
}

func gwValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	return testutil.ToFloat64(c)
}

func TestGatewayCacheHitMakesNoCalls(t *testing.T) {
	cache, err := NewFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	p := &gwProvider{name: "local", model: "m1"}
	h := newGW(t, gwChain(TaskOCR, Limits{}, "local"), cache, p)
	ctx := context.Background()

	first, meta, err := gwOCR(h, ctx, "frame-1")
	if err != nil {
		t.Fatal(err)
	}
	if meta.Cached || meta.Provider != "local" || meta.Model != "m1" || meta.Attempts != 1 {
		t.Errorf("first call meta = %+v, want uncached from local/m1 in 1 attempt", meta)
	}
	second, meta, err := gwOCR(h, ctx, "frame-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.calls.Load(); got != 1 {
		t.Errorf("provider calls after two identical requests = %d, want 1", got)
	}
	if !meta.Cached || meta.Attempts != 0 || meta.Provider != "local" {
		t.Errorf("second call meta = %+v, want cached from local with 0 attempts", meta)
	}
	if second.Text != first.Text {
		t.Errorf("cached text = %q, want %q", second.Text, first.Text)
	}

	// Another input, other parameters, another model: each a new call.
	if _, _, err := gwOCR(h, ctx, "frame-2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.g.OCR(ctx, OCRRequest{Image: gwImage("frame-1"), Languages: []string{"deu"}}, Call{}); err != nil {
		t.Fatal(err)
	}
	p.model = "m2"
	if _, _, err := gwOCR(h, ctx, "frame-1"); err != nil {
		t.Fatal(err)
	}
	if got := p.calls.Load(); got != 4 {
		t.Errorf("provider calls = %d, want 4 (new input, new languages, new model)", got)
	}
	hits := gwValue(t, h.g.metrics.cache.WithLabelValues("ocr", "hit"))
	misses := gwValue(t, h.g.metrics.cache.WithLabelValues("ocr", "miss"))
	if hits != 1 || misses != 4 {
		t.Errorf("cache metrics: %v hits, %v misses; want 1 and 4", hits, misses)
	}
}

func TestGatewayCacheFindsFallbackAnswer(t *testing.T) {
	cache, err := NewFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bad := &gwProvider{name: "bad", fn: func(context.Context, int) (string, Usage, error) {
		return "", Usage{}, &ProviderError{Provider: "bad", Status: 400, Message: "no"}
	}}
	good := &gwProvider{name: "good"}
	h := newGW(t, gwChain(TaskSummarize, Limits{}, "bad", "good"), cache, bad, good)
	req := SummarizeRequest{Text: "a long text", MaxTokens: 50}
	for range 2 {
		if _, _, err := h.g.Summarize(context.Background(), req, Call{}); err != nil {
			t.Fatal(err)
		}
	}
	if b, g := bad.calls.Load(), good.calls.Load(); b != 1 || g != 1 {
		t.Errorf("calls: bad %d, good %d; want 1 and 1 (second answer from the cache)", b, g)
	}
}

func TestGatewayRetryHonoursRetryAfter(t *testing.T) {
	p := &gwProvider{name: "remote", fn: func(_ context.Context, n int) (string, Usage, error) {
		if n == 1 {
			return "", Usage{}, &ProviderError{Provider: "remote", Status: 429, Message: "slow down", RetryAfter: 1500 * time.Millisecond}
		}
		return "ok", Usage{}, nil
	}}
	h := newGW(t, gwChain(TaskDescribe, Limits{Retries: 2}, "remote"), nil, p)
	got, meta, err := h.g.Describe(context.Background(), DescribeRequest{Images: []Image{gwImage("a")}}, Call{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Text != "ok" || meta.Attempts != 2 || len(meta.Skipped) != 0 {
		t.Errorf("got %q, meta %+v; want ok after 2 attempts, nothing skipped", got.Text, meta)
	}
	if w := h.waits(); !slices.Equal(w, []time.Duration{1500 * time.Millisecond}) {
		t.Errorf("waits between attempts = %v, want exactly the Retry-After [1.5s]", w)
	}
	if r := gwValue(t, h.g.metrics.retries.WithLabelValues("remote")); r != 1 {
		t.Errorf("sluice_ai_retries_total = %v, want 1", r)
	}
	if n := testutil.CollectAndCount(h.g.metrics.duration, "sluice_ai_call_duration_seconds"); n != 2 {
		t.Errorf("duration series = %d, want 2 (rate_limited and ok)", n)
	}
}

func TestGatewayRetryAfterRealWait(t *testing.T) {
	// With the real sleep: the second call starts after the first ended
	// plus Retry-After.
	const after = 30 * time.Millisecond
	var mu sync.Mutex
	var ended, started time.Time
	p := &gwProvider{name: "remote", fn: func(_ context.Context, n int) (string, Usage, error) {
		mu.Lock()
		defer mu.Unlock()
		if n == 1 {
			ended = time.Now()
			return "", Usage{}, &ProviderError{Provider: "remote", Status: 503, RetryAfter: after}
		}
		started = time.Now()
		return "ok", Usage{}, nil
	}}
	g, err := New(gwChain(TaskOCR, Limits{Retries: 1}, "remote"), []Provider{p}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, meta, err := g.OCR(context.Background(), OCRRequest{Image: gwImage("x")}, Call{}); err != nil || meta.Attempts != 2 {
		t.Fatalf("err %v, attempts %d; want success on attempt 2", err, meta.Attempts)
	}
	if gap := started.Sub(ended); gap < after {
		t.Errorf("second attempt began %v after the first failed, before Retry-After %v", gap, after)
	}
}

func TestGatewayRetryAfterBeyondDeadlineMovesOn(t *testing.T) {
	slow := &gwProvider{name: "slow", fn: func(context.Context, int) (string, Usage, error) {
		return "", Usage{}, &ProviderError{Provider: "slow", Status: 429, RetryAfter: time.Hour}
	}}
	next := &gwProvider{name: "next"}
	h := newGW(t, gwChain(TaskOCR, Limits{Retries: 3}, "slow", "next"), nil, slow, next)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, meta, err := gwOCR(h, ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if slow.calls.Load() != 1 || len(h.waits()) != 0 {
		t.Errorf("slow called %d times, waits %v; want 1 call and no wait (Retry-After past the deadline)", slow.calls.Load(), h.waits())
	}
	if meta.Provider != "next" || len(meta.Skipped) != 1 || !strings.Contains(meta.Skipped[0].Error, "not retried") {
		t.Errorf("meta = %+v, want next answering after slow skipped as not retried", meta)
	}
}

func TestGatewayRetriesTemporaryErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"503", &ProviderError{Provider: "p", Status: 503}},
		{"temporary", &ProviderError{Provider: "p", Message: "truncated", Temporary: true}},
		{"network", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}},
		{"deadline", fmt.Errorf("p: %w", context.DeadlineExceeded)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &gwProvider{name: "p", fn: func(_ context.Context, n int) (string, Usage, error) {
				if n <= 2 {
					return "", Usage{}, tc.err
				}
				return "ok", Usage{}, nil
			}}
			h := newGW(t, gwChain(TaskOCR, Limits{Retries: 2}, "p"), nil, p)
			if _, meta, err := gwOCR(h, context.Background(), "x"); err != nil || meta.Attempts != 3 {
				t.Fatalf("err %v, attempts %d; want success on attempt 3", err, meta.Attempts)
			}
			w := h.waits()
			if len(w) != 2 || w[0] <= 0 || w[1] <= 0 {
				t.Errorf("waits = %v, want two backoff pauses", w)
			}
		})
	}
}

func TestGatewayClientErrorNotRetried(t *testing.T) {
	log := &gwCallLog{}
	bad := &gwProvider{name: "first", log: log, fn: func(context.Context, int) (string, Usage, error) {
		return "", Usage{}, &ProviderError{Provider: "first", Status: 400, Code: "invalid_request", Message: "bad image"}
	}}
	good := &gwProvider{name: "second", log: log}
	h := newGW(t, gwChain(TaskTag, Limits{Retries: 3, BreakerFailures: 1}, "first", "second"), nil, bad, good)
	labels, meta, err := h.g.Tag(context.Background(), TagRequest{Image: gwImage("x")}, Call{})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.get(); !slices.Equal(got, []string{"first", "second"}) {
		t.Errorf("calls = %v, want [first second]: a 400 is not retried", got)
	}
	if len(labels) != 1 || labels[0].Name != "second #1" || meta.Provider != "second" {
		t.Errorf("labels %v from %q, want second's", labels, meta.Provider)
	}
	if len(meta.Skipped) != 1 || meta.Skipped[0].Provider != "first" || !strings.Contains(meta.Skipped[0].Error, "HTTP 400") {
		t.Errorf("skipped = %+v, want first with its HTTP 400", meta.Skipped)
	}
	if len(h.waits()) != 0 {
		t.Errorf("waited %v, want no retry", h.waits())
	}
	if f := gwValue(t, h.g.metrics.fallbacks.WithLabelValues("tag")); f != 1 {
		t.Errorf("sluice_ai_fallbacks_total = %v, want 1", f)
	}
	// A 400 means the provider is up: even with BreakerFailures 1 the
	// breaker stays closed.
	if s := h.g.chains[TaskTag][0].br.current(); s != breakerClosed {
		t.Errorf("first's breaker is %v after a 400, want closed", s)
	}
}

func TestGatewayBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var probeGauge atomic.Value
	var h *gwHarness
	dead := &gwProvider{name: "dead", fn: func(_ context.Context, n int) (string, Usage, error) {
		if h != nil {
			probeGauge.Store(gwValue(t, h.g.metrics.breaker.WithLabelValues("dead")))
		}
		if failing.Load() {
			return "", Usage{}, &ProviderError{Provider: "dead", Status: 502, Message: "bad gateway"}
		}
		return "back", Usage{}, nil
	}}
	spare := &gwProvider{name: "spare"}
	lim := Limits{Retries: 0, BreakerFailures: 3, BreakerCooldown: time.Minute}
	h = newGW(t, gwChain(TaskOCR, lim, "dead", "spare"), nil, dead, spare)
	gauge := func() float64 { return gwValue(t, h.g.metrics.breaker.WithLabelValues("dead")) }
	ctx := context.Background()

	for i := range 3 {
		if gauge() != 0 {
			t.Fatalf("breaker gauge %v before failure %d, want 0 (closed)", gauge(), i+1)
		}
		if _, meta, err := gwOCR(h, ctx, fmt.Sprint("in", i)); err != nil || meta.Provider != "spare" {
			t.Fatalf("call %d: %v from %q, want spare's answer", i, err, meta.Provider)
		}
	}
	if gauge() != 2 {
		t.Fatalf("breaker gauge after 3 failures = %v, want 2 (open)", gauge())
	}
	// Open: the dead provider is not called at all.
	_, meta, err := gwOCR(h, ctx, "in-open")
	if err != nil {
		t.Fatal(err)
	}
	if dead.calls.Load() != 3 {
		t.Errorf("dead provider called %d times, want 3: an open breaker skips it", dead.calls.Load())
	}
	if len(meta.Skipped) != 1 || !strings.Contains(meta.Skipped[0].Error, ErrOpen.Error()) {
		t.Errorf("skipped = %+v, want dead with ErrOpen", meta.Skipped)
	}

	// After the cool-down one probe goes through; it fails, and the
	// breaker opens again.
	h.clock.Advance(time.Minute + time.Second)
	if _, _, err := gwOCR(h, ctx, "probe-1"); err != nil {
		t.Fatal(err)
	}
	if dead.calls.Load() != 4 || probeGauge.Load() != 1.0 || gauge() != 2 {
		t.Errorf("after cool-down: %d calls, gauge during probe %v, after %v; want 4, 1 (half-open), 2 (open)",
			dead.calls.Load(), probeGauge.Load(), gauge())
	}
	if _, _, err := gwOCR(h, ctx, "still-open"); err != nil || dead.calls.Load() != 4 {
		t.Errorf("reopened breaker let a call through: %d calls, err %v", dead.calls.Load(), err)
	}

	// The provider recovers: the next probe closes the breaker.
	failing.Store(false)
	h.clock.Advance(time.Minute + time.Second)
	if _, meta, err := gwOCR(h, ctx, "probe-2"); err != nil || meta.Provider != "dead" {
		t.Fatalf("probe: %v from %q, want dead's answer", err, meta.Provider)
	}
	if gauge() != 0 {
		t.Errorf("breaker gauge after a good probe = %v, want 0 (closed)", gauge())
	}

	// With every provider open, the error says so.
	failing.Store(true)
	h2 := newGW(t, gwChain(TaskOCR, Limits{BreakerFailures: 1, BreakerCooldown: time.Hour}, "dead"), nil, dead)
	gwOCR(h2, ctx, "a")
	_, _, err = gwOCR(h2, ctx, "b")
	if !errors.Is(err, ErrOpen) {
		t.Errorf("error with the only provider open = %v, want ErrOpen", err)
	}
}

func TestGatewayFallbackOrder(t *testing.T) {
	log := &gwCallLog{}
	fail := func(status int) func(context.Context, int) (string, Usage, error) {
		return func(context.Context, int) (string, Usage, error) {
			return "", Usage{}, &ProviderError{Provider: "x", Status: status}
		}
	}
	a := &gwProvider{name: "a", log: log, fn: fail(500)}
	b := &gwProvider{name: "b", log: log, fn: fail(401)}
	c := &gwProvider{name: "c", log: log}
	lim := Limits{Retries: 0}
	cfg := Config{
		Chains: map[Task][]string{TaskSummarize: {"a", "b", "c"}, TaskOCR: {"c", "a", "b"}, TaskTag: {"b", "a"}},
		Limits: map[string]Limits{"a": lim, "b": lim, "c": lim},
	}
	h := newGW(t, cfg, nil, a, b, c)
	ctx := context.Background()

	if got := h.g.Providers(TaskSummarize); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Providers(summarize) = %v", got)
	}
	_, meta, err := h.g.Summarize(ctx, SummarizeRequest{Text: "t"}, Call{})
	if err != nil {
		t.Fatal(err)
	}
	if got := log.get(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("summarize called %v, want [a b c]", got)
	}
	if meta.Provider != "c" || len(meta.Skipped) != 2 || meta.Skipped[0].Provider != "a" || meta.Skipped[1].Provider != "b" {
		t.Errorf("meta = %+v, want c answering after a and b", meta)
	}
	if f := gwValue(t, h.g.metrics.fallbacks.WithLabelValues("summarize")); f != 2 {
		t.Errorf("fallbacks = %v, want 2", f)
	}

	log.names = nil
	if _, meta, err := gwOCR(h, ctx, "x"); err != nil || meta.Provider != "c" || !slices.Equal(log.get(), []string{"c"}) {
		t.Errorf("ocr: %v from %q, calls %v; want c alone", err, meta.Provider, log.get())
	}

	// Every provider fails: the error wraps each attempt's.
	log.names = nil
	_, meta, err = h.g.Tag(ctx, TagRequest{Image: gwImage("x")}, Call{})
	var ce *ChainError
	if !errors.As(err, &ce) || len(ce.Attempts) != 2 || ce.Attempts[0].Provider != "b" {
		t.Fatalf("error = %v, want a ChainError over b then a", err)
	}
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Status != 401 {
		t.Errorf("errors.As(ProviderError) = %+v, want b's 401", pe)
	}
	if !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "HTTP 500") {
		t.Errorf("error text %q, want both providers' errors", err)
	}
	if len(meta.Skipped) != 2 || meta.Provider != "" {
		t.Errorf("meta = %+v, want two skipped and no provider", meta)
	}
}

func TestGatewayUnavailableSkipped(t *testing.T) {
	missing := &gwProvider{name: "missing", avail: func() error { return errors.New("node not installed") }}
	local := &gwProvider{name: "local"}
	cfg := gwChain(TaskModerate, Limits{}, "missing", "local")
	cfg.HealthTTL = time.Minute
	h := newGW(t, cfg, nil, missing, local)
	ctx := context.Background()
	for i := range 3 {
		_, meta, err := h.g.Moderate(ctx, ModerateRequest{Text: fmt.Sprint("t", i)}, Call{})
		if err != nil {
			t.Fatal(err)
		}
		if meta.Provider != "local" || len(meta.Skipped) != 1 || !strings.Contains(meta.Skipped[0].Error, "node not installed") {
			t.Errorf("meta = %+v, want local after missing skipped as unavailable", meta)
		}
	}
	if missing.calls.Load() != 0 {
		t.Errorf("unavailable provider was called %d times", missing.calls.Load())
	}
	if n := missing.availCalls.Load(); n != 1 {
		t.Errorf("Available asked %d times in three calls, want 1 (cached)", n)
	}
	h.clock.Advance(time.Minute + time.Second)
	h.g.Moderate(ctx, ModerateRequest{Text: "later"}, Call{})
	if n := missing.availCalls.Load(); n != 2 {
		t.Errorf("Available asked %d times after the TTL, want 2", n)
	}

	h2 := newGW(t, gwChain(TaskModerate, Limits{}, "missing"), nil, missing)
	_, _, err := h2.g.Moderate(ctx, ModerateRequest{Text: "x"}, Call{})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("error = %v, want ErrUnavailable", err)
	}
}

// TestGatewayBudgets runs every budget case with the accounts in the
// process and in a state store (as a cluster's workers share them).
func TestGatewayBudgets(t *testing.T) {
	for _, shared := range []bool{false, true} {
		name := "in process"
		if shared {
			name = "in the store"
		}
		t.Run(name, func(t *testing.T) {
			testGatewayBudgets(t, func(t *testing.T, cfg Config, cache Cache, p ...Provider) *gwHarness {
				h := newGW(t, cfg, cache, p...)
				if shared {
					h.g.Accounts = openAccounts(t)
				}
				return h
			})
		})
	}
}

// openAccounts is a state store for shared budget accounts.
func openAccounts(t *testing.T) *sqlite.Store {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestGatewaySharedBudgets: two gateways (two workers) on one store draw
// on the same accounts, so together they keep within a key's budget.
func TestGatewaySharedBudgets(t *testing.T) {
	ctx := context.Background()
	st := openAccounts(t)
	cfg := gwChain(TaskOCR, Limits{}, "v")
	cfg.Budgets.PerKeyDay = Budget{Images: 3}
	p := &gwProvider{name: "v"}
	w1, w2 := newGW(t, cfg, nil, p), newGW(t, cfg, nil, p)
	w1.g.Accounts, w2.g.Accounts = st, st
	call := func(h *gwHarness, in string) error {
		_, _, err := h.g.OCR(ctx, OCRRequest{Image: gwImage(in)}, Call{AssetID: in, Key: "k1"})
		return err
	}
	for i, h := range []*gwHarness{w1, w2, w1} {
		if err := call(h, fmt.Sprint(i)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	for i, h := range []*gwHarness{w2, w1} {
		err := call(h, fmt.Sprint("over", i))
		if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "images: 3 used or in flight") {
			t.Errorf("fourth image on worker %d: %v, want ErrBudget saying 3 are used", 2-i, err)
		}
	}
	if n := p.calls.Load(); n != 3 {
		t.Errorf("provider called %d times, want 3", n)
	}
}

func testGatewayBudgets(t *testing.T, newGW func(t *testing.T, cfg Config, cache Cache, p ...Provider) *gwHarness) {
	ctx := context.Background()
	t.Run("asset audio", func(t *testing.T) {
		p := &gwProvider{name: "w", fn: func(context.Context, int) (string, Usage, error) {
			return "words", Usage{AudioSeconds: 60}, nil
		}}
		cfg := gwChain(TaskTranscribe, Limits{}, "w")
		cfg.Budgets.PerAsset = Budget{AudioSeconds: 100}
		h := newGW(t, cfg, nil, p)
		speech := func(asset, audio string) error {
			_, _, err := h.g.Transcribe(ctx, TranscribeRequest{Audio: []byte(audio), Filename: "a.flac", Duration: 60}, Call{AssetID: asset})
			return err
		}
		if err := speech("a1", "one"); err != nil {
			t.Fatal(err)
		}
		err := speech("a1", "two")
		if !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "a1") {
			t.Errorf("second minute of a1: %v, want ErrBudget naming the asset", err)
		}
		if p.calls.Load() != 1 {
			t.Errorf("provider called %d times, want 1: the budget refuses before the call", p.calls.Load())
		}
		if err := speech("a2", "two"); err != nil {
			t.Errorf("another asset: %v, want its own budget", err)
		}
	})
	t.Run("key images per day", func(t *testing.T) {
		p := &gwProvider{name: "v"}
		cfg := gwChain(TaskOCR, Limits{}, "v")
		cfg.Budgets.PerKeyDay = Budget{Images: 2}
		h := newGW(t, cfg, nil, p)
		call := func(key, in string) error {
			_, _, err := h.g.OCR(ctx, OCRRequest{Image: gwImage(in)}, Call{AssetID: in, Key: key})
			return err
		}
		for i := range 2 {
			if err := call("k1", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := call("k1", "third"); !errors.Is(err, ErrBudget) {
			t.Errorf("third gwImage for k1: %v, want ErrBudget", err)
		}
		if err := call("k2", "third"); err != nil {
			t.Errorf("k2: %v, want its own budget", err)
		}
		h.clock.Advance(24 * time.Hour)
		if err := call("k1", "next day"); err != nil {
			t.Errorf("k1 the next day: %v, want a fresh budget", err)
		}
		if p.calls.Load() != 4 {
			t.Errorf("provider called %d times, want 4", p.calls.Load())
		}
	})
	t.Run("tokens", func(t *testing.T) {
		p := &gwProvider{name: "llm", fn: func(context.Context, int) (string, Usage, error) {
			return "short", Usage{InputTokens: 80, OutputTokens: 20}, nil
		}}
		cfg := gwChain(TaskSummarize, Limits{}, "llm")
		cfg.Budgets.PerAsset = Budget{Tokens: 150}
		h := newGW(t, cfg, nil, p)
		sum := func(text string, maxTokens int) error {
			_, _, err := h.g.Summarize(ctx, SummarizeRequest{Text: text, MaxTokens: maxTokens}, Call{AssetID: "a"})
			return err
		}
		if err := sum("one", 40); err != nil {
			t.Fatal(err)
		}
		// 100 used: another 40 fits, 60 does not.
		if err := sum("two", 60); !errors.Is(err, ErrBudget) {
			t.Errorf("100 used + 60 of 150: %v, want ErrBudget", err)
		}
		if err := sum("three", 40); err != nil {
			t.Errorf("100 used + 40 of 150: %v", err)
		}
		// 200 used now: spent, even with no output bound.
		if err := sum("four", 0); !errors.Is(err, ErrBudget) {
			t.Errorf("budget spent: %v, want ErrBudget", err)
		}
		if p.calls.Load() != 2 {
			t.Errorf("provider called %d times, want 2", p.calls.Load())
		}
	})
	t.Run("failed call refunds", func(t *testing.T) {
		p := &gwProvider{name: "f", fn: func(_ context.Context, n int) (string, Usage, error) {
			if n == 1 {
				return "", Usage{}, &ProviderError{Provider: "f", Status: 400}
			}
			return "ok", Usage{}, nil
		}}
		cfg := gwChain(TaskOCR, Limits{}, "f")
		cfg.Budgets.PerAsset = Budget{Images: 1}
		h := newGW(t, cfg, nil, p)
		if _, _, err := gwOCR(h, ctx, "x"); err == nil {
			t.Fatal("first call succeeded, want the provider's 400")
		}
		if _, _, err := gwOCR(h, ctx, "x"); err != nil {
			t.Errorf("after a failed call: %v, want the gwImage still in budget", err)
		}
	})
	t.Run("cache hit is free", func(t *testing.T) {
		cache, err := NewFileCache(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg := gwChain(TaskOCR, Limits{}, "v")
		cfg.Budgets.PerAsset = Budget{Images: 1}
		h := newGW(t, cfg, cache, &gwProvider{name: "v"})
		for i := range 3 {
			if _, _, err := gwOCR(h, ctx, "same"); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
	})
}

func TestGatewayConcurrencyLimit(t *testing.T) {
	gate := make(chan struct{})
	p := &gwProvider{name: "p", fn: func(ctx context.Context, _ int) (string, Usage, error) {
		select {
		case <-gate:
			return "ok", Usage{}, nil
		case <-ctx.Done():
			return "", Usage{}, ctx.Err()
		}
	}}
	h := newGW(t, gwChain(TaskOCR, Limits{Concurrency: 2}, "p"), nil, p)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, _, err := gwOCR(h, context.Background(), fmt.Sprint(i))
			errs <- err
		})
	}
	for p.inFlight.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	// Give calls over the limit time to get in if nothing stops them.
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if m := p.maxFlight.Load(); m != 2 {
		t.Errorf("most calls in flight = %d, want 2", m)
	}
	if p.calls.Load() != 8 {
		t.Errorf("calls = %d, want 8", p.calls.Load())
	}
}

func TestGatewayRateLimitWaitsWithinDeadline(t *testing.T) {
	p := &gwProvider{name: "p"}
	h := newGW(t, gwChain(TaskOCR, Limits{RatePerSecond: 0.001, Burst: 1}, "p"), nil, p)
	if _, _, err := gwOCR(h, context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	// The next token is 1000 s away: past the deadline, so no wait.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := gwOCR(h, ctx, "b")
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Errorf("error = %v, want the rate limit", err)
	}
	if p.calls.Load() != 1 {
		t.Errorf("calls = %d, want 1", p.calls.Load())
	}
}

func TestGatewayTimeout(t *testing.T) {
	hang := &gwProvider{name: "hang", fn: func(ctx context.Context, _ int) (string, Usage, error) {
		<-ctx.Done()
		return "", Usage{}, ctx.Err()
	}}
	spare := &gwProvider{name: "spare"}
	lim := Limits{Timeout: 20 * time.Millisecond, Retries: 1}
	h := newGW(t, gwChain(TaskOCR, lim, "hang", "spare"), nil, hang, spare)
	_, meta, err := gwOCR(h, context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if hang.calls.Load() != 2 || meta.Attempts != 3 || meta.Provider != "spare" {
		t.Errorf("hang called %d times, %d attempts, answer from %q; want 2 (timeouts are retried), 3, spare",
			hang.calls.Load(), meta.Attempts, meta.Provider)
	}
	if !strings.Contains(meta.Skipped[0].Error, "no answer within 20ms") {
		t.Errorf("skipped = %+v, want the timeout", meta.Skipped)
	}
	if got := gwHistogramCount(t, h.reg, "sluice_ai_call_duration_seconds", map[string]string{"provider": "hang", "outcome": "timeout"}); got != 2 {
		t.Errorf("timeout observations = %d, want 2", got)
	}

	h2 := newGW(t, gwChain(TaskOCR, Limits{Timeout: 20 * time.Millisecond}, "hang"), nil, hang)
	if _, _, err := gwOCR(h2, context.Background(), "y"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want DeadlineExceeded through the gwChain error", err)
	}
}

func TestGatewayTranscribeTimeoutScalesWithAudio(t *testing.T) {
	var left atomic.Int64
	p := &gwProvider{name: "w", fn: func(ctx context.Context, _ int) (string, Usage, error) {
		dl, _ := ctx.Deadline()
		left.Store(int64(time.Until(dl)))
		return "ok", Usage{}, nil
	}}
	h := newGW(t, gwChain(TaskTranscribe, Limits{Timeout: 10 * time.Second, AudioTimeoutFactor: 0.5}, "w"), nil, p)
	if _, _, err := h.g.Transcribe(context.Background(), TranscribeRequest{Audio: []byte("x"), Duration: 600}, Call{}); err != nil {
		t.Fatal(err)
	}
	// 10 s + 0.5 × 600 s = 310 s.
	if d := time.Duration(left.Load()); d <= 300*time.Second || d > 310*time.Second {
		t.Errorf("deadline %v away, want about 310s", d)
	}
}

func TestGatewayCallerCancelStopsChain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	first := &gwProvider{name: "first", fn: func(ctx context.Context, _ int) (string, Usage, error) {
		cancel()
		<-ctx.Done()
		return "", Usage{}, ctx.Err()
	}}
	second := &gwProvider{name: "second"}
	h := newGW(t, gwChain(TaskOCR, Limits{Retries: 3, BreakerFailures: 1}, "first", "second"), nil, first, second)
	_, _, err := gwOCR(h, ctx, "x")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	if first.calls.Load() != 1 || second.calls.Load() != 0 {
		t.Errorf("calls: first %d, second %d; want 1 and 0", first.calls.Load(), second.calls.Load())
	}
	if s := h.g.chains[TaskOCR][0].br.current(); s != breakerClosed {
		t.Errorf("breaker %v after the caller canceled, want closed", s)
	}
}

func TestGatewayBilledUnits(t *testing.T) {
	p := &gwProvider{name: "p", fn: func(context.Context, int) (string, Usage, error) {
		return "ok", Usage{AudioSeconds: 12.5, InputTokens: 7, OutputTokens: 3}, nil
	}}
	h := newGW(t, Config{Chains: map[Task][]string{TaskTranscribe: {"p"}, TaskDescribe: {"p"}}}, nil, p)
	h.g.Transcribe(context.Background(), TranscribeRequest{Audio: []byte("a"), Duration: 12.5}, Call{})
	_, meta, _ := h.g.Describe(context.Background(), DescribeRequest{Prompt: "x"}, Call{})
	if meta.Usage.InputTokens != 7 {
		t.Errorf("meta usage = %+v", meta.Usage)
	}
	want := `
# HELP sluice_ai_billed_units_total Units AI providers billed, by unit (audio_seconds, images, input_tokens, output_tokens).
# TYPE sluice_ai_billed_units_total counter
sluice_ai_billed_units_total{provider="p",unit="audio_seconds"} 25
sluice_ai_billed_units_total{provider="p",unit="input_tokens"} 14
sluice_ai_billed_units_total{provider="p",unit="output_tokens"} 6
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "sluice_ai_billed_units_total"); err != nil {
		t.Error(err)
	}
}

func TestGatewayNotConfigured(t *testing.T) {
	h := newGW(t, gwChain(TaskOCR, Limits{}, "p"), nil, &gwProvider{name: "p"})
	if h.g.Configured(TaskTranscribe) || !h.g.Configured(TaskOCR) {
		t.Errorf("Configured: transcribe %v, gwOCR %v; want false, true", h.g.Configured(TaskTranscribe), h.g.Configured(TaskOCR))
	}
	_, _, err := h.g.Transcribe(context.Background(), TranscribeRequest{}, Call{})
	if !errors.Is(err, ErrNotConfigured) {
		t.Errorf("error = %v, want ErrNotConfigured", err)
	}
}

func TestGatewayNewErrors(t *testing.T) {
	p := &gwProvider{name: "p"}
	for _, tc := range []struct {
		name      string
		cfg       Config
		providers []Provider
		want      string
	}{
		{"unknown provider", gwChain(TaskOCR, Limits{}, "nope"), []Provider{p}, `provider "nope", which is not configured`},
		{"cannot do task", gwChain(TaskTranscribe, Limits{}, "o"), []Provider{ocrOnly{&gwProvider{name: "o"}}}, "cannot do transcribe"},
		{"duplicate name", Config{}, []Provider{p, p}, `two providers are named "p"`},
		{"bad limits", Config{Limits: map[string]Limits{"p": {Retries: -1}}}, []Provider{p}, "retries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, tc.providers, nil, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Two gateways may share a registry.
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New(gwChain(TaskOCR, Limits{}, "p"), []Provider{p}, nil, reg, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// testCache is what every Cache must do: a miss before a Put, the last
// value after two, values over the bound and keys that are not hex
// refused. It returns the key it stored.
func testCache(t *testing.T, c Cache) string {
	t.Helper()
	ctx := context.Background()
	key := cacheKey(TaskOCR, "p", "m", []byte("req"))
	if _, ok, err := c.Get(ctx, key); ok || err != nil {
		t.Fatalf("Get before Put: ok %v, err %v; want a miss", ok, err)
	}
	if err := c.Put(ctx, key, []byte(`{"text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, key, []byte(`{"text":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	v, ok, err := c.Get(ctx, key)
	if err != nil || !ok || string(v) != `{"text":"hello"}` {
		t.Errorf("Get = %q, %v, %v; want the second value", v, ok, err)
	}
	if err := c.Put(ctx, key, make([]byte, MaxCacheValue+1)); !errors.Is(err, ErrCacheValueTooLarge) {
		t.Errorf("Put too large: %v, want ErrCacheValueTooLarge", err)
	}
	for _, bad := range []string{"../../etc/passwd", "ABCDEF", "ab", "abcd/ef"} {
		if err := c.Put(ctx, bad, []byte("x")); err == nil {
			t.Errorf("Put(%q) accepted an invalid key", bad)
		}
		if _, _, err := c.Get(ctx, bad); err == nil {
			t.Errorf("Get(%q) accepted an invalid key", bad)
		}
	}
	return key
}

func TestBucketCache(t *testing.T) {
	b, err := fileblob.Open(t.TempDir(), "media")
	if err != nil {
		t.Fatal(err)
	}
	key := testCache(t, BucketCache{Bucket: b, Prefix: "cache/ai/"})
	objs, err := b.List(context.Background(), "")
	if err != nil || len(objs) != 1 || objs[0].Key != "cache/ai/"+key {
		t.Errorf("objects = %+v (%v), want just cache/ai/%s", objs, err, key)
	}
}

func TestFileCache(t *testing.T) {
	dir := t.TempDir()
	c, err := NewFileCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := testCache(t, c)
	// Sharded by the key's first two digits, no temporary files left.
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*"))
	if len(files) != 1 || files[0] != filepath.Join(dir, key[:2], key[2:]) {
		t.Errorf("files = %v, want just %s/%s", files, key[:2], key[2:])
	}
	// A file over the bound reads as a miss.
	big := cacheKey(TaskOCR, "p", "m", []byte("big"))
	os.MkdirAll(filepath.Join(dir, big[:2]), 0o755)
	os.WriteFile(filepath.Join(dir, big[:2], big[2:]), make([]byte, MaxCacheValue+1), 0o644)
	if _, ok, err := c.Get(ctx, big); ok || err != nil {
		t.Errorf("Get oversized: ok %v, err %v; want a miss", ok, err)
	}
}

func TestBreakerHalfOpenAllowsOneProbe(t *testing.T) {
	var states []breakerState
	b := newBreaker(2, time.Minute, func(s breakerState) { states = append(states, s) })
	t0 := time.Unix(0, 0)
	for range 2 {
		if !b.allow(t0) {
			t.Fatal("closed breaker refused a call")
		}
		b.done(callUnhealthy, t0)
	}
	if b.allow(t0.Add(59 * time.Second)) {
		t.Error("open breaker allowed a call before the cool-down")
	}
	t1 := t0.Add(time.Minute)
	if !b.allow(t1) {
		t.Fatal("no probe after the cool-down")
	}
	if b.allow(t1) {
		t.Error("half-open breaker allowed a second call during the probe")
	}
	b.done(callNeutral, t1) // the probe's caller gave up: still half-open
	if !b.allow(t1) {
		t.Fatal("no probe after a canceled one")
	}
	b.done(callHealthy, t1)
	want := []breakerState{breakerOpen, breakerHalfOpen, breakerClosed}
	if !slices.Equal(states, want) {
		t.Errorf("states = %v, want %v", states, want)
	}
}

// gwHistogramCount sums the sample counts of a histogram's series whose
// labels include want.
func gwHistogramCount(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}
