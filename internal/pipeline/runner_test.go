package pipeline_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// recorder is a Tracker that writes down what happened.
type recorder struct {
	mu     sync.Mutex
	events []string
	done   map[string]bool
}

func (r *recorder) add(s string)          { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }
func (r *recorder) Done(step string) bool { return r.done[step] }
func (r *recorder) Started(ctx context.Context, step string) error {
	r.add("start " + step)
	return nil
}
func (r *recorder) Skipped(ctx context.Context, step string) error { r.add("skip " + step); return nil }
func (r *recorder) Finished(ctx context.Context, step string, res pipeline.Result, err error, took time.Duration) error {
	if err != nil {
		r.add("fail " + step + ": " + err.Error())
	} else {
		r.add("ok " + step)
	}
	return nil
}
func (r *recorder) String() string { return strings.Join(r.events, "; ") }

// probe sets Media after a delay, or fails.
type probe struct {
	delay time.Duration
	media *pipeline.Media
	err   error
}

func (*probe) Name() string               { return "probe" }
func (*probe) Applies(*pipeline.Job) bool { return true }
func (p *probe) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	time.Sleep(p.delay)
	return pipeline.Result{Media: p.media}, p.err
}

// early is a Prestarter step counting its runs.
type early struct {
	prestarts, runs atomic.Int32
	keep            bool
	sawMedia        atomic.Bool
	finished        atomic.Bool
	block           bool // prestart blocks until cancelled
}

func (*early) Name() string                               { return "thumb" }
func (*early) Applies(job *pipeline.Job) bool             { return job.Media != nil && job.Media.Video() != nil }
func (e *early) Keep(*pipeline.Job, pipeline.Result) bool { return e.keep }
func (e *early) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	e.runs.Add(1)
	return pipeline.Result{}, nil
}
func (e *early) Prestart(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	e.prestarts.Add(1)
	if job.Media != nil {
		e.sawMedia.Store(true)
	}
	if e.block {
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond)
		e.finished.Store(true)
		return pipeline.Result{}, ctx.Err()
	}
	return pipeline.Result{}, nil
}

var video = &pipeline.Media{Duration: 10, Streams: []pipeline.Stream{{Type: "video"}}}

func run(t *testing.T, p *probe, e *early, tr *recorder) error {
	t.Helper()
	reg, err := pipeline.NewRegistry(p, e)
	if err != nil {
		t.Fatal(err)
	}
	r := &pipeline.Runner{Registry: reg, Timeout: time.Minute}
	pl := pipeline.Pipeline{Name: "t", Steps: []pipeline.StepSpec{{Uses: "probe"}, {Uses: "thumb"}}}
	return r.Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, pl, tr)
}

func TestPrestartKept(t *testing.T) {
	e := &early{keep: true}
	tr := &recorder{}
	if err := run(t, &probe{delay: 20 * time.Millisecond, media: video}, e, tr); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.String(), "start probe; ok probe; start thumb; ok thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	if e.prestarts.Load() != 1 || e.runs.Load() != 0 || e.sawMedia.Load() {
		t.Errorf("prestarts %d, runs %d, saw media %v; want 1, 0, false", e.prestarts.Load(), e.runs.Load(), e.sawMedia.Load())
	}
}

func TestPrestartRejectedRunsAgain(t *testing.T) {
	e := &early{keep: false}
	tr := &recorder{}
	if err := run(t, &probe{media: video}, e, tr); err != nil {
		t.Fatal(err)
	}
	if e.prestarts.Load() != 1 || e.runs.Load() != 1 {
		t.Errorf("prestarts %d, runs %d; want 1 and 1", e.prestarts.Load(), e.runs.Load())
	}
	if got, want := tr.String(), "start probe; ok probe; start thumb; ok thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestPrestartDiscardedWhenStepDoesNotApply(t *testing.T) {
	e := &early{keep: true}
	tr := &recorder{}
	audio := &pipeline.Media{Streams: []pipeline.Stream{{Type: "audio"}}}
	if err := run(t, &probe{media: audio}, e, tr); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.String(), "start probe; ok probe; skip thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

// When the probe fails, early runs are cancelled and waited for: nothing
// may still write into the job directory after Run returns.
func TestPrestartCancelledOnProbeFailure(t *testing.T) {
	e := &early{block: true}
	tr := &recorder{}
	err := run(t, &probe{err: pipeline.Invalid("not media")}, e, tr)
	if !pipeline.IsMediaError(err) {
		t.Fatalf("err = %v, want the probe's MediaError", err)
	}
	if !e.finished.Load() {
		t.Error("Run returned before the early step ended")
	}
	if got, want := tr.String(), "start probe; fail probe: not media"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestNoPrestartWhenDone(t *testing.T) {
	e := &early{keep: true}
	tr := &recorder{done: map[string]bool{"thumb": true}}
	if err := run(t, &probe{media: video}, e, tr); err != nil {
		t.Fatal(err)
	}
	if e.prestarts.Load() != 0 || e.runs.Load() != 0 {
		t.Errorf("a finished step ran again: prestarts %d, runs %d", e.prestarts.Load(), e.runs.Load())
	}
}

func TestStepTimeoutIsMediaError(t *testing.T) {
	reg, _ := pipeline.NewRegistry(&probe{delay: 200 * time.Millisecond, media: video})
	r := &pipeline.Runner{Registry: reg, Timeout: 10 * time.Millisecond}
	slow := &slowStep{}
	_ = reg.Register(slow)
	tr := &recorder{}
	err := r.Run(context.Background(), &pipeline.Job{Media: video}, pipeline.Pipeline{Steps: []pipeline.StepSpec{{Uses: "slow"}}}, tr)
	if !pipeline.IsMediaError(err) || !strings.Contains(err.Error(), "slow: timed out after 10ms") {
		t.Errorf("err = %v, want a timeout MediaError", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	reg, _ := pipeline.NewRegistry(panicky{})
	r := &pipeline.Runner{Registry: reg, Timeout: time.Second}
	err := r.Run(context.Background(), &pipeline.Job{Media: video}, pipeline.Pipeline{Steps: []pipeline.StepSpec{{Uses: "panicky"}}}, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Errorf("err = %v, want the panic as an error", err)
	}
}

type slowStep struct{}

func (slowStep) Name() string               { return "slow" }
func (slowStep) Applies(*pipeline.Job) bool { return true }
func (slowStep) Run(ctx context.Context, _ *pipeline.Job) (pipeline.Result, error) {
	<-ctx.Done()
	return pipeline.Result{}, ctx.Err()
}

type panicky struct{}

func (panicky) Name() string               { return "panicky" }
func (panicky) Applies(*pipeline.Job) bool { return true }
func (panicky) Run(context.Context, *pipeline.Job) (pipeline.Result, error) {
	panic("boom")
}
