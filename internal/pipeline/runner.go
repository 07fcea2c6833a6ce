package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/telemetry"
)

// Outcome is how a step ended.
type Outcome string

const (
	Succeeded Outcome = "succeeded"
	Failed    Outcome = "failed"
	Skipped   Outcome = "skipped"
	// Degraded: the step could not do its work (see DegradedError).
	Degraded Outcome = "degraded"
)

// Stage selects the steps a run covers. A job runs in two stages so that
// the fast and heavy pools can consume separately: the fast stage runs
// the steps in the fast pool that need nothing from the heavy pool, and
// the heavy stage runs the rest.
type Stage int

const (
	StageAll Stage = iota
	StageFast
	StageHeavy
)

func (s Stage) String() string {
	return [...]string{"all", "fast", "heavy"}[s]
}

// Tracker follows a run. The worker implements it to persist step state and
// to store outputs before a step counts as done.
type Tracker interface {
	// Prior reports how the step ended in an earlier run of the same job
	// (a redelivery, or the fast stage before the heavy one); ok is false
	// if it has not ended.
	Prior(id string) (o Outcome, ok bool)
	// Started is called before each attempt of a step.
	Started(ctx context.Context, id string) error
	// Finished is called with err == nil on success, after which res's
	// outputs must be stored, or with the step's error (a *DegradedError
	// when the step ended degraded). An error returned on success
	// (failing to store, say) fails the step.
	Finished(ctx context.Context, id string, res Result, err error, took time.Duration) error
	// Skipped records that the step did not run, and why.
	Skipped(ctx context.Context, id, reason string) error
}

// Runner runs pipelines.
type Runner struct {
	// Timeout bounds a step whose spec gives none.
	Timeout time.Duration
	// Parallel is how many steps of one job may run at once. Default 2.
	Parallel int
	// RetryDelay is the first delay before a step's retry; it doubles
	// each time, with jitter. Default 1s.
	RetryDelay time.Duration
}

// Run runs the steps of p in stage over job, in parallel where the DAG
// allows. It returns more == true when the fast stage leaves steps for
// the heavy one. Its error is the failure of a step whose on_error is
// fail: a *MediaError when the input is at fault (the job is over), the
// context's error when ctx ended (the job should be resumed later), or
// another error for failures worth retrying.
func (r *Runner) Run(ctx context.Context, job *Job, p *Pipeline, stage Stage, t Tracker) (more bool, err error) {
	// Steps run under sctx, cancelled when one fails the job; the tracker
	// is called under ctx, so that the others' ends are still recorded.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	run := &run{r: r, p: p, job: job, t: t, ctx: ctx, state: map[string]Outcome{}, done: make(chan stepDone)}
	defer func() { run.early.stop() }()
	var todo []*StepSpec
	for _, s := range p.Steps {
		if o, ok := t.Prior(s.ID); ok && !(o == Failed && s.OnError == OnErrorFail) {
			run.state[s.ID] = o
			continue
		}
		if stage == StageFast && s.heavy {
			more = true
			continue
		}
		todo = append(todo, s)
	}
	parallel := r.Parallel
	if parallel <= 0 {
		parallel = 2
	}
	running := 0
	var failure error
	for len(todo) > 0 || running > 0 {
		for failure == nil && running < parallel {
			i := slices.IndexFunc(todo, run.ready)
			if i < 0 {
				break
			}
			s := todo[i]
			todo = slices.Delete(todo, i, i+1)
			if s.Uses == "probe" && job.Media == nil {
				run.early = run.prestart(sctx, todo)
			}
			started, err := run.start(sctx, s)
			if err != nil {
				failure = err
				break
			}
			if started {
				running++
			}
		}
		if running == 0 {
			if failure == nil && len(todo) > 0 {
				// Only steps whose needs lie outside this stage are left.
				more = true
			}
			break
		}
		d := <-run.done
		running--
		if err := run.finish(d, failure); err != nil && failure == nil {
			failure = err
			cancel()
		}
	}
	if failure != nil {
		return false, failure
	}
	return more, nil
}

type run struct {
	r     *Runner
	p     *Pipeline
	job   *Job
	t     Tracker
	ctx   context.Context // for the tracker
	state map[string]Outcome
	done  chan stepDone
	early *prestarted
}

