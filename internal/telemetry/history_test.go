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
