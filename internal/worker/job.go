package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// OutputKey is where an asset's output named name, made by the job whose
// idempotency key is jobKey, is stored. Each job writes under its own
// prefix, so that a reprocessing run never overwrites the objects that
// the current outputs point to: it writes new ones, switches the records
// over in one transaction, and then deletes the old objects. A redelivery
// of the same job writes the same keys again.
func OutputKey(assetID, jobKey, name string) string {
	return store.OutputPrefix(assetID) + generation(jobKey) + "/" + name
}

// generation is the short form of a job key used in output keys.
func generation(jobKey string) string {
	if len(jobKey) > 12 {
		return jobKey[:12]
	}
	return jobKey
}

// handle runs one delivery to its end: ack, retry, dead letter or release.
func (w *Worker) handle(ctx context.Context, d *queue.Delivery) {
	ev := d.Event
	key := ev.IdempotencyKey()
	// The job goes on the trace its event was published in (the upload,
	// or the fast stage that handed it over).
	if sc := trace.SpanContextFromContext(d.Trace); sc.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	stageName := "fast"
	if ev.Stage == event.StageHeavy {
		stageName = "heavy"
	}
	ctx = telemetry.WithAsset(ctx, ev.AssetID)
	ctx, span := w.tracer().Start(ctx, "job "+stageName, trace.WithAttributes(
		attribute.String("sluice.asset", ev.AssetID), attribute.String("sluice.job", key),
		attribute.Int("sluice.attempt", d.Attempt)))
	defer span.End()
	log := w.log.With("asset", ev.AssetID, "seq", d.Seq, "attempt", d.Attempt, "trace_id", telemetry.TraceID(ctx))

	asset, err := w.store.GetAsset(ctx, ev.AssetID)
	if errors.Is(err, store.ErrNotFound) {
		w.dropDeleted(ctx, d, log)
		return
	}
	if err != nil {
		w.retry(ctx, d, log, "", fmt.Errorf("load asset: %w", err))
		return
	}
	if asset.Key != ev.Key || asset.ETag != ev.ETag {
		log.Info("worker: stale event for a replaced object; skipping")
		w.ack(ctx, d, log, "stale")
		return
	}
	job, err := w.store.ClaimJob(ctx, store.Claim{Key: key, AssetID: ev.AssetID, Owner: w.owner, Now: time.Now(), Lease: w.cfg.Lease})
	switch {
	case errors.Is(err, store.ErrLeased):
		// Another worker is on it (a duplicate event). Look again once its
		// lease would have lapsed, in case that worker dies.
		_ = d.Defer(time.Until(job.LeaseUntil) + time.Second)
		return
	case err != nil:
		w.retry(ctx, d, log, "", fmt.Errorf("claim job: %w", err))
		return
	case job.Status.Terminal():
		// A finished job's asset shows its result, unless a later run
		// was asked for whose event never came (a reprocess lost between
		// request and queue): then the reconciler's event lands here, and
		// the asset gets this job's result back.
		if !asset.Status.Terminal() {
			if latest, err := w.store.LatestJob(ctx, asset.ID); err == nil && latest.Key == key {
				_ = w.store.SetAssetStatus(ctx, asset.ID, job.Status, job.Error)
			}
		}
		// The worker that finished it may have died before announcing it;
		// announcing again queues nothing twice.
		if !w.announce(ctx, d, log, key) {
			return
		}
		w.ack(ctx, d, log, "duplicate")
		return
	}

	w.update(ctx, ev.AssetID, store.StatusProcessing, "", "")
	stage := pipeline.StageFast
	if ev.Stage == event.StageHeavy {
		stage = pipeline.StageHeavy
	}
	log = log.With("stage", stage.String())
	stopKeepAlive := d.KeepAlive()
	jobCtx, cancel := context.WithCancelCause(ctx)
	stopRenew := w.renewLease(jobCtx, cancel, key)
	more, err := w.run(jobCtx, asset, ev, key, stage)
	stopRenew()
	stopKeepAlive()
	cancel(nil)
	// Deleted while it ran (its lease could not be renewed, which stopped
	// the job): what the steps wrote goes too.
	if _, gerr := w.store.GetAsset(ctx, ev.AssetID); errors.Is(gerr, store.ErrNotFound) {
		w.dropDeleted(ctx, d, log)
		return
	}

	var me *pipeline.MediaError
	switch {
	case err == nil && more:
		w.handOff(ctx, d, log, key)
	case err == nil:
		w.finish(ctx, d, log, key, store.StatusSucceeded, "")
	case errors.As(err, &me):
		log.Info("worker: asset failed", "reason", me.Reason, "cause", me.Err)
		w.finish(ctx, d, log, key, store.StatusFailed, me.Reason)
	case ctx.Err() != nil:
		// Shutdown: leave the job to whoever gets the event next.
		_ = w.store.ReleaseJob(context.WithoutCancel(ctx), key, w.owner)
		_ = d.Release()
		w.metrics.Jobs.WithLabelValues("interrupted").Inc()
	default:
		w.retry(ctx, d, log, key, err)
	}
}