type stepDone struct {
	spec *StepSpec
	res  Result
	err  error
	took time.Duration
}

// ready reports whether every step s needs has ended.
func (run *run) ready(s *StepSpec) bool {
	for _, n := range run.p.needs(s) {
		if _, ok := run.state[n]; !ok {
			return false
		}
	}
	return true
}

// start decides whether s runs, and if so starts it. It returns false
// when the step was skipped.
func (run *run) start(ctx context.Context, s *StepSpec) (bool, error) {
	skip := func(reason string) (bool, error) {
		run.state[s.ID] = Skipped
		return false, run.t.Skipped(run.ctx, s.ID, reason)
	}
	for _, n := range run.p.needs(s) {
		if o := run.state[n]; o == Skipped || o == Degraded {
			return skip(fmt.Sprintf("needs %s, which was %s", n, o))
		}
	}
	job := *run.job
	job.Engine = s.Engine
	job.Dir = filepath.Join(run.job.Dir, s.ID)
	if s.when != nil {
		ok, err := s.when.eval(&job)
		if err != nil {
			return skip(err.Error())
		}
		if !ok {
			return skip(fmt.Sprintf("when %q is false", s.when.src))
		}
	}
	if !s.step.Applies(&job) {
		return skip("does not apply to this input")
	}
	if err := os.MkdirAll(job.Dir, 0o750); err != nil {
		return false, err
	}
	if res, took, ok := run.early.take(&job, s); ok {
		if err := run.t.Started(run.ctx, s.ID); err != nil {
			return false, err
		}
		go func() { run.done <- stepDone{spec: s, res: res, took: took} }()
		return true, nil
	}
	go func() {
		res, took, err := run.attempts(ctx, s, &job)
		run.done <- stepDone{spec: s, res: res, err: err, took: took}
	}()
	return true, nil
}

