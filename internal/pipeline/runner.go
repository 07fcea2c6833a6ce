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
	var early *prestarted
	defer func() { early.stop() }()
	for i, spec := range p.Steps {
		step, ok := r.Registry.Lookup(spec.Uses)
		if !ok {
			return fmt.Errorf("pipeline %q: unknown step %q", p.Name, spec.Uses)
		}
		if t.Done(spec.Uses) {
			continue
		}
		if i == 0 && job.Media == nil {
			early = r.prestart(ctx, job, p.Steps[1:], t)
		}
		if !step.Applies(job) {
			if err := t.Skipped(ctx, spec.Uses); err != nil {
				return err
			}
			continue
		}
		if res, took, ok := early.take(job, step); ok {
			if err := t.Started(ctx, spec.Uses); err != nil {
				return err
			}
			if err := t.Finished(ctx, spec.Uses, res, nil, took); err != nil {
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
	view := *job
	view.Engine = spec.Engine
	res, err := runSafely(sctx, &view, step)
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

// prestarted holds steps started early, while the first step probes.
type prestarted struct {
	cancel  context.CancelFunc
	results map[string]chan earlyResult
}

type earlyResult struct {
	res  Result
	err  error
	took time.Duration
}

// prestart launches every Prestarter among specs in the background.
func (r *Runner) prestart(ctx context.Context, job *Job, specs []StepSpec, t Tracker) *prestarted {
	ctx, cancel := context.WithCancel(ctx)
	e := &prestarted{cancel: cancel, results: map[string]chan earlyResult{}}
	for _, spec := range specs {
		step, _ := r.Registry.Lookup(spec.Uses)
		ps, ok := step.(Prestarter)
		if !ok || t.Done(spec.Uses) {
			continue
		}
		timeout := spec.Timeout
		if timeout <= 0 {
			timeout = r.Timeout
		}
		ch := make(chan earlyResult, 1)
		e.results[spec.Uses] = ch
		view := *job // the early run must not see the probe's findings land
		view.Engine = spec.Engine
		go func() {
			sctx, scancel := context.WithTimeout(ctx, timeout)
			defer scancel()
			start := time.Now()
			var er earlyResult
			func() {
				defer func() {
					if p := recover(); p != nil {
						er.err = fmt.Errorf("%s: panic: %v", step.Name(), p)
					}
				}()
				er.res, er.err = ps.Prestart(sctx, &view)
			}()
			er.took = time.Since(start)
			ch <- er
		}()
	}
	return e
}

// take waits for the early run of step and returns its result if it is
// to be kept.
func (e *prestarted) take(job *Job, step Step) (Result, time.Duration, bool) {
	if e == nil {
		return Result{}, 0, false
	}
	ch, ok := e.results[step.Name()]
	if !ok {
		return Result{}, 0, false
	}
	delete(e.results, step.Name())
	er := <-ch
	if er.err != nil || !step.(Prestarter).Keep(job, er.res) {
		return Result{}, 0, false
	}
	return er.res, er.took, true
}

// stop cancels early runs not taken and waits for them, so that none
// writes into the job directory after Run returns.
func (e *prestarted) stop() {
	if e == nil {
		return
	}
	e.cancel()
	for _, ch := range e.results {
		<-ch
	}
}
