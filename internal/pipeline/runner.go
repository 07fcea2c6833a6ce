package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Tracker follows a run. The worker implements it to persist step state and
// to store outputs before a step counts as done.
type Tracker interface {
	// Done reports whether the step already succeeded in an earlier
	// delivery of the same job; the runner then skips it.
	Done(step string) bool
	Started(ctx context.Context, step string) error
	// Finished is called with err == nil on success, after which res's
	// outputs must be stored, or with the step's error.
	Finished(ctx context.Context, step string, res Result, err error, took time.Duration) error
	Skipped(ctx context.Context, step string) error
}

// Runner runs pipelines with a registry of steps.
type Runner struct {
	Registry *Registry
	// Timeout bounds a step whose spec gives none.
	Timeout time.Duration
}

// Run runs p's steps over job in order. It stops at the first failure and
// returns it: a *MediaError when the input is at fault (the job is over),
// the context's error when ctx ended (the job should be resumed later), or
// another error for failures worth retrying.
func (r *Runner) Run(ctx context.Context, job *Job, p Pipeline, t Tracker) error {
	for _, spec := range p.Steps {
		step, ok := r.Registry.Lookup(spec.Uses)
		if !ok {
			return fmt.Errorf("pipeline %q: unknown step %q", p.Name, spec.Uses)
		}
		if t.Done(spec.Uses) {
			continue
		}
		if !step.Applies(job) {
			if err := t.Skipped(ctx, spec.Uses); err != nil {
				return err
			}
			continue
		}
		if err := r.runStep(ctx, job, step, spec, t); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) runStep(ctx context.Context, job *Job, step Step, spec StepSpec, t Tracker) error {
	if err := t.Started(ctx, spec.Uses); err != nil {
		return err
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = r.Timeout
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	res, err := runSafely(sctx, job, step)
	took := time.Since(start)
	timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded)
	cancel()

	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Shutdown or a lost lease: not the step's fault; leave it for the
		// next delivery without recording a failure.
		return ctx.Err()
	case timedOut:
		err = &MediaError{Reason: fmt.Sprintf("%s: timed out after %s", spec.Uses, timeout), Err: err}
	}
	if ferr := t.Finished(ctx, spec.Uses, res, err, took); ferr != nil {
		if err != nil {
			return err
		}
		return ferr
	}
	if err != nil {
		return err
	}
	if res.Media != nil {
		job.Media = res.Media
	}
	return nil
}

// runSafely turns a panic in a step into an error, so that one bad input
// cannot take the worker down.
func runSafely(ctx context.Context, job *Job, step Step) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s: panic: %v", step.Name(), p)
		}
	}()
	return step.Run(ctx, job)
}
