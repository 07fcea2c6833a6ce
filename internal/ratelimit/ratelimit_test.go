package ratelimit_test

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/ratelimit"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// drain takes tokens from key at now until refused and returns how many
// it got and the refusal's retryAfter.
func drain(t *testing.T, l *ratelimit.Limiter, key string, now time.Time) (int, time.Duration) {
	t.Helper()
	for n := 0; n < 1_000; n++ {
		if ok, wait := l.Allow(key, now); !ok {
			return n, wait
		}
	}
	t.Fatalf("%s: never refused", key)
	return 0, 0
}

func TestAllowBurstThenRefuse(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 2, Burst: 3})
	got, wait := drain(t, l, "k", t0)
	if got != 3 || wait != 500*time.Millisecond {
		t.Fatalf("burst: got %d allowed, retry after %v; want 3, 500ms", got, wait)
	}
	// A refusal takes nothing: asking again does not push the wait out.
	for range 10 {
		if ok, wait := l.Allow("k", at(100*time.Millisecond)); ok || wait != 400*time.Millisecond {
			t.Fatalf("at 100ms: got %v, %v; want refused, 400ms", ok, wait)
		}
	}
	if ok, wait := l.Allow("k", at(499*time.Millisecond)); ok || wait != time.Millisecond {
		t.Fatalf("at 499ms: got %v, %v; want refused, 1ms", ok, wait)
	}
	// Exactly retryAfter later, one token and no more.
	if got, wait := drain(t, l, "k", at(500*time.Millisecond)); got != 1 || wait != 500*time.Millisecond {
		t.Fatalf("at 500ms: got %d allowed, retry after %v; want 1, 500ms", got, wait)
	}
}

func TestAllowRetryAfterEnough(t *testing.T) {
	// Rates whose token time is not a whole number of nanoseconds:
	// retryAfter is enough, and not much more than enough.
	for _, r := range []float64{3, 7, 0.3, 1e-3, 1234.5678} {
		l := ratelimit.New(ratelimit.Config{Rate: r, Burst: 1})
		now := t0
		for range 20 {
			_, wait := drain(t, l, "k", now)
			if wait <= 0 {
				t.Fatalf("rate %v: retryAfter %v", r, wait)
			}
			if ok, _ := l.Allow("k", now.Add(wait-time.Microsecond)); ok {
				t.Fatalf("rate %v: allowed 1µs before retryAfter %v: not the shortest wait", r, wait)
			}
			now = now.Add(wait)
			if ok, _ := l.Allow("k", now); !ok {
				t.Fatalf("rate %v: refused at retryAfter %v", r, wait)
			}
		}
	}
}

func TestAllowRefill(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 4})
	drain(t, l, "k", t0)
	if got, _ := drain(t, l, "k", at(2500*time.Millisecond)); got != 2 {
		t.Errorf("after 2.5s: got %d allowed, want 2", got)
	}
	// Idle far longer than the burst takes to refill: the burst, no more.
	if got, _ := drain(t, l, "k", at(time.Hour)); got != 4 {
		t.Errorf("after an hour: got %d allowed, want 4", got)
	}
}

func TestAllowKeysIndependent(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 2})
	if got, _ := drain(t, l, "a", t0); got != 2 {
		t.Fatalf("a: got %d, want 2", got)
	}
	if got, _ := drain(t, l, "b", t0); got != 2 {
		t.Errorf("b after a drained: got %d, want 2", got)
	}
	if ok, _ := l.Allow("a", t0); ok {
		t.Error("a allowed again after b drained")
	}
	if l.Len() != 2 {
		t.Errorf("Len: got %d, want 2", l.Len())
	}
}

func TestAllowUnlimited(t *testing.T) {
	for _, r := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		l := ratelimit.New(ratelimit.Config{Rate: r, Burst: 1})
		for i := range 1000 {
			if ok, wait := l.Allow(strconv.Itoa(i%3), t0); !ok || wait != 0 {
				t.Fatalf("rate %v: got %v, %v; want allowed", r, ok, wait)
			}
		}
		if l.Len() != 0 {
			t.Errorf("rate %v: Len %d, want 0", r, l.Len())
		}
	}
}

func TestAllowBurstDefault(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 10})
	if got, wait := drain(t, l, "k", t0); got != 1 || wait != 100*time.Millisecond {
		t.Errorf("burst 0: got %d, %v; want 1, 100ms", got, wait)
	}
}

// Goroutines racing on shared keys at one instant must share each key's
// burst exactly: no token handed out twice, none lost.
func TestAllowConcurrent(t *testing.T) {
	const keys, workers, tries, burst = 200, 8, 10, 5
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: burst, MaxKeys: 10_000})
	var allowed [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range keys * tries {
				k := (i + w*31) % keys
				if ok, _ := l.Allow("key"+strconv.Itoa(k), t0); ok {
					allowed[k].Add(1)
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			l.Len()
		}
	})
	wg.Wait()
	for k := range allowed {
		if got := allowed[k].Load(); got != burst {
			t.Errorf("key%d: %d allowed, want %d", k, got, burst)
		}
	}
}

