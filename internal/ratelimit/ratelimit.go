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
// whose key gains the fewest tokens by being forgotten. A key being
// refused has the emptiest bucket and is forgotten last; resetting it by
// flooding the limiter with new keys takes more new keys than a shard
// holds, arriving faster than that key would refill anyway. With MaxKeys
// under 128 there is one shard and this order is exact; above that it
// holds within each shard.
type Limiter struct {
	limit  rate.Limit
	burst  int
	seed   maphash.Seed
	shards []shard // nil: unlimited
}

// shard holds some of a Limiter's buckets: a map for lookup and a
// min-heap on the time each bucket will be full, for eviction.
type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	heap    []*bucket
	max     int
	_       [64]byte // keep neighboring shards' locks off one cache line
}

type bucket struct {
	key   string
	lim   *rate.Limiter
	full  time.Time // when lim will have refilled to its burst
	index int       // position in shard.heap
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
	if b == nil {
		if len(s.buckets) >= s.max {
			s.evict()
		}
		b = &bucket{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		s.buckets[key] = b
		s.push(b)
	}
	if b.lim.AllowN(now, 1) {
		b.full = now.Add(l.duration(float64(l.burst) - b.lim.TokensAt(now)))
		s.fix(b.index)
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
	b := s.heap[0]
	last := len(s.heap) - 1
	s.swap(0, last)
	s.heap[last] = nil
	s.heap = s.heap[:last]
	if last > 0 {
		s.down(0)
	}
	delete(s.buckets, b.key)
}

func (s *shard) push(b *bucket) {
	b.index = len(s.heap)
	s.heap = append(s.heap, b)
	s.up(b.index)
}

// fix restores the heap after the bucket at i changed its full time.
func (s *shard) fix(i int) {
	if !s.down(i) {
		s.up(i)
	}
}

func (s *shard) less(i, j int) bool { return s.heap[i].full.Before(s.heap[j].full) }

func (s *shard) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.heap[i].index = i
	s.heap[j].index = j
}

func (s *shard) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

// down reports whether the bucket at i moved.
func (s *shard) down(i int) bool {
	start, n := i, len(s.heap)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && s.less(r, c) {
			c = r
		}
		if !s.less(c, i) {
			break
		}
		s.swap(i, c)
		i = c
	}
	return i > start
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
