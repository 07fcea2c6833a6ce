package worker

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/store"
)

// tracker persists a run's progress: step records, media, outputs.
type tracker struct {
	w     *Worker
	asset store.Asset
	key   string
	job   *pipeline.Job
	prior map[string]pipeline.Outcome

	mu    sync.Mutex            // steps run in parallel
	steps map[string]store.Step // started in this run
	spans map[string]trace.Span // the running attempt of each step
}

// startSpan begins the span of a step's attempt, ending the span of an
// attempt before it (a retry).
func (t *tracker) startSpan(ctx context.Context, id string) {
	_, span := t.w.tracer().Start(ctx, "step "+id, trace.WithAttributes(
		attribute.String("sluice.step", id), attribute.String("sluice.asset", t.asset.ID)))
	t.mu.Lock()
	if t.spans == nil {
		t.spans = map[string]trace.Span{}
	}
	if old := t.spans[id]; old != nil {
		old.SetStatus(codes.Error, "retried")
		old.End()
	}
	t.spans[id] = span
	t.mu.Unlock()
}

// endSpan ends a step's span with its outcome.
func (t *tracker) endSpan(id string, status store.Status, reason string) {
	t.mu.Lock()
	span := t.spans[id]
	delete(t.spans, id)
	t.mu.Unlock()
	if span == nil {
		return
	}
	span.SetAttributes(attribute.String("sluice.status", string(status)))
	if status == store.StatusFailed {
		span.SetStatus(codes.Error, reason)
	}
	span.End()
}

func (t *tracker) step(id string) (store.Step, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.steps[id]
	return s, ok
}

var _ pipeline.Tracker = (*tracker)(nil)

