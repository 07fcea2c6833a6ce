package telemetry

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-media/sluice/internal/wire"
)

// History samples this process's registry at a fixed interval and keeps
// the last hour or so of a few derived series (rates, quantiles, ratios)
// for the dashboard's charts, so that a deployment without a Prometheus
// server still sees how it has been doing. Each point covers the interval
// before it. It reads the same collectors /metrics exposes; a process
// sees only its own (a gateway has no step timings; run Prometheus over
// every process for a cluster's view).
type History struct {
	gather   prometheus.Gatherer
	interval time.Duration
	size     int

	mu     sync.Mutex
	prev   *sample
	times  []int64 // unix milliseconds, oldest first
	values map[string][]*float64
}

// HistorySeries lists the series a History derives, in chart order.
var HistorySeries = []wire.MetricSeries{
	{Name: "throughput", Chart: "Throughput", Label: "jobs finished / min", Unit: "per_min"},
	{Name: "uploads", Chart: "Throughput", Label: "uploads / min", Unit: "per_min"},
	{Name: "queue_fast", Chart: "Queue depth", Label: "fast pool", Unit: "count"},
	{Name: "queue_heavy", Chart: "Queue depth", Label: "heavy pool", Unit: "count"},
	{Name: "step_p50", Chart: "Step latency", Label: "p50", Unit: "seconds"},
	{Name: "step_p95", Chart: "Step latency", Label: "p95", Unit: "seconds"},
	{Name: "model_p50", Chart: "Model latency", Label: "p50", Unit: "seconds"},
	{Name: "model_p95", Chart: "Model latency", Label: "p95", Unit: "seconds"},
	{Name: "cache_hit_rate", Chart: "Cache hit rate", Label: "AI result cache", Unit: "ratio"},
	{Name: "step_error_rate", Chart: "Error rate", Label: "failed step runs", Unit: "ratio"},
	{Name: "http_error_rate", Chart: "Error rate", Label: "HTTP 5xx", Unit: "ratio"},
}

// NewHistory keeps size points sampled every interval from g.
func NewHistory(g prometheus.Gatherer, interval time.Duration, size int) *History {
	h := &History{gather: g, interval: interval, size: size, values: map[string][]*float64{}}
	return h
}

// Run samples until ctx ends.
func (h *History) Run(ctx context.Context) {
	h.Sample(time.Now())
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Sample(now)
		}
	}
}

// Sample takes one point. The first only sets the baseline the rates of
// the next are computed from.
func (h *History) Sample(now time.Time) {
	mfs, err := h.gather.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	cur := readSample(mfs, now)
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.prev
	h.prev = cur
	if prev == nil {
		return
	}
	minutes := now.Sub(prev.at).Minutes()
	if minutes <= 0 {
		return
	}
	point := map[string]*float64{
		"throughput":      rate(cur.jobsDone-prev.jobsDone, minutes),
		"uploads":         rate(cur.uploads-prev.uploads, minutes),
		"queue_fast":      cur.pending["fast"],
		"queue_heavy":     cur.pending["heavy"],
		"step_p50":        cur.steps.since(prev.steps).quantile(0.5),
		"step_p95":        cur.steps.since(prev.steps).quantile(0.95),
		"model_p50":       cur.models.since(prev.models).quantile(0.5),
		"model_p95":       cur.models.since(prev.models).quantile(0.95),
		"cache_hit_rate":  ratio(cur.cacheHits-prev.cacheHits, cur.cacheLookups-prev.cacheLookups),
		"step_error_rate": ratio(cur.stepsFailed-prev.stepsFailed, cur.steps.count-prev.steps.count),
		"http_error_rate": ratio(cur.http5xx-prev.http5xx, cur.httpAll-prev.httpAll),
	}
	h.times = append(h.times, now.UnixMilli())
	for _, s := range HistorySeries {
		h.values[s.Name] = append(h.values[s.Name], point[s.Name])
	}
	if over := len(h.times) - h.size; over > 0 {
		h.times = h.times[over:]
		for k, v := range h.values {
			h.values[k] = v[over:]
		}
	}
}

