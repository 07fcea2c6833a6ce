package telemetry

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/wire"
)

func TestHistory(t *testing.T) {
	m := New()
	depth := 7.0
	m.RegisterQueueDepth("fast", func() float64 { return depth }, func() float64 { return 0 })
	h := NewHistory(m.Registry, 10*time.Second, 3)
	t0 := time.Unix(1_700_000_000, 0)

	// Before anything happened.
	m.Jobs.WithLabelValues("succeeded").Add(100) // earlier work: not in any point
	h.Sample(t0)
	if doc := h.Doc(); len(doc.Series) != len(HistorySeries) || len(doc.Series[0].Points) != 0 {
		t.Fatalf("after the baseline: %+v, want every series and no points", doc)
	}

	// 30 s in which 6 jobs finish (and 2 are retried), 100 steps run
	// (90 at 40 ms, 10 failed at 8 s), 4 AI cache lookups hit 1, 1 of
	// 10 requests fails with a 5xx.
	m.Jobs.WithLabelValues("succeeded").Add(5)
	m.Jobs.WithLabelValues("failed").Add(1)
	m.Jobs.WithLabelValues("retried").Add(2)
	for range 90 {
		m.StepDuration.WithLabelValues("thumbnail", "succeeded").Observe(0.04)
	}
	for range 10 {
		m.StepDuration.WithLabelValues("hls", "failed").Observe(8)
	}
	m.HTTPRequests.WithLabelValues("GET /v1/assets", "200").Add(9)
	m.HTTPRequests.WithLabelValues("GET /v1/assets", "503").Add(1)
	h.Sample(t0.Add(30 * time.Second))

	got := map[string]*float64{}
	for _, s := range h.Doc().Series {
		if len(s.Points) != 1 || s.Points[0].UnixMilli != t0.Add(30*time.Second).UnixMilli() {
			t.Fatalf("%s: points %+v, want one at the second sample", s.Name, s.Points)
		}
		got[s.Name] = s.Points[0].Value
	}
	want := map[string]float64{
		"throughput":      12, // 6 jobs in half a minute
		"uploads":         0,
		"queue_fast":      7,
		"step_p50":        0.025 + 0.025*(50-0)/90, // in the (25 ms, 50 ms] bucket
		"step_p95":        5 + 5*(95-90)/10.0,      // in the (5 s, 10 s] bucket
		"step_error_rate": 0.1,
		"http_error_rate": 0.1,
	}
	for name, w := range want {
		if got[name] == nil || math.Abs(*got[name]-w) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, deref(got[name]), w)
		}
	}
	for _, name := range []string{"queue_heavy", "model_p50", "cache_hit_rate"} {
		if got[name] != nil {
			t.Errorf("%s = %v, want null (nothing measured)", name, *got[name])
		}
	}

	// Only the last 3 points are kept; a quiet interval has no latency.
	for i := 2; i <= 4; i++ {
		h.Sample(t0.Add(time.Duration(i) * 30 * time.Second))
	}
	doc := h.Doc()
	for _, s := range doc.Series {
		if len(s.Points) != 3 || s.Points[0].UnixMilli != t0.Add(60*time.Second).UnixMilli() {
			t.Fatalf("%s after 4 points: %+v, want the last 3", s.Name, s.Points)
		}
	}

	// The wire form is [unix_ms, value|null] and reads back.
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var back wire.MetricsHistory
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.IntervalSeconds != 10 || back.Series[2].Points[0].Value == nil || *back.Series[2].Points[0].Value != 7 ||
		back.Series[4].Points[0].Value != nil {
		t.Errorf("round trip: %s", b)
	}
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestHistoryCluster merges the samples other processes share: a gateway
// with no step timings of its own charts its workers' steps and jobs,
// counters are differenced per process (a worker joining or restarting
// is no jump), queue depth is the largest reported, and a process that
// stops reporting drops out after three intervals.
func TestHistoryCluster(t *testing.T) {
	const interval = 10 * time.Second
	gwm, w1m, w2m := New(), New(), New()
	gw := NewHistory(gwm.Registry, interval, 100)
	workers := map[string]*Metrics{"w1": w1m, "w2": w2m}
	shared := map[string]*History{}
	var arrived time.Time // when shared samples reach the gateway
	for id, m := range workers {
		m.RegisterQueueDepth("fast", func() float64 { return 4 }, func() float64 { return 0 })
		shared[id] = NewHistory(m.Registry, interval, 100)
		shared[id].Share(func(data []byte) {
			if err := gw.Observe(id, data, arrived); err != nil {
				t.Errorf("observe %s: %v", id, err)
			}
		})
	}
	gwm.RegisterQueueDepth("fast", func() float64 { return 3 }, func() float64 { return 0 })
	// Work done before the first sample counts in no point.
	w1m.Jobs.WithLabelValues("succeeded").Add(1000)
	sample := func(at time.Time, ids ...string) map[string]*float64 {
		t.Helper()
		arrived = at
		for _, id := range ids {
			shared[id].Sample(at)
		}
		gw.Sample(at)
		got := map[string]*float64{}
		for _, s := range gw.Doc().Series {
			if n := len(s.Points); n > 0 {
				got[s.Name] = s.Points[n-1].Value
			}
		}
		return got
	}
	start := time.Unix(1_700_000_000, 0)
	sample(start, "w1", "w2")

	// One interval: w1 finishes 3 jobs with fast steps, w2 2 jobs with a
	// slow one; the gateway serves requests.
	w1m.Jobs.WithLabelValues("succeeded").Add(3)
	for range 30 {
		w1m.StepDuration.WithLabelValues("thumbnail", "succeeded").Observe(0.04)
	}
	w2m.Jobs.WithLabelValues("degraded").Add(2)
	for range 10 {
		w2m.StepDuration.WithLabelValues("hls", "failed").Observe(8)
	}
	gwm.HTTPRequests.WithLabelValues("GET /v1/assets", "200").Add(4)
	got := sample(start.Add(30*time.Second), "w1", "w2")
	want := map[string]float64{
		"throughput":      10,                        // 5 jobs in half a minute
		"step_p50":        0.025 + 0.025*(20-0)/30.0, // rank 20 of 40, in (25 ms, 50 ms]
		"step_p95":        5 + 5*(38-30)/10.0,        // rank 38, in (5 s, 10 s]
		"step_error_rate": 0.25,
		"http_error_rate": 0,
		"queue_fast":      4,
	}
	for name, w := range want {
		if got[name] == nil || math.Abs(*got[name]-w) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, deref(got[name]), w)
		}
	}
	if p := gw.Doc().Processes; p != 3 {
		t.Errorf("processes = %d, want 3", p)
	}

	// w2 restarts (its counters start again from zero) and w1 stops
	// reporting: no negative rate, and w1 is gone after three intervals.
	w2m.Jobs.Reset()
	w2m.Jobs.WithLabelValues("succeeded").Add(1)
	got = sample(start.Add(60*time.Second), "w2")
	if v := got["throughput"]; v == nil || *v != 0 {
		t.Errorf("throughput after a restart = %v, want 0", deref(v))
	}
	w2m.Jobs.WithLabelValues("succeeded").Add(3)
	got = sample(start.Add(90*time.Second), "w2")
	if v := got["throughput"]; v == nil || *v != 6 {
		t.Errorf("throughput = %v, want 6 (3 jobs in half a minute, w2 only)", deref(v))
	}
	if p := gw.Doc().Processes; p != 2 {
		t.Errorf("processes with w1 silent for 60 s = %d, want 2 (the gateway and w2)", p)
	}

	if err := gw.Observe("bad", []byte("not a sample"), start); err == nil {
		t.Error("a malformed sample was accepted")
	}
}
