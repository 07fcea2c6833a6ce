package gateway

import (
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/ratelimit"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// LimitConfig sizes the token buckets the edge keeps. A zero rate turns
// that limit off.
type LimitConfig struct {
	// IPRate and IPBurst bound each client address (an IPv6 /64), on
	// every route but the health checks, before anything else is done.
	IPRate  float64
	IPBurst int
	// KeyRate and KeyBurst bound each API key on /v1 routes, unless the
	// key carries its own.
	KeyRate  float64
	KeyBurst int
	// TrustedProxies are the addresses (IPs or CIDRs) whose forwarding
	// headers name the client; everyone else's are ignored.
	TrustedProxies []string
}

// limits holds the edge's rate limiters.
type limits struct {
	proxies ratelimit.Proxies
	ip      *ratelimit.Limiter
	keyCfg  ratelimit.Config
	metrics *telemetry.Metrics
	now     func() time.Time

	mu sync.Mutex
	// byConfig holds one limiter per distinct key rate: most keys share
	// the default one; keys with their own rate share theirs.
	byConfig map[ratelimit.Config]*ratelimit.Limiter
}

func newLimits(cfg LimitConfig, m *telemetry.Metrics) (*limits, error) {
	proxies, err := ratelimit.ParseProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("gateway: trusted proxies: %w", err)
	}
	if cfg.IPRate < 0 || cfg.KeyRate < 0 || cfg.IPBurst < 0 || cfg.KeyBurst < 0 {
		return nil, fmt.Errorf("gateway: rate limits must not be negative")
	}
	return &limits{
		proxies:  proxies,
		ip:       ratelimit.New(ratelimit.Config{Rate: cfg.IPRate, Burst: burst(cfg.IPRate, cfg.IPBurst)}),
		keyCfg:   ratelimit.Config{Rate: cfg.KeyRate, Burst: burst(cfg.KeyRate, cfg.KeyBurst)},
		metrics:  m,
		now:      time.Now,
		byConfig: map[ratelimit.Config]*ratelimit.Limiter{},
	}, nil
}

// burst defaults a bucket's size to two seconds' worth of its rate.
func burst(rate float64, b int) int {
	if b > 0 || rate <= 0 {
		return b
	}
	return max(1, int(2*rate))
}

// allowIP charges the request's client address.
func (l *limits) allowIP(r *http.Request) error {
	a := l.proxies.ClientIP(r)
	if !a.IsValid() {
		return nil // not a TCP peer (tests with a fake RemoteAddr)
	}
	if ok, wait := l.ip.Allow(ratelimit.AddrKey(a), l.now()); !ok {
		l.metrics.Refused.WithLabelValues("ip_rate").Inc()
		return &rateError{what: "this address", wait: wait}
	}
	return nil
}

// allowKey charges the principal's key.
func (l *limits) allowKey(p auth.Principal) error {
	if p.KeyID == "" {
		return nil // dev mode
	}
	cfg := l.keyCfg
	if p.Limits.RatePerSecond > 0 {
		cfg = ratelimit.Config{Rate: p.Limits.RatePerSecond, Burst: burst(p.Limits.RatePerSecond, p.Limits.Burst)}
	} else if p.Limits.Burst > 0 {
		cfg.Burst = p.Limits.Burst
	}
	if ok, wait := l.limiter(cfg).Allow(p.KeyID, l.now()); !ok {
		l.metrics.Refused.WithLabelValues("key_rate").Inc()
		return &rateError{what: "this API key", wait: wait}
	}
	return nil
}

func (l *limits) limiter(cfg ratelimit.Config) *ratelimit.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byConfig[cfg]
	if !ok {
		lim = ratelimit.New(cfg)
		l.byConfig[cfg] = lim
	}
	return lim
}

// rateError is a request over a rate limit.
type rateError struct {
	what string
	wait time.Duration
}

func (e *rateError) Error() string {
	return fmt.Sprintf("too many requests from %s; retry in %s", e.what, ratelimit.RetryAfter(e.wait)+"s")
}

// RetryAfter is how long the client should wait.
func (e *rateError) RetryAfter() time.Duration { return e.wait }