// dropDeleted ends the delivery of an event whose asset was deleted,
// removing any outputs a run wrote after the deletion swept them.
func (w *Worker) dropDeleted(ctx context.Context, d *queue.Delivery, log *slog.Logger) {
	if n, err := blob.DeletePrefix(ctx, w.bucket, store.OutputPrefix(d.Event.AssetID)); err != nil {
		log.Warn("worker: remove the outputs of a deleted asset", "err", err)
	} else if n > 0 {
		log.Info("worker: removed outputs written after the asset was deleted", "objects", n)
	}
	log.Info("worker: asset deleted; dropping its event")
	w.ack(ctx, d, log, "deleted")
}

// renewLease keeps the job's lease alive; if it is lost (another worker
// took the job over) the job is cancelled.
func (w *Worker) renewLease(ctx context.Context, cancel context.CancelCauseFunc, key string) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(w.cfg.Lease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				err := w.store.RenewJob(ctx, key, w.owner, time.Now().Add(w.cfg.Lease))
				if errors.Is(err, store.ErrLeased) {
					cancel(err)
					return
				}
			}
		}
	}()
	return func() { close(done); <-exited }
}

// handOff publishes the heavy stage of a job whose fast stage is done,
// releases the job and acknowledges the fast-stage event.
func (w *Worker) handOff(ctx context.Context, d *queue.Delivery, log *slog.Logger, key string) {
	next := d.Event
	next.Stage = event.StageHeavy
	if err := w.queue.Publish(ctx, next); err != nil {
		w.retry(ctx, d, log, key, fmt.Errorf("hand off to the heavy pool: %w", err))
		return
	}
	if err := w.store.ReleaseJob(ctx, key, w.owner); err != nil {
		log.Warn("worker: release job after the fast stage", "err", err)
	}
	w.ack(ctx, d, log, "handed_off")
}

