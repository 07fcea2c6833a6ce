package ai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Gateway sends each task's calls to its chain of providers, with a
// result cache, limits, timeouts, retries, circuit breakers and budgets
// around every call. It is safe for concurrent use.
type Gateway struct {
	log     *slog.Logger
	cache   Cache
	ledger  *ledger
	metrics *gatewayMetrics
	chains  map[Task][]*member
	all     []*member
	ttl     time.Duration // how long an Available answer is trusted

	// Quota, when set, holds each API key to its daily AI units. Set it
	// before the first call.
	Quota Quota
	// Accounts, when set, keeps the Budgets' accounts (the state store),
	// shared by every worker. Set it before the first call.
	Accounts Accounts

	// Hooks for tests: the clock of breakers, health and budgets, and the
	// wait between retries.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

// Call says on whose behalf a call is made, for budgets.
type Call struct {
	AssetID string
	// Key is the id of the API key that created the asset ("" for none;
	// calls with no key share one daily budget).
	Key string
}

// Quota is a per-key daily allowance of AI units kept outside the
// gateway, in the state store that every worker shares. Allow is asked before a provider is called
// (a cached answer costs nothing and is not asked about); Charge records
// what an answered call used, in Units.
type Quota interface {
	Allow(ctx context.Context, key string) error
	Charge(ctx context.Context, key string, units float64)
}

// Units is what a call's usage counts against a key's daily AI units:
// one per minute of audio, per image, and per thousand tokens.
func Units(u Usage) float64 {
	return u.AudioSeconds/60 + float64(u.Images) + float64(u.InputTokens+u.OutputTokens)/1000
}

// Meta says how a call was answered.
type Meta struct {
	// Provider and Model that gave the result.
	Provider string `json:"provider,omitempty"`
	Model    string `json:"model,omitempty"`
	// Cached results were stored by an earlier call; no provider was
	// called and nothing was billed.
	Cached bool `json:"cached,omitempty"`
	// Attempts counts the provider calls made, retries included.
	Attempts int `json:"attempts"`
	// Usage is what the answering provider billed.
	Usage Usage `json:"usage"`
	// Skipped lists the providers that failed before the one that
	// answered (all of them when the call failed), in chain order.
	Skipped []Attempt `json:"skipped,omitempty"`
}

// Attempt is a provider that did not answer, and why.
type Attempt struct {
	Provider string `json:"provider"`
	Error    string `json:"error"`
}

// ChainError is returned when no provider in a task's chain answered. It
// wraps each provider's error, so errors.Is(err, ErrOpen) or
// errors.As(err, &providerErr) look through it. Steps turn it into a
// degraded result.
type ChainError struct {
	Task     Task
	Attempts []*AttemptError
}

func (e *ChainError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ai: %s: every provider failed", e.Task)
	for i, a := range e.Attempts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(a.Error())
	}
	return b.String()
}

func (e *ChainError) Unwrap() []error {
	errs := make([]error, len(e.Attempts))
	for i, a := range e.Attempts {
		errs[i] = a
	}
	return errs
}

// AttemptError is one provider's failure within a ChainError.
type AttemptError struct {
	Provider string
	Err      error
}

func (e *AttemptError) Error() string {
	msg := e.Err.Error()
	// Provider errors usually start with the provider's name already.
	if strings.HasPrefix(msg, e.Provider+":") {
		return msg
	}
	return e.Provider + ": " + msg
}

func (e *AttemptError) Unwrap() error { return e.Err }

// member is one provider with what guards its calls.
type member struct {
	p    Provider
	name string
	lim  Limits
	sem  chan struct{}
	rate *rate.Limiter // nil: unlimited
	br   *breaker

	healthMu    sync.Mutex
	healthErr   error
	healthUntil time.Time
}