// Doc is the history as GET /v1/metrics/history shows it.
func (h *History) Doc() wire.MetricsHistory {
	h.mu.Lock()
	defer h.mu.Unlock()
	doc := wire.MetricsHistory{IntervalSeconds: h.interval.Seconds(), Series: make([]wire.MetricSeries, 0, len(HistorySeries))}
	for _, s := range HistorySeries {
		s.Points = make([]wire.MetricPoint, len(h.times))
		for i, t := range h.times {
			s.Points[i] = wire.MetricPoint{UnixMilli: t, Value: h.values[s.Name][i]}
		}
		doc.Series = append(doc.Series, s)
	}
	return doc
}

// sample is what a point is derived from: counters and histograms as
// they stood at one time.
type sample struct {
	at                      time.Time
	jobsDone, uploads       float64
	pending                 map[string]*float64
	steps, models           histogram
	stepsFailed             float64
	cacheHits, cacheLookups float64
	http5xx, httpAll        float64
}

func readSample(mfs []*dto.MetricFamily, now time.Time) *sample {
	s := &sample{at: now, pending: map[string]*float64{}}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			l := labels(m)
			switch mf.GetName() {
			case "sluice_jobs_total":
				if o := l["outcome"]; o == "succeeded" || o == "failed" || o == "degraded" {
					s.jobsDone += m.GetCounter().GetValue()
				}
			case "sluice_uploads_total":
				if l["outcome"] == "ok" {
					s.uploads += m.GetCounter().GetValue()
				}
			case "sluice_queue_pending":
				if v := m.GetGauge().GetValue(); v >= 0 {
					s.pending[l["pool"]] = &v
				}
			case "sluice_step_duration_seconds":
				s.steps.add(m.GetHistogram())
				if l["outcome"] == "failed" {
					s.stepsFailed += float64(m.GetHistogram().GetSampleCount())
				}
			case "sluice_ai_call_duration_seconds":
				s.models.add(m.GetHistogram())
			case "sluice_ai_cache_requests_total":
				s.cacheLookups += m.GetCounter().GetValue()
				if l["result"] == "hit" {
					s.cacheHits += m.GetCounter().GetValue()
				}
			case "sluice_http_requests_total":
				s.httpAll += m.GetCounter().GetValue()
				if c := l["code"]; len(c) == 3 && c[0] == '5' {
					s.http5xx += m.GetCounter().GetValue()
				}
			}
		}
	}
	return s
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// histogram is the sum of a histogram vector's children: cumulative
// counts per upper bound.
type histogram struct {
	bounds []float64
	counts []float64 // cumulative, per bound
	count  float64
}

func (h *histogram) add(m *dto.Histogram) {
	h.count += float64(m.GetSampleCount())
	for _, b := range m.GetBucket() {
		ub := b.GetUpperBound()
		i, found := slices.BinarySearch(h.bounds, ub)
		if !found {
			h.bounds = slices.Insert(h.bounds, i, ub)
			h.counts = slices.Insert(h.counts, i, 0)
		}
		h.counts[i] += float64(b.GetCumulativeCount())
	}
}

// since is the histogram of the observations made after prev.
func (h histogram) since(prev histogram) histogram {
	d := histogram{bounds: h.bounds, counts: slices.Clone(h.counts), count: h.count - prev.count}
	for i, ub := range h.bounds {
		if j, ok := slices.BinarySearch(prev.bounds, ub); ok {
			d.counts[i] -= prev.counts[j]
		}
	}
	return d
}

// quantile estimates the q-quantile the way Prometheus's
// histogram_quantile does: linear within the bucket holding the rank;
// nil with no observations. Ranks past the last finite bound get that
// bound.
func (h histogram) quantile(q float64) *float64 {
	if h.count <= 0 || len(h.bounds) == 0 {
		return nil
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, ub := range h.bounds {
		if h.counts[i] >= rank {
			v := ub
			if n := h.counts[i] - below; n > 0 {
				v = lower + (ub-lower)*(rank-below)/n
			}
			return &v
		}
		lower, below = ub, h.counts[i]
	}
	v := h.bounds[len(h.bounds)-1]
	if math.IsInf(v, 1) {
		return nil
	}
	return &v
}

func rate(delta, minutes float64) *float64 {
	v := max(delta, 0) / minutes // a counter reset reads as no change
	return &v
}

func ratio(part, whole float64) *float64 {
	if whole <= 0 {
		return nil
	}
	v := part / whole
	return &v
}