// pipelineFor returns the pipeline for the asset: the one recorded for it
// when a stage after the first runs, else the first that matches (which
// is then recorded).
func (w *Worker) pipelineFor(ctx context.Context, asset store.Asset, info pipeline.AssetInfo, stage pipeline.Stage) (*pipeline.Pipeline, error) {
	if stage == pipeline.StageHeavy && asset.Pipeline != "" {
		if p := w.pipelines.Get(asset.Pipeline); p != nil {
			return p, nil
		}
	}
	p := w.pipelines.Match(info)
	if p == nil {
		return nil, pipeline.Invalid("no pipeline matches this asset (content type %q)", asset.ContentType)
	}
	if p.Name != asset.Pipeline {
		if err := w.store.SetPipeline(ctx, asset.ID, p.Name); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// run prepares the job's input and scratch space and runs one stage of
// the pipeline. more reports that the heavy stage is still to run.
func (w *Worker) run(ctx context.Context, asset store.Asset, ev event.ObjectCreated, key string, stage pipeline.Stage) (more bool, err error) {
	info := pipeline.AssetInfo{Name: asset.Name, ContentType: asset.ContentType, Key: asset.Key, Size: asset.Size, Metadata: asset.Metadata}
	p, err := w.pipelineFor(ctx, asset, info, stage)
	if err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp(w.cfg.ScratchDir, "job-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	outDir := filepath.Join(dir, "out")
	if err := os.Mkdir(outDir, 0o750); err != nil {
		return false, err
	}
	input, err := w.localInput(ctx, asset, dir)
	if err != nil {
		return false, err
	}
	job := &pipeline.Job{AssetID: asset.ID, Owner: asset.Owner, Input: input, Dir: outDir, Asset: info,
		ReadOutput: func(ctx context.Context, name string) ([]byte, error) { return w.readOutput(ctx, asset.ID, name) }}
	if len(asset.Media) > 0 {
		var m pipeline.Media
		if err := json.Unmarshal(asset.Media, &m); err == nil {
			job.Media = &m
		}
	}
	t, err := w.newTracker(ctx, asset, ev, key, job, p)
	if err != nil {
		return false, err
	}
	return w.runner.Run(ctx, job, p, stage, t)
}

// localInput places the source at dir/in/source, a directory holding
// nothing else, so that a sandboxed engine can be given it alone: a hard
// link to the bucket's own file when the bucket is local and on the same
// file system, else a streamed copy.
func (w *Worker) localInput(ctx context.Context, asset store.Asset, dir string) (string, error) {
	if _, err := w.bucket.Stat(ctx, asset.Key); err != nil {
		return "", fmt.Errorf("source object %s: %w", asset.Key, err)
	}
	in := filepath.Join(dir, "in")
	if err := os.Mkdir(in, 0o750); err != nil {
		return "", err
	}
	path := filepath.Join(in, "source")
	if lp, ok := w.bucket.(blob.LocalPather); ok {
		if src, err := lp.LocalPath(asset.Key); err == nil && os.Link(src, path) == nil {
			return path, nil
		}
	}
	obj, err := w.bucket.Open(ctx, asset.Key)
	if err != nil {
		return "", fmt.Errorf("source object %s: %w", asset.Key, err)
	}
	defer obj.Close()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := io.Copy(f, obj); err != nil {
		return "", fmt.Errorf("copy source: %w", err)
	}
	return path, f.Close()
}

func (w *Worker) finish(ctx context.Context, d *queue.Delivery, log *slog.Logger, key string, status store.Status, reason string) {
	if err := w.store.FinishJob(ctx, key, w.owner, status, reason); err != nil {
		// Not recorded, so not acknowledged: the event comes back.
		w.retry(ctx, d, log, key, fmt.Errorf("record result: %w", err))
		return
	}
	w.update(ctx, d.Event.AssetID, status, "", "")
	if !w.announce(ctx, d, log, key) {
		return
	}
	w.ack(ctx, d, log, string(status))
}

// announce calls OnFinish for a finished job. When it fails the delivery
// is put back (not acknowledged), so that it comes back, finds the job
// finished and announces it again; on the last delivery the failure is
// only logged.
func (w *Worker) announce(ctx context.Context, d *queue.Delivery, log *slog.Logger, key string) bool {
	if w.OnFinish == nil {
		return true
	}
	err := w.OnFinish(ctx, d.Event.AssetID, key)
	if err == nil {
		return true
	}
	if d.Last {
		log.Error("worker: announce finished job; no more deliveries", "err", err)
		return true
	}
	log.Warn("worker: announce finished job; will retry", "err", err)
	_ = d.Defer(2 * time.Second)
	return false
}

func (w *Worker) ack(ctx context.Context, d *queue.Delivery, log *slog.Logger, outcome string) {
	if err := d.Ack(ctx); err != nil {
		// The outcome is recorded; a redelivery will find the job finished.
		log.Warn("worker: ack failed", "err", err)
	}
	w.metrics.Jobs.WithLabelValues(outcome).Inc()
}

// retry hands the event back with backoff; on the last attempt it records
// the asset as failed and dead-letters the event.
func (w *Worker) retry(ctx context.Context, d *queue.Delivery, log *slog.Logger, key string, cause error) {
	log.Warn("worker: job error", "err", cause, "last", d.Last)
	if key != "" {
		_ = w.store.ReleaseJob(ctx, key, w.owner)
	}
	if d.Last {
		// The asset shows as failed, but its job stays open: replaying the
		// dead letter, once the cause is fixed, runs it to the end.
		reason := fmt.Sprintf("gave up after %d attempts: %v", d.Attempt, cause)
		err := w.store.SetAssetStatus(ctx, d.Event.AssetID, store.StatusFailed, reason)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			log.Error("worker: record failure", "err", err)
		}
		if err := d.DeadLetter(ctx, reason); err != nil {
			log.Error("worker: dead-letter", "err", err)
			return
		}
		w.metrics.DeadLetters.Inc()
		w.metrics.Jobs.WithLabelValues("dead_lettered").Inc()
		if w.OnFinish != nil {
			if err := w.OnFinish(ctx, d.Event.AssetID, d.Event.IdempotencyKey()); err != nil {
				log.Error("worker: announce dead-lettered job", "err", err)
			}
		}
		return
	}
	if _, err := d.Retry(ctx, cause); err != nil {
		log.Error("worker: nak", "err", err)
	}
	w.metrics.Jobs.WithLabelValues("retried").Inc()
}

// maxReadOutput bounds what a step may read back of another's output.
const maxReadOutput = 64 << 20

// readOutput reads a stored output of an asset by name.
func (w *Worker) readOutput(ctx context.Context, assetID, name string) ([]byte, error) {
	outs, err := w.store.ListOutputs(ctx, assetID)
	if err != nil {
		return nil, err
	}
	for _, o := range outs {
		if o.Name != name {
			continue
		}
		obj, err := w.bucket.Open(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		defer obj.Close()
		data, err := io.ReadAll(io.LimitReader(obj, maxReadOutput+1))
		if err != nil {
			return nil, err
		}
		if len(data) > maxReadOutput {
			return nil, fmt.Errorf("output %s is larger than %d bytes", name, maxReadOutput)
		}
		return data, nil
	}
	return nil, fmt.Errorf("output %s of asset %s: %w", name, assetID, fs.ErrNotExist)
}