// New returns a gateway over providers, calling them in the order of
// cfg.Chains. Every provider a chain names must be in providers and able
// to do the chain's task. cache may be nil (no caching), reg nil (no
// metrics) and log nil (no logs).
func New(cfg Config, providers []Provider, cache Cache, reg prometheus.Registerer, log *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ai: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	metrics, err := newGatewayMetrics(reg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		log:     log,
		cache:   cache,
		ledger:  newLedger(cfg.Budgets),
		metrics: metrics,
		chains:  map[Task][]*member{},
		ttl:     cfg.HealthTTL,
		now:     time.Now,
		sleep:   sleep,
	}
	if g.ttl == 0 {
		g.ttl = defaultHealthTTL
	}
	members := map[string]*member{}
	for _, p := range providers {
		name := p.Name()
		if name == "" {
			return nil, errors.New("ai: a provider has no name")
		}
		if members[name] != nil {
			return nil, fmt.Errorf("ai: two providers are named %q", name)
		}
		lim, ok := cfg.Limits[name]
		if !ok {
			lim = DefaultLimits
		}
		lim = lim.withDefaults()
		m := &member{p: p, name: name, lim: lim, sem: make(chan struct{}, lim.Concurrency)}
		if lim.RatePerSecond > 0 {
			m.rate = rate.NewLimiter(rate.Limit(lim.RatePerSecond), lim.Burst)
		}
		gauge := metrics.breaker.WithLabelValues(name)
		gauge.Set(float64(breakerClosed))
		m.br = newBreaker(lim.BreakerFailures, lim.BreakerCooldown, func(s breakerState) {
			gauge.Set(float64(s))
			log.Warn("ai: circuit breaker", "provider", name, "state", s.String())
		})
		members[name] = m
		g.all = append(g.all, m)
	}
	for t, chain := range cfg.Chains {
		for _, name := range chain {
			m := members[name]
			if m == nil {
				return nil, fmt.Errorf("ai: the %s chain names provider %q, which is not configured", t, name)
			}
			if !serves(m.p, t) {
				return nil, fmt.Errorf("ai: the %s chain names provider %q, which cannot do %s", t, name, t)
			}
			g.chains[t] = append(g.chains[t], m)
		}
	}
	return g, nil
}

func serves(p Provider, t Task) bool {
	var ok bool
	switch t {
	case TaskTranscribe:
		_, ok = p.(Transcriber)
	case TaskDescribe:
		_, ok = p.(Describer)
	case TaskTag:
		_, ok = p.(Tagger)
	case TaskModerate:
		_, ok = p.(Moderator)
	case TaskOCR:
		_, ok = p.(Reader)
	case TaskSummarize:
		_, ok = p.(Summarizer)
	}
	return ok
}

