// Package ratelimit holds the gateway's request rate limits: token
// buckets per key (an API key, a client address) and the rules for
// finding a request's client address behind trusted proxies.
//
// The gateway asks a Limiter before doing any work for a request and,
// when refused, answers 429 with a Retry-After header:
//
//	ip := proxies.ClientIP(r)
//	if ok, wait := limiter.Allow(ratelimit.AddrKey(ip), time.Now()); !ok {
//		w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
//		// 429
//	}
//
// A Limiter remembers a bounded number of buckets. It forgets full
// buckets first: a bucket that has refilled to its burst is the same as
// a new one, so forgetting it changes nothing.
package ratelimit

import (
	"errors"
	"hash/maphash"
	"math"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxKeys is the number of buckets a Limiter remembers when
// Config.MaxKeys is zero: about 20 MB at most.
const DefaultMaxKeys = 100_000

// Config sets a Limiter's rate. The zero Config means unlimited.
type Config struct {
	// Rate is the sustained rate in tokens (requests) per second for
	// each key. Zero or less means unlimited.
	Rate float64
	// Burst is how many requests a key may make at once, after being
	// idle long enough to refill; less than 1 means 1.
	Burst int
	// MaxKeys bounds the number of keys remembered at once; zero means
	// DefaultMaxKeys.
	MaxKeys int
}

// Validate reports settings that are errors rather than defaults.
func (c Config) Validate() error {
	var errs []error
	if math.IsNaN(c.Rate) {
		errs = append(errs, errors.New("ratelimit: rate is not a number"))
	}
	if c.Burst < 0 {
		errs = append(errs, errors.New("ratelimit: burst is negative"))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, errors.New("ratelimit: max keys is negative"))
	}
	return errors.Join(errs...)
}

// Limiter is a set of token buckets, one per key, all with the same rate
// and burst. It is safe for concurrent use.
//
// Keys are spread over shards by a seeded hash, each with its own lock
// and its share of MaxKeys, so a hot key serializes only its own shard
// and a client cannot choose which shard its keys land in.
//
// When a shard is full, adding a key forgets the bucket that refills to
// its burst soonest: a bucket that is already full if there is one (no
// loss: a new bucket starts full), otherwise the one nearest to full,
// whose key gains the fewest tokens by being forgotten. That is the cost
// of the bound: under more distinct keys than MaxKeys, forgotten keys
// start over with a full burst. A key being refused has an empty bucket
// and is forgotten last. A flood of new keys, one request each, only
// evicts its own kind; to reset a limited key a client must empty the
// buckets of about MaxKeys other keys (its shard is not chosen by the
// client) faster than that key refills, and has then had those tokens
// anyway. With MaxKeys under 128 there is one shard and this order is
// exact; above that it holds within each shard, and since each shard
// holds its share of MaxKeys, a little fewer than MaxKeys may be
// remembered when hashing spreads keys unevenly.
type Limiter struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards []shard // nil: unlimited
}

// shard holds some of a Limiter's buckets: a map for lookup and, for
// eviction, a min-heap of the buckets on the time each will be full.
//
// A bucket's full time only grows as it is used, so Allow just records it
// and leaves the heap alone; the heap entry keeps the time at which it
// was pushed, a lower bound. Eviction pops the least entry and, if its
// bucket has since moved later, pushes it back with the new time and
// tries again. The first entry that is up to date is the true minimum.
// Each push back pays for at least one Allow, so the hot path stays a
// map lookup and the heap work is done only when something is evicted.
type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	heap    []entry
	max     int
	_       [64]byte // keep neighboring shards' locks off one cache line
}

type bucket struct {
	key  string
	lim  *rate.Limiter
	full time.Time // when lim will have refilled to its burst
}

type entry struct {
	full time.Time // b.full when pushed; never later than b.full
	b    *bucket
}

const (
	maxShards   = 64
	minPerShard = 64 // below this many keys a shard, fewer shards
)

// New returns a Limiter for cfg. A Rate of zero or less, NaN or +Inf
// makes every request allowed and remembers nothing.
func New(cfg Config) *Limiter {
	l := &Limiter{limit: rate.Inf, seed: maphash.MakeSeed()}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 1) {
		return l
	}
	l.limit = rate.Limit(cfg.Rate)
	l.burst = max(cfg.Burst, 1)
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	n := min(max(maxKeys/minPerShard, 1), maxShards)
	l.shards = make([]shard, n)
	for i := range l.shards {
		s := &l.shards[i]
		s.buckets = make(map[string]*bucket)
		// Spread the remainder so the shards' shares sum to maxKeys.
		s.max = maxKeys / n
		if i < maxKeys%n {
			s.max++
		}
	}
	return l
}

// Allow takes one token from key's bucket at time now. When the bucket
// is empty it takes nothing and returns false with how long until a
// token is available (more than zero).
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if l.shards == nil {
		return true, 0
	}
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()

	b := s.buckets[key]
	added := b == nil
	if added {
		if len(s.buckets) >= s.max {
			s.evict()
		}
		b = &bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst), full: now}
		s.buckets[key] = b
	}
	ok = b.lim.AllowN(now, 1)
	if ok {
		b.full = now.Add(l.duration(float64(l.burst) - b.lim.TokensAt(now)))
	}
	if added {
		s.push(entry{b.full, b})
	}
	if ok {
		return true, 0
	}
	// The deficit's time, computed as rate.Limiter computes it: the
	// delay ReserveN would give, after which AllowN grants the token.
	return false, max(l.duration(1-b.lim.TokensAt(now)), 1)
}

// duration is how long a bucket takes to gain tokens, computed as
// rate.Limiter computes it.
func (l *Limiter) duration(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	ns := tokens / float64(l.limit) * float64(time.Second)
	if ns >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(ns)
}

// Len returns the number of buckets remembered.
func (l *Limiter) Len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.buckets)
		s.mu.Unlock()
	}
	return n
}

// evict forgets the bucket that is full soonest (see Limiter).
func (s *shard) evict() {
	for {
		e := s.pop()
		if e.b.full.After(e.full) {
			s.push(entry{e.b.full, e.b})
			continue
		}
		delete(s.buckets, e.b.key)
		return
	}
}

func (s *shard) push(e entry) {
	s.heap = append(s.heap, e)
	h := s.heap
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].full.Before(h[p].full) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (s *shard) pop() entry {
	h := s.heap
	top, n := h[0], len(h)-1
	h[0] = h[n]
	h[n] = entry{}
	h = h[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h[r].full.Before(h[c].full) {
			c = r
		}
		if !h[c].full.Before(h[i].full) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	s.heap = h
	return top
}

// RetryAfter formats d for a Retry-After header: whole seconds, rounded
// up, at least 1 so that a client never retries at once.
func RetryAfter(d time.Duration) string {
	secs := d / time.Second
	if d%time.Second > 0 {
		secs++
	}
	return strconv.FormatInt(int64(max(secs, 1)), 10)
}
