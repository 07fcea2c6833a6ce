// Package worker turns queued events into finished jobs: it takes an event
// from the queue, claims the job for that object version in the state
// store, runs the asset's pipeline over a local copy (or the bucket's own
// file), stores each step's outputs and result as it goes, and
// acknowledges the event only once the job's outcome is recorded.
//
// A job runs in two stages, each consumed by its own pool: the fast pool
// runs the steps that produce quick outputs (probe, thumbnail, audio),
// then hands the job to the heavy pool by publishing its heavy-stage
// event, and the heavy pool runs the encodes. A backlog of encodes thus
// never delays the thumbnails of new uploads.
//
// Delivery is at least once, so everything here is idempotent: a job that
// already finished is acknowledged and skipped; steps that succeeded in an
// earlier delivery are not run again; outputs go to fixed keys, so a rerun
// replaces them instead of adding copies.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// Config configures a worker.
type Config struct {
	// Pools are the pools this worker consumes: queue.PoolFast,
	// queue.PoolHeavy, or both (empty: both).
	Pools []string
	// Concurrency is how many jobs the fast pool runs at once. Default 2.
	Concurrency int
	// HeavyConcurrency is how many jobs the heavy pool runs at once.
	// Default 1; negative: this process runs no heavy pool (others do).
	HeavyConcurrency int
	// Parallel is how many steps of one job may run at once. Default 2.
	Parallel int
	// Lease is how long a claim on a job lasts without renewal; renewed at
	// a third of it. Keep it no longer than the queue's ack wait, so that
	// a redelivered event finds the dead worker's lease expired. Default 30s.
	Lease time.Duration
	// StepTimeout bounds a step whose pipeline gives none. Default 10m.
	StepTimeout time.Duration
	// ScratchDir holds each job's working directory. Required.
	ScratchDir string
	// ShutdownGrace is how long running jobs may go on after shutdown
	// begins before they are interrupted and left for redelivery.
	// Default 30s.
	ShutdownGrace time.Duration
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 2
	}
	if c.HeavyConcurrency == 0 {
		c.HeavyConcurrency = 1
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.StepTimeout <= 0 {
		c.StepTimeout = 10 * time.Minute
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 30 * time.Second
	}
}

// Queue is what the worker needs of the queue.
type Queue interface {
	Consume(ctx context.Context, pool string, workers int, h queue.Handler) *queue.Consumer
	Publish(ctx context.Context, ev event.ObjectCreated) error
	// PublishUpdate announces a change for live views (best effort).
	PublishUpdate(ctx context.Context, u queue.Update)
}

// Worker processes events.
type Worker struct {
	cfg       Config
	store     store.Store
	bucket    blob.Bucket
	queue     Queue
	runner    *pipeline.Runner
	pipelines *pipeline.Set
	metrics   *telemetry.Metrics
	log       *slog.Logger
	owner     string

	// OnFinish, when set, is told of every job that finished (and of
	// assets that failed for good): webhooks hang off it. It must be
	// idempotent: a job may be announced more than once. Set it before
	// Run.
	OnFinish func(ctx context.Context, assetID, jobKey string) error
	// Tracer traces jobs and steps (nil: no tracing). Set it before Run.
	Tracer trace.Tracer
}

func (w *Worker) tracer() trace.Tracer {
	if w.Tracer == nil {
		return noop.NewTracerProvider().Tracer("")
	}
	return w.Tracer
}

// New returns a worker that runs, for every event, the first of the
// pipelines that matches its asset.
func New(cfg Config, st store.Store, b blob.Bucket, q Queue, pipelines *pipeline.Set, m *telemetry.Metrics, log *slog.Logger) (*Worker, error) {
	cfg.setDefaults()
	if cfg.ScratchDir == "" {
		return nil, errors.New("worker: scratch dir is required")
	}
	if err := os.MkdirAll(cfg.ScratchDir, 0o750); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &Worker{
		cfg:       cfg,
		store:     st,
		bucket:    b,
		queue:     q,
		runner:    &pipeline.Runner{Timeout: cfg.StepTimeout, Parallel: cfg.Parallel},
		pipelines: pipelines,
		metrics:   m,
		log:       log,
		owner:     fmt.Sprintf("%s/%d/%s", host, os.Getpid(), randomID()),
	}, nil
}

// Run consumes events until ctx is done, then stops taking new ones, gives
// running jobs the shutdown grace to finish, interrupts the rest (their
// events are handed back for redelivery) and returns.
func (w *Worker) Run(ctx context.Context) error {
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()
	var consumers []*queue.Consumer
	if w.consumes(queue.PoolFast) {
		consumers = append(consumers, w.queue.Consume(work, queue.PoolFast, w.cfg.Concurrency, w.handle))
	}
	if w.consumes(queue.PoolHeavy) && w.cfg.HeavyConcurrency > 0 {
		consumers = append(consumers, w.queue.Consume(work, queue.PoolHeavy, w.cfg.HeavyConcurrency, w.handle))
	}
	w.log.Info("worker: consuming", "owner", w.owner, "pools", w.cfg.Pools)
	<-ctx.Done()
	for _, c := range consumers {
		c.Stop()
	}
	done := make(chan struct{})
	go func() {
		for _, c := range consumers {
			c.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(w.cfg.ShutdownGrace):
		w.log.Warn("worker: shutdown grace over, interrupting running jobs")
		abort()
		<-done
	}
	return nil
}

// update announces a change to an asset or one of its steps.
func (w *Worker) update(ctx context.Context, assetID string, status store.Status, step string, stepStatus store.Status) {
	w.queue.PublishUpdate(ctx, queue.Update{AssetID: assetID, Status: string(status), Step: step,
		StepStatus: string(stepStatus), At: time.Now().UTC()})
}

// consumes reports whether the worker takes events of pool.
func (w *Worker) consumes(pool string) bool {
	return len(w.cfg.Pools) == 0 || slices.Contains(w.cfg.Pools, pool)
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