// Close closes the providers that hold resources (a sidecar process),
// those with a Close method. The gateway takes no calls after it.
func (g *Gateway) Close() error {
	var errs []error
	for _, m := range g.all {
		if c, ok := m.p.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Configured reports whether any provider serves the task.
func (g *Gateway) Configured(t Task) bool { return len(g.chains[t]) > 0 }

// Providers returns the names of the task's providers, in chain order.
func (g *Gateway) Providers(t Task) []string {
	var names []string
	for _, m := range g.chains[t] {
		names = append(names, m.name)
	}
	return names
}

// Transcribe turns speech into timed text.
func (g *Gateway) Transcribe(ctx context.Context, req TranscribeRequest, call Call) (Transcript, Meta, error) {
	return run(ctx, g, call, job[Transcript]{
		task: TaskTranscribe,
		digest: newKeyHasher().str(strings.ToLower(path.Ext(req.Filename))).
			str(req.Language).str(req.Prompt).content(req.Audio).sum(),
		need:  budgetNeed{Budget: Budget{AudioSeconds: req.Duration}},
		audio: req.Duration,
		invoke: func(ctx context.Context, p Provider) (Transcript, Usage, error) {
			return p.(Transcriber).Transcribe(ctx, req)
		},
	})
}

// Describe returns a short description of some frames.
func (g *Gateway) Describe(ctx context.Context, req DescribeRequest, call Call) (Description, Meta, error) {
	h := newKeyHasher().str(req.Prompt).int(req.MaxTokens).int(len(req.Images))
	for _, im := range req.Images {
		h.image(im)
	}
	return run(ctx, g, call, job[Description]{
		task:   TaskDescribe,
		digest: h.sum(),
		need:   budgetNeed{Budget: Budget{Images: len(req.Images), Tokens: req.MaxTokens}, tokens: true},
		invoke: func(ctx context.Context, p Provider) (Description, Usage, error) {
			return p.(Describer).Describe(ctx, req)
		},
	})
}

// Tag returns labels for an image.
func (g *Gateway) Tag(ctx context.Context, req TagRequest, call Call) ([]Label, Meta, error) {
	return run(ctx, g, call, job[[]Label]{
		task:   TaskTag,
		digest: newKeyHasher().int(req.TopK).image(req.Image).sum(),
		need:   budgetNeed{Budget: Budget{Images: 1}},
		invoke: func(ctx context.Context, p Provider) ([]Label, Usage, error) {
			return p.(Tagger).Tag(ctx, req)
		},
	})
}

// Moderate says whether images or text break content policy.
func (g *Gateway) Moderate(ctx context.Context, req ModerateRequest, call Call) (Moderation, Meta, error) {
	h := newKeyHasher().content([]byte(req.Text)).int(len(req.Images))
	for _, im := range req.Images {
		h.image(im)
	}
	return run(ctx, g, call, job[Moderation]{
		task:   TaskModerate,
		digest: h.sum(),
		need:   budgetNeed{Budget: Budget{Images: len(req.Images)}},
		invoke: func(ctx context.Context, p Provider) (Moderation, Usage, error) {
			return p.(Moderator).Moderate(ctx, req)
		},
	})
}

// OCR returns the text seen in an image.
func (g *Gateway) OCR(ctx context.Context, req OCRRequest, call Call) (OCRResult, Meta, error) {
	return run(ctx, g, call, job[OCRResult]{
		task:   TaskOCR,
		digest: newKeyHasher().strs(req.Languages).image(req.Image).sum(),
		need:   budgetNeed{Budget: Budget{Images: 1}},
		invoke: func(ctx context.Context, p Provider) (OCRResult, Usage, error) {
			return p.(Reader).OCR(ctx, req)
		},
	})
}

// Summarize returns a summary of a text.
func (g *Gateway) Summarize(ctx context.Context, req SummarizeRequest, call Call) (Summary, Meta, error) {
	return run(ctx, g, call, job[Summary]{
		task:   TaskSummarize,
		digest: newKeyHasher().str(req.Prompt).int(req.MaxTokens).content([]byte(req.Text)).sum(),
		need:   budgetNeed{Budget: Budget{Tokens: req.MaxTokens}, tokens: true},
		invoke: func(ctx context.Context, p Provider) (Summary, Usage, error) {
			return p.(Summarizer).Summarize(ctx, req)
		},
	})
}

// job is one task's call, as the generic path sees it.
type job[R any] struct {
	task   Task
	digest []byte     // of the request's parameters and input, for cache keys
	need   budgetNeed // known before the call
	audio  float64    // seconds of audio, for the timeout
	invoke func(ctx context.Context, p Provider) (R, Usage, error)
}

// run is the gateway's work for every task: the cache, then the budget,
// then each provider of the chain in turn until one answers.
func run[R any](ctx context.Context, g *Gateway, call Call, j job[R]) (R, Meta, error) {
	var zero R
	chain := g.chains[j.task]
	if len(chain) == 0 {
		return zero, Meta{}, fmt.Errorf("%w: %s", ErrNotConfigured, j.task)
	}

	// Any provider's stored answer will do, so that a result a fallback
	// gave is found again without calling the providers before it.
	if g.cache != nil {
		for _, m := range chain {
			data, ok, err := g.cache.Get(ctx, cacheKey(j.task, m.name, m.p.Model(j.task), j.digest))
			if err != nil {
				g.log.WarnContext(ctx, "ai: cache read failed", "task", j.task, "error", err)
				continue
			}
			if !ok {
				continue
			}
			var r R
			if err := json.Unmarshal(data, &r); err != nil {
				g.log.WarnContext(ctx, "ai: cached result unreadable", "task", j.task, "provider", m.name, "error", err)
				continue
			}
			g.metrics.cache.WithLabelValues(string(j.task), "hit").Inc()
			return r, Meta{Provider: m.name, Model: m.p.Model(j.task), Cached: true}, nil
		}
		g.metrics.cache.WithLabelValues(string(j.task), "miss").Inc()
	}

	if g.Quota != nil && call.Key != "" {
		if err := g.Quota.Allow(ctx, call.Key); err != nil {
			return zero, Meta{}, err
		}
	}
	hold, err := g.ledger.reserve(ctx, g.Accounts, call, j.need, g.now())
	if err != nil {
		return zero, Meta{}, err
	}
	var meta Meta
	var failed []*AttemptError
	for i, m := range chain {
		r, u, attempts, err := try(ctx, g, m, j)
		meta.Attempts += attempts
		if err == nil {
			g.settle(ctx, hold, u, true)
			g.metrics.bill(m.name, u)
			if g.Quota != nil && call.Key != "" {
				g.Quota.Charge(context.WithoutCancel(ctx), call.Key, Units(u))
			}
			meta.Provider, meta.Model, meta.Usage = m.name, m.p.Model(j.task), u
			if g.cache != nil {
				g.store(ctx, j.task, cacheKey(j.task, m.name, meta.Model, j.digest), r)
			}
			return r, meta, nil
		}
		failed = append(failed, &AttemptError{Provider: m.name, Err: err})
		meta.Skipped = append(meta.Skipped, Attempt{Provider: m.name, Error: failed[len(failed)-1].Error()})
		if ctx.Err() != nil {
			break // the caller gave up: no point asking the next provider
		}
		if i+1 < len(chain) {
			g.metrics.fallbacks.WithLabelValues(string(j.task)).Inc()
			// A provider known to be down (breaker open, unavailable) was
			// reported when it went down; each job it skips is routine.
			level := slog.LevelWarn
			if errors.Is(err, ErrOpen) || errors.Is(err, ErrUnavailable) {
				level = slog.LevelDebug
			}
			g.log.Log(ctx, level, "ai: provider failed, trying the next", "task", j.task, "provider", m.name,
				"next", chain[i+1].name, "asset", call.AssetID, "error", err)
		}
	}
	g.settle(ctx, hold, Usage{}, false)
	return zero, meta, &ChainError{Task: j.task, Attempts: failed}
}

// settle ends a call's hold on the budgets, even when ctx has ended.
func (g *Gateway) settle(ctx context.Context, hold *reservation, u Usage, ok bool) {
	if err := g.ledger.settle(context.WithoutCancel(ctx), hold, u, ok, g.now()); err != nil {
		g.log.WarnContext(ctx, "ai: budget accounts not settled; the call's hold stays counted", "error", err)
	}
}

func (g *Gateway) store(ctx context.Context, t Task, key string, r any) {
	data, err := json.Marshal(r)
	if err == nil {
		err = g.cache.Put(context.WithoutCancel(ctx), key, data)
	}
	if err != nil {
		g.log.WarnContext(ctx, "ai: cache write failed", "task", t, "error", err)
	}
}

// try calls one provider, with its health check, breaker, limits, timeout
// and retries. It returns how many calls it made.
func try[R any](ctx context.Context, g *Gateway, m *member, j job[R]) (R, Usage, int, error) {
	var zero R
	if err := g.health(ctx, m); err != nil {
		return zero, Usage{}, 0, err
	}
	model := m.p.Model(j.task)
	timeout := m.lim.Timeout + time.Duration(m.lim.AudioTimeoutFactor*j.audio*float64(time.Second))
	calls := 0
	for attempt := 0; ; attempt++ {
		if !m.br.allow(g.now()) {
			return zero, Usage{}, calls, fmt.Errorf("%s: %w", m.name, ErrOpen)
		}
		if err := m.acquire(ctx); err != nil {
			m.br.done(callNeutral, g.now())
			return zero, Usage{}, calls, err
		}
		if m.rate != nil {
			if err := m.rate.Wait(ctx); err != nil {
				m.release()
				m.br.done(callNeutral, g.now())
				return zero, Usage{}, calls, fmt.Errorf("%s: waiting for the rate limit: %w", m.name, err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		start := time.Now()
		r, u, err := j.invoke(cctx, m.p)
		elapsed := time.Since(start)
		timedOut := err != nil && ctx.Err() == nil && cctx.Err() != nil
		cancel()
		m.release()
		calls++

		c := classify(ctx, err, timedOut)
		g.metrics.duration.WithLabelValues(string(j.task), m.name, model, c.outcome).Observe(elapsed.Seconds())
		m.br.done(c.health, g.now())
		if err == nil {
			return r, u, calls, nil
		}
		if timedOut {
			err = &timeoutError{provider: m.name, after: timeout, err: err}
		}
		if errors.Is(err, ErrUnavailable) {
			m.setHealth(err, g.now().Add(g.ttl))
		}
		if !c.retry || attempt >= m.lim.Retries {
			return zero, Usage{}, calls, err
		}
		wait := backoff(attempt)
		if c.retryAfter > 0 {
			wait = c.retryAfter
		}
		// Within the caller's deadline, or with none, within a minute (or
		// one call's timeout if longer): a provider that asks for a longer
		// pause is skipped for the next one.
		left := max(timeout, maxRetryWait)
		if dl, ok := ctx.Deadline(); ok {
			left = time.Until(dl)
		}
		if wait >= left {
			return zero, Usage{}, calls, fmt.Errorf("%w (not retried: a wait of %v exceeds the %v left)", err, wait.Round(time.Millisecond), left.Round(time.Millisecond))
		}
		g.metrics.retries.WithLabelValues(m.name).Inc()
		g.log.DebugContext(ctx, "ai: retrying", "task", j.task, "provider", m.name, "attempt", attempt+1, "wait", wait, "error", err)
		if err := g.sleep(ctx, wait); err != nil {
			return zero, Usage{}, calls, err
		}
	}
}

// timeoutError is a call that ran past its timeout. It matches
// context.DeadlineExceeded.
type timeoutError struct {
	provider string
	after    time.Duration
	err      error
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s: no answer within %v", e.provider, e.after)
}

func (e *timeoutError) Unwrap() []error { return []error{context.DeadlineExceeded, e.err} }

// verdict is what the gateway makes of a call's error.
type verdict struct {
	outcome    string // the latency metric's label
	health     breakerOutcome
	retry      bool
	retryAfter time.Duration
}

// classify decides whether an error is worth a retry and whether it
// counts against the provider's health. A *ProviderError that is neither
// temporary nor an authentication failure (a 400, a 413, an error
// envelope about the input) says the provider is up and answering, so it
// does not trip the breaker; any other error does.
func classify(ctx context.Context, err error, timedOut bool) verdict {
	var pe *ProviderError
	var ne net.Error
	switch {
	case err == nil:
		return verdict{outcome: "ok", health: callHealthy}
	case ctx.Err() != nil:
		return verdict{outcome: "canceled", health: callNeutral}
	case timedOut || errors.Is(err, context.DeadlineExceeded):
		return verdict{outcome: "timeout", health: callUnhealthy, retry: true}
	case errors.As(err, &pe):
		v := verdict{outcome: "error", health: callHealthy, retryAfter: pe.RetryAfter}
		if pe.Status == 429 {
			v.outcome = "rate_limited"
		}
		if pe.Temporary || pe.Status == 429 || pe.Status >= 500 {
			v.retry = true
			v.health = callUnhealthy
		}
		if pe.Status == 401 || pe.Status == 403 {
			v.health = callUnhealthy
		}
		return v
	case errors.As(err, &ne), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return verdict{outcome: "error", health: callUnhealthy, retry: true}
	default:
		return verdict{outcome: "error", health: callUnhealthy}
	}
}

// maxRetryWait bounds the pause before a retry when the caller set no
// deadline.
const maxRetryWait = time.Minute

// backoff is the pause before retry n+1: exponential from 250 ms, capped
// at 8 s, with jitter over its upper half so that callers spread out.
func backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n, 5)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (m *member) acquire(ctx context.Context) error {
	select {
	case m.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: waiting for a free slot: %w", m.name, ctx.Err())
	}
}

func (m *member) release() { <-m.sem }

// health returns the provider's cached Available answer, asking again
// when it is older than the gateway's TTL.
func (g *Gateway) health(ctx context.Context, m *member) error {
	m.healthMu.Lock()
	defer m.healthMu.Unlock()
	now := g.now()
	if now.Before(m.healthUntil) {
		return m.healthErr
	}
	m.healthErr = nil
	if err := m.p.Available(ctx); err != nil {
		if ctx.Err() != nil {
			return err // not the provider's fault; do not remember it
		}
		m.healthErr = fmt.Errorf("%s: %w: %w", m.name, ErrUnavailable, err)
		g.log.WarnContext(ctx, "ai: provider unavailable", "provider", m.name, "error", err, "recheck_in", g.ttl)
	}
	m.healthUntil = now.Add(g.ttl)
	return m.healthErr
}

func (m *member) setHealth(err error, until time.Time) {
	m.healthMu.Lock()
	defer m.healthMu.Unlock()
	m.healthErr, m.healthUntil = err, until
}

type gatewayMetrics struct {
	duration  *prometheus.HistogramVec
	cache     *prometheus.CounterVec
	retries   *prometheus.CounterVec
	breaker   *prometheus.GaugeVec
	billed    *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
}

func newGatewayMetrics(reg prometheus.Registerer) (*gatewayMetrics, error) {
	m := &gatewayMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_ai_call_duration_seconds",
			Help: "Duration of AI provider calls, by task, provider, model and outcome (ok, error, rate_limited, timeout, canceled).",
			// 50 ms to about 7 minutes.
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"task", "provider", "model", "outcome"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ai_cache_requests_total",
			Help: "AI result cache lookups, by task and result (hit, miss).",
		}, []string{"task", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ai_retries_total",
			Help: "AI provider calls retried after a temporary failure.",
		}, []string{"provider"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_ai_breaker_state",
			Help: "AI provider circuit breaker state: 0 closed, 1 half-open, 2 open.",
		}, []string{"provider"}),
		billed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ai_billed_units_total",
			Help: "Units AI providers billed, by unit (audio_seconds, images, input_tokens, output_tokens).",
		}, []string{"provider", "unit"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ai_fallbacks_total",
			Help: "Times a task moved on to the next provider of its chain after a failure.",
		}, []string{"task"}),
	}
	if reg == nil {
		return m, nil
	}
	// A second gateway on the same registry (tests, a reload) shares the
	// first one's collectors.
	var err error
	m.duration, err = register(reg, m.duration)
	if err == nil {
		m.cache, err = register(reg, m.cache)
	}
	if err == nil {
		m.retries, err = register(reg, m.retries)
	}
	if err == nil {
		m.breaker, err = register(reg, m.breaker)
	}
	if err == nil {
		m.billed, err = register(reg, m.billed)
	}
	if err == nil {
		m.fallbacks, err = register(reg, m.fallbacks)
	}
	if err != nil {
		return nil, fmt.Errorf("ai: metrics: %w", err)
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

func (m *gatewayMetrics) bill(provider string, u Usage) {
	for _, b := range []struct {
		unit string
		n    float64
	}{
		{"audio_seconds", u.AudioSeconds},
		{"images", float64(u.Images)},
		{"input_tokens", float64(u.InputTokens)},
		{"output_tokens", float64(u.OutputTokens)},
	} {
		if b.n > 0 {
			m.billed.WithLabelValues(provider, b.unit).Add(b.n)
		}
	}
}
