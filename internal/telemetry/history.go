package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/sluice-media/sluice/internal/wire"
)

// History samples this process's registry at a fixed interval and keeps
// the last hour or so of a few derived series (rates, quantiles, ratios)
// for the dashboard's charts, so that a deployment without a Prometheus
// server still sees how it has been doing. Each point covers the interval
// before it. It reads the same collectors /metrics exposes.
//
// In a cluster a gateway has no step or model timings of its own: every
// process hands its sample to the others (Share, carried on NATS by the
// server), and a History merges what it is given (Observe), so that the
// charts cover every process that reported within the last three
// intervals. Counters are differenced per process, so a process that
// joins or leaves does not show as a jump.
type History struct {
	gather   prometheus.Gatherer
	interval time.Duration
	size     int
	share    func(data []byte)

	mu        sync.Mutex
	prev      map[string]*sample // by process; "" is this one
	remote    map[string]remoteSample
	processes int     // in the last point
	times     []int64 // unix milliseconds, oldest first
	values    map[string][]*float64
}

// remoteSample is another process's latest sample, as it arrived.
type remoteSample struct {
	mfs []*dto.MetricFamily
	at  time.Time
}

// historyFamilies are the metric families a sample reads: all that
// another process needs of this one's.
var historyFamilies = map[string]bool{
	"sluice_jobs_total": true, "sluice_uploads_total": true, "sluice_queue_pending": true,
	"sluice_step_duration_seconds": true, "sluice_ai_call_duration_seconds": true,
	"sluice_ai_cache_requests_total": true, "sluice_http_requests_total": true,
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
	return &History{gather: g, interval: interval, size: size, values: map[string][]*float64{},
		remote: map[string]remoteSample{}}
}

// Share sets a function given this process's sample (encoded) each time
// one is taken, for other processes' Observe. Set it before Run.
func (h *History) Share(publish func(data []byte)) { h.share = publish }

// Observe takes another process's sample, as Share gave it there. The
// latest from each process is merged into the points that follow.
func (h *History) Observe(process string, data []byte, now time.Time) error {
	var mfs []*dto.MetricFamily
	dec := expfmt.NewDecoder(bytes.NewReader(data), expfmt.NewFormat(expfmt.TypeProtoDelim))
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("telemetry: sample from %s: %w", process, err)
		}
		if historyFamilies[mf.GetName()] {
			mfs = append(mfs, mf)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remote[process] = remoteSample{mfs: mfs, at: now}
	return nil
}

// encode is what Share hands on: the families a sample reads.
func encode(mfs []*dto.MetricFamily) ([]byte, error) {
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range mfs {
		if historyFamilies[mf.GetName()] {
			if err := enc.Encode(mf); err != nil {
				return nil, err
			}
		}
	}
	return buf.Bytes(), nil
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
	if h.share != nil {
		if data, err := encode(mfs); err == nil {
			h.share(data)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := map[string]*sample{"": readSample(mfs, now)}
	for id, r := range h.remote {
		if now.Sub(r.at) > 3*h.interval {
			delete(h.remote, id) // gone quiet: stopped, or cut off
			continue
		}
		cur[id] = readSample(r.mfs, now)
	}
	prev := h.prev
	h.prev = cur
	if prev == nil {
		return
	}
	minutes := now.Sub(prev[""].at).Minutes()
	if minutes <= 0 {
		return
	}
	// What happened in the interval, summed over the processes seen at
	// both ends of it; queue depth is the cluster's, which each reports.
	var d delta
	pending := map[string]*float64{}
	for id, c := range cur {
		for pool, v := range c.pending {
			if pending[pool] == nil || *v > *pending[pool] {
				pending[pool] = v
			}
		}
		if p := prev[id]; p != nil {
			d.add(c, p)
		}
	}
	h.processes = len(cur)
	point := map[string]*float64{
		"throughput":      rate(d.jobsDone, minutes),
		"uploads":         rate(d.uploads, minutes),
		"queue_fast":      pending["fast"],
		"queue_heavy":     pending["heavy"],
		"step_p50":        d.steps.quantile(0.5),
		"step_p95":        d.steps.quantile(0.95),
		"model_p50":       d.models.quantile(0.5),
		"model_p95":       d.models.quantile(0.95),
		"cache_hit_rate":  ratio(d.cacheHits, d.cacheLookups),
		"step_error_rate": ratio(d.stepsFailed, d.steps.count),
		"http_error_rate": ratio(d.http5xx, d.httpAll),
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
	doc := wire.MetricsHistory{IntervalSeconds: h.interval.Seconds(), Processes: max(h.processes, 1),
		Series: make([]wire.MetricSeries, 0, len(HistorySeries))}
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

// delta is what changed between two samples, summed over processes.
// Counters that went down (a process restarted under the same name)
// count as no change.
type delta struct {
	jobsDone, uploads       float64
	steps, models           histogram
	stepsFailed             float64
	cacheHits, cacheLookups float64
	http5xx, httpAll        float64
}

func (d *delta) add(cur, prev *sample) {
	inc := func(a, b float64) float64 { return max(a-b, 0) }
	d.jobsDone += inc(cur.jobsDone, prev.jobsDone)
	d.uploads += inc(cur.uploads, prev.uploads)
	d.stepsFailed += inc(cur.stepsFailed, prev.stepsFailed)
	d.cacheHits += inc(cur.cacheHits, prev.cacheHits)
	d.cacheLookups += inc(cur.cacheLookups, prev.cacheLookups)
	d.http5xx += inc(cur.http5xx, prev.http5xx)
	d.httpAll += inc(cur.httpAll, prev.httpAll)
	if steps := cur.steps.since(prev.steps); steps.count > 0 {
		d.steps.merge(steps)
	}
	if models := cur.models.since(prev.models); models.count > 0 {
		d.models.merge(models)
	}
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

// merge adds o's observations.
func (h *histogram) merge(o histogram) {
	h.count += o.count
	for j, ub := range o.bounds {
		i, found := slices.BinarySearch(h.bounds, ub)
		if !found {
			h.bounds = slices.Insert(h.bounds, i, ub)
			h.counts = slices.Insert(h.counts, i, 0)
		}
		h.counts[i] += o.counts[j]
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
	v := delta / minutes
	return &v
}

func ratio(part, whole float64) *float64 {
	if whole <= 0 {
		return nil
	}
	v := part / whole
	return &v
}