func TestMaxKeys(t *testing.T) {
	for _, max := range []int{1, 10, 127, 1000, 5000} {
		l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 3, MaxKeys: max})
		for i := range 20 * max {
			l.Allow(strconv.Itoa(i), at(time.Duration(i)*time.Millisecond))
			if i%97 == 0 {
				if n := l.Len(); n > max {
					t.Fatalf("MaxKeys %d: Len %d after %d keys", max, n, i+1)
				}
			}
		}
		if n := l.Len(); n != max {
			t.Errorf("MaxKeys %d: Len %d after %d keys, want %d", max, n, 20*max, max)
		}
	}
}

// Full buckets go first: forgetting them changes nothing, while the key
// being limited keeps its empty bucket.
func TestEvictFullFirst(t *testing.T) {
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 5, MaxKeys: 10})
	drain(t, l, "hot", t0)
	for i := range 9 {
		l.Allow(fmt.Sprint("idle", i), t0) // full again at 1s
	}
	// At 2s hot has 2 tokens; nine new keys need nine evictions.
	for i := range 9 {
		l.Allow(fmt.Sprint("new", i), at(2*time.Second))
	}
	if l.Len() != 10 {
		t.Fatalf("Len %d, want 10", l.Len())
	}
	if got, _ := drain(t, l, "hot", at(2*time.Second)); got != 2 {
		t.Fatalf("hot after evictions: %d allowed, want 2 (5 means it was forgotten)", got)
	}
	// No full bucket left: a new key forgets the one nearest to full
	// (new0..8 have 4 of 5 tokens), never the empty hot one.
	for i := range 100 {
		l.Allow(fmt.Sprint("flood", i), at(2*time.Second))
	}
	if ok, _ := l.Allow("hot", at(2*time.Second)); ok {
		t.Fatal("hot allowed: a flood of new keys reset it")
	}
}

// However many new keys arrive, across every shard, a limited key is
// not forgotten while it is still limited.
func TestEvictFloodKeepsLimitedKey(t *testing.T) {
	const max = 2000
	l := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 10, MaxKeys: max})
	for i := range max {
		l.Allow(fmt.Sprint("busy", i), t0) // neither full nor empty
	}
	drain(t, l, "hot", t0)
	for i := range 50 * max {
		l.Allow(fmt.Sprint("flood", i), at(time.Duration(i)*time.Microsecond))
	}
	now := at(100 * time.Millisecond)
	if ok, wait := l.Allow("hot", now); ok || wait != 900*time.Millisecond {
		t.Fatalf("hot after flood: got %v, %v; want refused, 900ms", ok, wait)
	}
	if n := l.Len(); n != max {
		t.Errorf("Len %d, want %d", n, max)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "1"},
		{0, "1"},
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{1500 * time.Millisecond, "2"},
		{90 * time.Second, "90"},
		{math.MaxInt64, "9223372037"},
	} {
		if got := ratelimit.RetryAfter(tc.d); got != tc.want {
			t.Errorf("RetryAfter(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg ratelimit.Config
		ok  bool
	}{
		{ratelimit.Config{}, true},
		{ratelimit.Config{Rate: 10, Burst: 20, MaxKeys: 5}, true},
		{ratelimit.Config{Rate: -1}, true}, // unlimited
		{ratelimit.Config{Rate: math.NaN()}, false},
		{ratelimit.Config{Rate: 1, Burst: -1}, false},
		{ratelimit.Config{Rate: 1, MaxKeys: -1}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%+v: Validate() = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}

// BenchmarkAllow measures Allow from parallel goroutines over many keys:
// "fits" stays within MaxKeys, "churn" cycles through ten times MaxKeys
// (every call evicts), "hot" is one key for everyone.
func BenchmarkAllow(b *testing.B) {
	keys := make([]string, 1_000_000)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	for _, bc := range []struct {
		name    string
		keys    []string
		maxKeys int
	}{
		{"fits", keys[:50_000], 100_000},
		{"churn", keys, 100_000},
		{"hot", keys[:1], 100_000},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := ratelimit.New(ratelimit.Config{Rate: 100, Burst: 50, MaxKeys: bc.maxKeys})
			var seq atomic.Uint64
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine walks the keys from its own offset, with
				// a stride coprime to the key count.
				i := seq.Add(1) * 7919
				for pb.Next() {
					i += 104_729
					l.Allow(bc.keys[i%uint64(len(bc.keys))], time.Now())
				}
			})
		})
	}
}