// newTracker loads what earlier runs of the job recorded. A reprocessing
// run limited to some steps takes the others' records from the job it
// redoes, copying them into its own job so that the asset's step list
// stays whole.
func (w *Worker) newTracker(ctx context.Context, asset store.Asset, ev event.ObjectCreated, key string, job *pipeline.Job, p *pipeline.Pipeline) (*tracker, error) {
	t := &tracker{w: w, asset: asset, key: key, job: job, prior: map[string]pipeline.Outcome{}, steps: map[string]store.Step{}}
	steps, err := w.store.ListJobSteps(ctx, key)
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range steps {
		have[s.Name] = true
		// probe counts as done only if its findings are at hand.
		if s.Status.Terminal() && (s.Name != "probe" || job.Media != nil) {
			t.prior[s.Name] = pipeline.Outcome(s.Status)
		}
	}
	if len(ev.Steps) > 0 {
		base := map[string]store.Step{}
		if ev.Base != "" {
			old, err := w.store.ListJobSteps(ctx, ev.Base)
			if err != nil {
				return nil, err
			}
			for _, s := range old {
				base[s.Name] = s
			}
		}
		for _, spec := range p.Steps {
			if slices.Contains(ev.Steps, spec.ID) {
				continue
			}
			old, ok := base[spec.ID]
			if !ok || !old.Status.Terminal() {
				old = store.Step{Name: spec.ID, Status: store.StatusSkipped, Error: "not selected for reprocessing"}
			}
			t.prior[spec.ID] = pipeline.Outcome(old.Status)
			if have[spec.ID] {
				continue
			}
			if err := t.copyStep(ctx, old); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// copyStep records an earlier job's step in this job, as it ended there.
func (t *tracker) copyStep(ctx context.Context, old store.Step) error {
	started := old.StartedAt
	if started.IsZero() {
		started = time.Now()
	}
	s, err := t.w.store.StartStep(ctx, t.key, t.asset.ID, old.Name, started)
	if err != nil {
		return err
	}
	s.Status, s.Error, s.FinishedAt, s.Duration = old.Status, old.Error, old.FinishedAt, old.Duration
	if s.FinishedAt.IsZero() {
		s.FinishedAt = started
	}
	return t.w.store.FinishStep(ctx, s)
}

func (t *tracker) Prior(id string) (pipeline.Outcome, bool) {
	o, ok := t.prior[id]
	return o, ok
}

func (t *tracker) Started(ctx context.Context, id string) error {
	s, err := t.w.store.StartStep(ctx, t.key, t.asset.ID, id, time.Now())
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.steps[id] = s
	t.mu.Unlock()
	t.startSpan(ctx, id)
	t.w.log.DebugContext(ctx, "step started", "step", id, "attempt", s.Attempts)
	t.w.update(ctx, t.asset.ID, "", id, store.StatusProcessing)
	return nil
}

// logStep writes a step's outcome to the log; the context adds the asset
// and the trace.
func (t *tracker) logStep(ctx context.Context, s store.Step) {
	level, msg := slog.LevelInfo, "step finished"
	if s.Status == store.StatusFailed || s.Status == store.StatusDegraded {
		level = slog.LevelWarn
	}
	t.w.log.Log(ctx, level, msg, "step", s.Name, "status", string(s.Status), "attempt", s.Attempts,
		"took", s.Duration.Round(time.Millisecond), "reason", s.Error)
}

func (t *tracker) Skipped(ctx context.Context, id, reason string) error {
	s, ok := t.step(id)
	if !ok {
		if err := t.Started(ctx, id); err != nil {
			return err
		}
		s, _ = t.step(id)
	}
	s.Status, s.Error, s.FinishedAt = store.StatusSkipped, reason, time.Now()
	t.endSpan(id, s.Status, reason)
	t.logStep(ctx, s)
	defer t.w.update(ctx, t.asset.ID, "", id, s.Status)
	return t.w.store.FinishStep(ctx, s)
}

func (t *tracker) Finished(ctx context.Context, id string, res pipeline.Result, stepErr error, took time.Duration) error {
	s, _ := t.step(id)
	s.FinishedAt, s.Duration = time.Now(), took
	outcome := "succeeded"
	var degraded *pipeline.DegradedError
	if errors.As(stepErr, &degraded) {
		s.Status, s.Error = store.StatusDegraded, degraded.Reason
		t.w.metrics.StepDuration.WithLabelValues(id, "degraded").Observe(took.Seconds())
		t.endSpan(id, s.Status, s.Error)
		t.logStep(ctx, s)
		defer t.w.update(ctx, t.asset.ID, "", id, s.Status)
		return t.w.store.FinishStep(ctx, s)
	}
	if stepErr == nil {
		stepErr = t.store(ctx, id, res)
	}
	if stepErr != nil {
		outcome = "failed"
		s.Status, s.Error = store.StatusFailed, stepErr.Error()
	} else {
		s.Status = store.StatusSucceeded
	}
	t.w.metrics.StepDuration.WithLabelValues(id, outcome).Observe(took.Seconds())
	t.endSpan(id, s.Status, s.Error)
	t.logStep(ctx, s)
	if err := t.w.store.FinishStep(ctx, s); err != nil {
		return err
	}
	t.w.update(ctx, t.asset.ID, "", id, s.Status)
	return stepErr
}

// store saves a successful step's results: media first, then each output
// into the bucket, and only then the records, all of the step's at once,
// so that a recorded output always exists and readers never see half of
// a step's outputs replaced. Objects of replaced outputs are deleted last.
func (t *tracker) store(ctx context.Context, step string, res pipeline.Result) error {
	if res.Media != nil {
		data, err := json.Marshal(res.Media)
		if err != nil {
			return err
		}
		if err := t.w.store.SetMedia(ctx, t.asset.ID, data); err != nil {
			return err
		}
	}
	if res.Quarantine != "" {
		// Before the outputs, so that none is ever deliverable unheld.
		if err := t.w.store.SetQuarantine(ctx, t.asset.ID, res.Quarantine); err != nil {
			return err
		}
	}
	if len(res.Outputs) == 0 && res.Media != nil {
		return nil
	}
	outs := make([]store.Output, 0, len(res.Outputs))
	for _, o := range res.Outputs {
		key := OutputKey(t.asset.ID, t.key, o.Name)
		attrs, err := blob.Import(ctx, t.w.bucket, key, o.File, blob.PutOptions{ContentType: o.ContentType, Size: -1})
		if err != nil {
			return err
		}
		outs = append(outs, store.Output{
			AssetID: t.asset.ID, Name: o.Name, Step: step, Key: key,
			ContentType: attrs.ContentType, Size: attrs.Size, ETag: attrs.ETag, CreatedAt: time.Now(),
		})
	}
	removed, err := t.w.store.ReplaceOutputs(ctx, t.asset.ID, step, outs)
	if err != nil {
		return err
	}
	for _, o := range removed {
		if err := t.w.bucket.Delete(ctx, o.Key); err != nil {
			t.w.log.Warn("worker: delete replaced output", "asset", t.asset.ID, "key", o.Key, "err", err)
		}
	}
	return nil
}
