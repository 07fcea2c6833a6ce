// Package telemetry holds Sluice's Prometheus metrics, in one place so that
// names, labels and buckets stay consistent across the gateway, the
// uploads and the workers, and so that each process exposes one registry.
package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the collectors the other packages record into.
type Metrics struct {
	Registry *prometheus.Registry

	Uploads         *prometheus.CounterVec // by method (put, tus) and outcome
	UploadBytes     *prometheus.CounterVec // by method
	EventsPublished *prometheus.CounterVec // by source (upload, reconcile, replay)
	Jobs            *prometheus.CounterVec // by outcome (succeeded, failed, retried, dead_lettered)
	StepDuration    *prometheus.HistogramVec
	DeadLetters     prometheus.Counter
	HTTPRequests    *prometheus.CounterVec // by route and code
	HTTPDuration    *prometheus.HistogramVec
	DeliveryBytes   prometheus.Counter
	Refused         *prometheus.CounterVec // by reason (ip_rate, key_rate, quota, unauthenticated, forbidden)
}

// New creates the metrics on a fresh registry that also carries the Go
// runtime and process collectors.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: reg,
		Uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_uploads_total", Help: "Uploads finished, by method and outcome.",
		}, []string{"method", "outcome"}),
		UploadBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_upload_bytes_total", Help: "Bytes of completed uploads, by method.",
		}, []string{"method"}),
		EventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_events_published_total", Help: "Object-created events published, by source.",
		}, []string{"source"}),
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_jobs_total", Help: "Job deliveries handled, by outcome.",
		}, []string{"outcome"}),
		StepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_step_duration_seconds",
			Help:    "Pipeline step run time, by step and outcome.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180, 600, 1800},
		}, []string{"step", "outcome"}),
		DeadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_dead_letters_total", Help: "Events moved to the dead-letter stream by this process.",
		}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_http_requests_total", Help: "HTTP requests, by route and status code.",
		}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_http_request_duration_seconds", Help: "HTTP request latency, by route.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
		DeliveryBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_delivery_bytes_total", Help: "Bytes of outputs served.",
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_http_refused_total", Help: "Requests refused at the edge before any work, by reason.",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.Refused, m.Uploads, m.UploadBytes, m.EventsPublished, m.Jobs, m.StepDuration,
		m.DeadLetters, m.HTTPRequests, m.HTTPDuration, m.DeliveryBytes)
	return m
}

// RegisterQueueDepth exposes a worker pool's queue backlog, read at
// scrape time.
func (m *Metrics) RegisterQueueDepth(pool string, pending, ackPending func() float64) {
	labels := prometheus.Labels{"pool": pool}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_queue_pending", Help: "Events waiting for a worker (-1 when the queue cannot be read).", ConstLabels: labels,
		}, pending),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_queue_ack_pending", Help: "Events delivered to a worker and not yet acknowledged.", ConstLabels: labels,
		}, ackPending),
	)
}