// attempts runs a step up to 1+Retries times.
func (run *run) attempts(ctx context.Context, s *StepSpec, job *Job) (Result, time.Duration, error) {
	delay := run.r.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	for attempt := 0; ; attempt++ {
		if err := run.t.Started(run.ctx, s.ID); err != nil {
			return Result{}, 0, err
		}
		res, took, err := run.once(ctx, s, job)
		if err == nil || ctx.Err() != nil || attempt >= s.Retries || final(err) {
			return res, took, err
		}
		// Record the failed attempt (Finished returns its error back),
		// then back off.
		_ = run.t.Finished(run.ctx, s.ID, Result{}, err, took)
		wait := delay<<attempt + rand.N(delay)
		select {
		case <-ctx.Done():
			return Result{}, 0, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// final reports errors that a retry cannot change: a skip, or a
// degradation (whose own calls were retried already).
func final(err error) bool {
	var se *SkipError
	var de *DegradedError
	return errors.As(err, &se) || errors.As(err, &de)
}

// once runs a step under its timeout.
func (run *run) once(ctx context.Context, s *StepSpec, job *Job) (Result, time.Duration, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = run.r.Timeout
	}
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	// What the step logs with its context names the step.
	sctx, cancel := context.WithTimeout(telemetry.WithStep(ctx, s.ID), timeout)
	defer cancel()
	start := time.Now()
	res, err := runSafely(sctx, job, s.step)
	took := time.Since(start)
	if err != nil && ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		err = &MediaError{Reason: fmt.Sprintf("%s: timed out after %s", s.ID, timeout), Err: err}
	}
	if err == nil {
		err = placeOutputs(s, job, &res)
	}
	return res, took, err
}

// placeOutputs checks the names a step gave its outputs and sets where
// each lies and what the asset will call it.
func placeOutputs(s *StepSpec, job *Job, res *Result) error {
	for i := range res.Outputs {
		o := &res.Outputs[i]
		if o.Name == "" || path.IsAbs(o.Name) || path.Clean(o.Name) != o.Name || strings.HasPrefix(o.Name, "../") || o.Name == ".." {
			return fmt.Errorf("%s: bad output name %q", s.ID, o.Name)
		}
		o.File = filepath.Join(job.Dir, filepath.FromSlash(o.Name))
		o.Name = s.outputPrefix() + o.Name
	}
	return nil
}

// finish records a step's end and updates the run's state. It returns
// the error that fails the job, if any. failure is the failure that
// already fails the job, if any.
func (run *run) finish(d stepDone, failure error) error {
	s := d.spec
	ctx := run.ctx
	if d.err != nil && ctx.Err() != nil {
		// Shutdown or a lost lease: not this step's fault; leave it for
		// the next delivery, unrecorded.
		run.state[s.ID] = Failed
		return ctx.Err()
	}
	if d.err != nil && failure != nil {
		// Interrupted because another step failed the job.
		run.state[s.ID] = Failed
		_ = run.t.Finished(ctx, s.ID, Result{}, fmt.Errorf("interrupted: %w", failure), d.took)
		return nil
	}
	if d.err == nil && d.res.Media != nil {
		run.job.Media = d.res.Media
	}
	var skipErr *SkipError
	if errors.As(d.err, &skipErr) {
		run.state[s.ID] = Skipped
		return run.t.Skipped(ctx, s.ID, skipErr.Reason)
	}
	var degErr *DegradedError
	if errors.As(d.err, &degErr) && !(s.onErrorSet && s.OnError == OnErrorFail) {
		// The tracker records the step as degraded; the job goes on.
		run.state[s.ID] = Degraded
		_ = run.t.Finished(ctx, s.ID, Result{}, d.err, d.took)
		return nil
	}
	err := run.t.Finished(ctx, s.ID, d.res, d.err, d.took)
	if d.err != nil {
		// The step's own failure stands, whatever recording it gave.
		err = d.err
	}
	if err == nil {
		run.state[s.ID] = Succeeded
		return nil
	}
	switch s.OnError {
	case OnErrorSkip:
		run.state[s.ID] = Skipped
		if serr := run.t.Skipped(ctx, s.ID, "failed: "+err.Error()); serr != nil {
			return serr
		}
		return nil
	case OnErrorContinue:
		run.state[s.ID] = Failed
		return nil
	}
	run.state[s.ID] = Failed
	return err
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

// prestarted holds steps started early, while the probe runs.
type prestarted struct {
	cancel  context.CancelFunc
	results map[string]chan earlyResult
}

type earlyResult struct {
	res  Result
	err  error
	took time.Duration
}

// prestart launches, in the background, every Prestarter among specs
// that needs nothing but the probe.
func (run *run) prestart(ctx context.Context, specs []*StepSpec) *prestarted {
	ctx, cancel := context.WithCancel(ctx)
	e := &prestarted{cancel: cancel, results: map[string]chan earlyResult{}}
	probe := run.p.probeID()
	for _, s := range specs {
		ps, ok := s.step.(Prestarter)
		if !ok || !slices.Equal(run.p.needs(s), []string{probe}) {
			continue
		}
		ch := make(chan earlyResult, 1)
		e.results[s.ID] = ch
		view := *run.job // the early run must not see the probe's findings land
		view.Engine = s.Engine
		view.Dir = filepath.Join(run.job.Dir, s.ID)
		go func() {
			var er earlyResult
			if er.err = os.MkdirAll(view.Dir, 0o750); er.err != nil {
				ch <- er
				return
			}
			timeout := s.Timeout
			if timeout <= 0 {
				timeout = run.r.Timeout
			}
			if timeout <= 0 {
				timeout = 10 * time.Minute
			}
			sctx, scancel := context.WithTimeout(ctx, timeout)
			defer scancel()
			start := time.Now()
			func() {
				defer func() {
					if p := recover(); p != nil {
						er.err = fmt.Errorf("%s: panic: %v", s.ID, p)
					}
				}()
				er.res, er.err = ps.Prestart(sctx, &view)
			}()
			er.took = time.Since(start)
			if er.err == nil {
				er.err = placeOutputs(s, &view, &er.res)
			}
			ch <- er
		}()
	}
	return e
}

// take waits for the early run of s and returns its result if it is to
// be kept.
func (e *prestarted) take(job *Job, s *StepSpec) (Result, time.Duration, bool) {
	if e == nil {
		return Result{}, 0, false
	}
	ch, ok := e.results[s.ID]
	if !ok {
		return Result{}, 0, false
	}
	delete(e.results, s.ID)
	er := <-ch
	if er.err != nil || !s.step.(Prestarter).Keep(job, er.res) {
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
