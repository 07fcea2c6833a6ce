package worker

import (
	"context"
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/store"
)

// tracker persists a run's progress: step records, media, outputs.
type tracker struct {
	w     *Worker
	asset store.Asset
	key   string
	job   *pipeline.Job
	done  map[string]bool
	steps map[string]store.Step
}

var _ pipeline.Tracker = (*tracker)(nil)

func (w *Worker) newTracker(ctx context.Context, asset store.Asset, key string, job *pipeline.Job) (*tracker, error) {
	t := &tracker{w: w, asset: asset, key: key, job: job, done: map[string]bool{}, steps: map[string]store.Step{}}
	steps, err := w.store.ListSteps(ctx, asset.ID)
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		// A step counts as done only if it succeeded in this very job and,
		// for probe, its findings are at hand.
		if s.JobKey == key && s.Status == store.StatusSucceeded && (s.Name != "probe" || job.Media != nil) {
			t.done[s.Name] = true
		}
	}
	return t, nil
}

func (t *tracker) Done(step string) bool { return t.done[step] }

func (t *tracker) Started(ctx context.Context, step string) error {
	s, err := t.w.store.StartStep(ctx, t.key, t.asset.ID, step, time.Now())
	if err != nil {
		return err
	}
	t.steps[step] = s
	return nil
}

func (t *tracker) Skipped(ctx context.Context, step string) error {
	if err := t.Started(ctx, step); err != nil {
		return err
	}
	s := t.steps[step]
	s.Status, s.FinishedAt = store.StatusSkipped, time.Now()
	return t.w.store.FinishStep(ctx, s)
}

func (t *tracker) Finished(ctx context.Context, step string, res pipeline.Result, stepErr error, took time.Duration) error {
	s := t.steps[step]
	s.FinishedAt, s.Duration = time.Now(), took
	outcome := "succeeded"
	if stepErr == nil {
		stepErr = t.store(ctx, step, res)
	}
	if stepErr != nil {
		outcome = "failed"
		s.Status, s.Error = store.StatusFailed, stepErr.Error()
	} else {
		s.Status = store.StatusSucceeded
	}
	t.w.metrics.StepDuration.WithLabelValues(step, outcome).Observe(took.Seconds())
	if err := t.w.store.FinishStep(ctx, s); err != nil {
		return err
	}
	return stepErr
}

// store saves a successful step's results: media first, then each output
// into the bucket before it is recorded, so that a recorded output always
// exists.
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
	for _, o := range res.Outputs {
		key := OutputKey(t.asset.ID, o.Name)
		attrs, err := blob.Import(ctx, t.w.bucket, key, filepath.Join(t.job.Dir, o.Name), blob.PutOptions{ContentType: o.ContentType, Size: -1})
		if err != nil {
			return err
		}
		err = t.w.store.PutOutput(ctx, store.Output{
			AssetID: t.asset.ID, Name: o.Name, Step: step, Key: key,
			ContentType: attrs.ContentType, Size: attrs.Size, ETag: attrs.ETag, CreatedAt: time.Now(),
		})
		if err != nil {
			return err
		}
	}
	return nil
}
