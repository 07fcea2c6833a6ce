package ratelimit

import (
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

// Random traffic on one shard: after every call the heap holds each
// bucket once, as a heap, with times no later than the buckets', and
// every eviction forgot a bucket with the earliest full time.
func TestShardEvictsEarliestFull(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := New(Config{Rate: 5, Burst: 4, MaxKeys: 50})
	if len(l.shards) != 1 {
		t.Fatalf("%d shards, want 1", len(l.shards))
	}
	s := &l.shards[0]
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	evictions := 0
	for i := range 20_000 {
		now = now.Add(time.Duration(rng.IntN(12)) * time.Millisecond)
		key := strconv.Itoa(rng.IntN(120))
		before := make(map[string]time.Time, len(s.buckets))
		var earliest time.Time
		for k, b := range s.buckets {
			before[k] = b.full
			if earliest.IsZero() || b.full.Before(earliest) {
				earliest = b.full
			}
		}
		l.Allow(key, now)

		if _, ok := before[key]; !ok && len(before) == s.max {
			evictions++
			for k, full := range before {
				if _, kept := s.buckets[k]; !kept && !full.Equal(earliest) {
					t.Fatalf("call %d: evicted %s full at %v; earliest was %v", i, k, full, earliest)
				}
			}
		}
		if len(s.heap) != len(s.buckets) || len(s.buckets) > s.max {
			t.Fatalf("call %d: %d heap entries, %d buckets, max %d", i, len(s.heap), len(s.buckets), s.max)
		}
		seen := make(map[*bucket]bool)
		for j, e := range s.heap {
			if seen[e.b] || s.buckets[e.b.key] != e.b {
				t.Fatalf("call %d: heap entry %d (%s) duplicated or not in the map", i, j, e.b.key)
			}
			seen[e.b] = true
			if e.full.After(e.b.full) {
				t.Fatalf("call %d: entry %s at %v, later than its bucket's %v", i, e.b.key, e.full, e.b.full)
			}
			if p := (j - 1) / 2; j > 0 && e.full.Before(s.heap[p].full) {
				t.Fatalf("call %d: heap order broken at %d", i, j)
			}
		}
	}
	if evictions < 1000 {
		t.Errorf("only %d evictions: the test did not exercise eviction", evictions)
	}
}
