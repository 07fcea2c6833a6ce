package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// recorder is a Tracker that writes down what happened.
type recorder struct {
	mu      sync.Mutex
	events  []string
	prior   map[string]pipeline.Outcome
	reasons map[string]string
	outputs map[string][]pipeline.Output
}

func (r *recorder) add(s string) { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }
func (r *recorder) Prior(id string) (pipeline.Outcome, bool) {
	o, ok := r.prior[id]
	return o, ok
}
func (r *recorder) Started(ctx context.Context, id string) error {
	r.add("start " + id)
	return nil
}
func (r *recorder) Skipped(ctx context.Context, id, reason string) error {
	r.mu.Lock()
	if r.reasons == nil {
		r.reasons = map[string]string{}
	}
	r.reasons[id] = reason
	r.mu.Unlock()
	r.add("skip " + id)
	return nil
}
func (r *recorder) Finished(ctx context.Context, id string, res pipeline.Result, err error, took time.Duration) error {
	if err != nil {
		r.add("fail " + id + ": " + err.Error())
		return err
	}
	r.mu.Lock()
	if r.outputs == nil {
		r.outputs = map[string][]pipeline.Output{}
	}
	r.outputs[id] = res.Outputs
	r.mu.Unlock()
	r.add("ok " + id)
	return nil
}
func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.events, "; ")
}

// has reports whether the events include e.
func (r *recorder) has(e string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.events {
		if x == e {
			return true
		}
	}
	return false
}

// index returns the position of event e, or -1.
func (r *recorder) index(e string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.events {
		if x == e {
			return i
		}
	}
	return -1
}

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

// fake is a configurable step: it sleeps, fails the first `fail_times`
// runs (as a MediaError when `media_error`), and writes `out` files.
type fake struct {
	sleep      time.Duration
	failTimes  int
	mediaError bool
	outs       []string
	calls      *sync.Map // id -> *atomic.Int32, shared by the test
	id         string
	end        string // "skip" or "degrade": end that way
}

func (*fake) Name() string               { return "fake" }
func (*fake) Applies(*pipeline.Job) bool { return true }
func (f *fake) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	n, _ := f.calls.LoadOrStore(f.id, new(atomic.Int32))
	call := n.(*atomic.Int32).Add(1)
	select {
	case <-time.After(f.sleep):
	case <-ctx.Done():
		return pipeline.Result{}, ctx.Err()
	}
	switch f.end {
	case "skip":
		return pipeline.Result{}, pipeline.Skip("%s: no provider configured", f.id)
	case "degrade":
		return pipeline.Result{}, pipeline.Degrade(fmt.Errorf("%s: every provider failed", f.id))
	}
	if int(call) <= f.failTimes {
		if f.mediaError {
			return pipeline.Result{}, pipeline.Invalid("%s: bad input", f.id)
		}
		return pipeline.Result{}, fmt.Errorf("%s: transient", f.id)
	}
	var res pipeline.Result
	for _, o := range f.outs {
		p := filepath.Join(job.Dir, filepath.FromSlash(o))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return res, err
		}
		if err := os.WriteFile(p, []byte(o), 0o644); err != nil {
			return res, err
		}
		res.Outputs = append(res.Outputs, pipeline.Output{Name: o, ContentType: "text/plain"})
	}
	return res, nil
}

var video = &pipeline.Media{Duration: 10, Streams: []pipeline.Stream{{Type: "video"}}}

type testSteps struct {
	probe  *probe
	early  *early
	counts sync.Map
}

// registry has the step types probe, thumb (a Prestarter), fake, slow
// and panicky.
func (ts *testSteps) registry(t *testing.T) *pipeline.Registry {
	t.Helper()
	if ts.probe == nil {
		ts.probe = &probe{media: video}
	}
	if ts.early == nil {
		ts.early = &early{keep: true}
	}
	reg, err := pipeline.NewRegistry(
		pipeline.StepType{Name: "probe", New: func(pipeline.Params) (pipeline.Step, error) { return ts.probe, nil }},
		pipeline.StepType{Name: "thumb", New: func(pipeline.Params) (pipeline.Step, error) { return ts.early, nil }},
		pipeline.StepType{Name: "slow", New: func(pipeline.Params) (pipeline.Step, error) { return slowStep{}, nil }},
		pipeline.StepType{Name: "panicky", New: func(pipeline.Params) (pipeline.Step, error) { return panicky{}, nil }},
		pipeline.StepType{
			Name: "fake",
			Params: []pipeline.Param{
				{Name: "id", Kind: pipeline.String, Required: true},
				{Name: "sleep", Kind: pipeline.Duration},
				{Name: "fail_times", Kind: pipeline.Int},
				{Name: "media_error", Kind: pipeline.Bool},
				{Name: "outs", Kind: pipeline.Strings},
				{Name: "heavy", Kind: pipeline.Bool},
				{Name: "end", Kind: pipeline.String},
			},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &fake{id: p.String("id"), sleep: p.Duration("sleep"), failTimes: p.Int("fail_times"),
					mediaError: p.Bool("media_error"), outs: p.Strings("outs"), calls: &ts.counts, end: p.String("end")}, nil
			},
		},
		pipeline.StepType{Name: "encode", Heavy: true, New: func(pipeline.Params) (pipeline.Step, error) {
			return &fake{id: "encode", calls: &ts.counts}, nil
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// pipelineOf loads one pipeline from YAML.
func (ts *testSteps) pipelineOf(t *testing.T, yaml string) *pipeline.Pipeline {
	t.Helper()
	set := pipeline.NewSet(ts.registry(t))
	if err := set.Load("test.yaml", []byte(yaml)); err != nil {
		t.Fatal(err)
	}
	return set.All()[0]
}

func (ts *testSteps) calls(id string) int {
	n, ok := ts.counts.Load(id)
	if !ok {
		return 0
	}
	return int(n.(*atomic.Int32).Load())
}

const probeThumb = `
pipelines:
  - name: t
    steps:
      - uses: probe
      - uses: thumb
`

func runPrestart(t *testing.T, ts *testSteps, tr *recorder) error {
	t.Helper()
	r := &pipeline.Runner{Timeout: time.Minute}
	_, err := r.Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, ts.pipelineOf(t, probeThumb), pipeline.StageAll, tr)
	return err
}

func TestPrestartKept(t *testing.T) {
	ts := &testSteps{probe: &probe{delay: 20 * time.Millisecond, media: video}, early: &early{keep: true}}
	tr := &recorder{}
	if err := runPrestart(t, ts, tr); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.String(), "start probe; ok probe; start thumb; ok thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	e := ts.early
	if e.prestarts.Load() != 1 || e.runs.Load() != 0 || e.sawMedia.Load() {
		t.Errorf("prestarts %d, runs %d, saw media %v; want 1, 0, false", e.prestarts.Load(), e.runs.Load(), e.sawMedia.Load())
	}
}

func TestPrestartRejectedRunsAgain(t *testing.T) {
	ts := &testSteps{early: &early{keep: false}}
	tr := &recorder{}
	if err := runPrestart(t, ts, tr); err != nil {
		t.Fatal(err)
	}
	if ts.early.prestarts.Load() != 1 || ts.early.runs.Load() != 1 {
		t.Errorf("prestarts %d, runs %d; want 1 and 1", ts.early.prestarts.Load(), ts.early.runs.Load())
	}
	if got, want := tr.String(), "start probe; ok probe; start thumb; ok thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestPrestartDiscardedWhenStepDoesNotApply(t *testing.T) {
	audio := &pipeline.Media{Streams: []pipeline.Stream{{Type: "audio"}}}
	ts := &testSteps{probe: &probe{media: audio}}
	tr := &recorder{}
	if err := runPrestart(t, ts, tr); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.String(), "start probe; ok probe; skip thumb"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
	if got := tr.reasons["thumb"]; got != "does not apply to this input" {
		t.Errorf("reason = %q", got)
	}
}

// When the probe fails, early runs are cancelled and waited for: nothing
// may still write into the job directory after Run returns.
func TestPrestartCancelledOnProbeFailure(t *testing.T) {
	ts := &testSteps{probe: &probe{err: pipeline.Invalid("not media")}, early: &early{block: true}}
	tr := &recorder{}
	err := runPrestart(t, ts, tr)
	if !pipeline.IsMediaError(err) {
		t.Fatalf("err = %v, want the probe's MediaError", err)
	}
	if !ts.early.finished.Load() {
		t.Error("Run returned before the early step ended")
	}
	if got, want := tr.String(), "start probe; fail probe: not media"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestNoPrestartWhenDone(t *testing.T) {
	ts := &testSteps{}
	tr := &recorder{prior: map[string]pipeline.Outcome{"thumb": pipeline.Succeeded}}
	if err := runPrestart(t, ts, tr); err != nil {
		t.Fatal(err)
	}
	if ts.early.prestarts.Load() != 0 || ts.early.runs.Load() != 0 {
		t.Errorf("a finished step ran again: prestarts %d, runs %d", ts.early.prestarts.Load(), ts.early.runs.Load())
	}
}

func TestStepTimeoutIsMediaError(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, "pipelines:\n  - name: t\n    steps:\n      - uses: slow\n        timeout: 10ms\n")
	_, err := (&pipeline.Runner{Timeout: time.Minute}).Run(context.Background(), &pipeline.Job{Media: video, Dir: t.TempDir()}, p, pipeline.StageAll, &recorder{})
	if !pipeline.IsMediaError(err) || !strings.Contains(err.Error(), "slow: timed out after 10ms") {
		t.Errorf("err = %v, want a timeout MediaError", err)
	}
}

func TestPanicBecomesError(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, "pipelines:\n  - name: t\n    steps:\n      - uses: panicky\n")
	_, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Media: video, Dir: t.TempDir()}, p, pipeline.StageAll, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "panic: boom") {
		t.Errorf("err = %v, want the panic as an error", err)
	}
}

// timing records when each step started and ended.
type timing struct {
	mu    sync.Mutex
	start map[string]time.Time
	end   map[string]time.Time
}

// TestDAGOrderAndParallelism: a and b only need the probe and run side
// by side; c needs both and starts after both ended.
func TestDAGOrderAndParallelism(t *testing.T) {
	const dag = `
pipelines:
  - name: t
    steps:
      - uses: probe
      - {id: a, uses: fake, with: {id: a, sleep: 300ms}}
      - {id: b, uses: fake, with: {id: b, sleep: 300ms}}
      - {id: c, uses: fake, with: {id: c}, needs: [a, b]}
`
	for _, parallel := range []int{1, 2} {
		t.Run(fmt.Sprintf("parallel=%d", parallel), func(t *testing.T) {
			ts := &testSteps{}
			tr := &recorder{}
			r := &pipeline.Runner{Parallel: parallel}
			if _, err := r.Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, ts.pipelineOf(t, dag), pipeline.StageAll, tr); err != nil {
				t.Fatal(err)
			}
			startA, startB, okA, okB, startC := tr.index("start a"), tr.index("start b"), tr.index("ok a"), tr.index("ok b"), tr.index("start c")
			if min(startA, startB, okA, okB, startC) < 0 {
				t.Fatalf("missing events: %s", tr)
			}
			if startC < max(okA, okB) {
				t.Errorf("c started before a and b ended: %s", tr)
			}
			overlap := startB < okA && startA < okB
			if parallel == 2 && !overlap {
				t.Errorf("a and b did not run side by side with 2 slots: %s", tr)
			}
			if parallel == 1 && overlap {
				t.Errorf("a and b overlapped with 1 slot: %s", tr)
			}
		})
	}
}

func TestWhen(t *testing.T) {
	const when = `
pipelines:
  - name: t
    steps:
      - uses: probe
      - {id: long, uses: fake, with: {id: long}, when: "media.duration > 5"}
      - {id: short, uses: fake, with: {id: short}, when: "media.duration < 5"}
      - {id: sound, uses: fake, with: {id: sound}, when: "media.has_audio"}
      - {id: codec, uses: fake, with: {id: codec}, when: "media.audio.codec == 'aac'"}
      - {id: pro, uses: fake, with: {id: pro}, when: "asset.metadata['tier'] == 'pro' && asset.content_type.startsWith('video/')"}
      - {id: after_short, uses: fake, with: {id: after_short}, needs: [short]}
`
	ts := &testSteps{}
	tr := &recorder{}
	job := &pipeline.Job{Dir: t.TempDir(), Asset: pipeline.AssetInfo{ContentType: "video/mp4", Metadata: map[string]string{"tier": "pro"}}}
	if _, err := (&pipeline.Runner{}).Run(context.Background(), job, ts.pipelineOf(t, when), pipeline.StageAll, tr); err != nil {
		t.Fatal(err)
	}
	for id, ran := range map[string]bool{"long": true, "short": false, "sound": false, "codec": false, "pro": true, "after_short": false} {
		if got := ts.calls(id) == 1; got != ran {
			t.Errorf("%s ran = %v, want %v (%s)", id, got, ran, tr)
		}
	}
	for id, want := range map[string]string{
		"short":       `when "media.duration < 5" is false`,
		"sound":       `when "media.has_audio" is false`,
		"codec":       `no such key: audio`,
		"after_short": "needs short, which was skipped",
	} {
		if got := tr.reasons[id]; !strings.Contains(got, want) {
			t.Errorf("reason for skipping %s = %q, want it to contain %q", id, got, want)
		}
	}
}

func TestOnError(t *testing.T) {
	for _, tt := range []struct {
		onError   string
		wantErr   bool
		afterRuns bool
		wantEvent string
	}{
		{"fail", true, false, "fail bad: bad: bad input"},
		{"skip", false, false, "skip bad"},
		{"continue", false, true, "fail bad: bad: bad input"},
	} {
		t.Run(tt.onError, func(t *testing.T) {
			ts := &testSteps{}
			tr := &recorder{}
			p := ts.pipelineOf(t, fmt.Sprintf(`
pipelines:
  - name: t
    steps:
      - uses: probe
      - {id: bad, uses: fake, with: {id: bad, fail_times: 9, media_error: true}, on_error: %s}
      - {id: after, uses: fake, with: {id: after}, needs: [bad]}
      - {id: other, uses: fake, with: {id: other}, needs: [probe]}
`, tt.onError))
			_, err := (&pipeline.Runner{Parallel: 1}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, p, pipeline.StageAll, tr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !pipeline.IsMediaError(err) {
				t.Errorf("err = %v, want the step's MediaError", err)
			}
			if got := ts.calls("after") == 1; got != tt.afterRuns {
				t.Errorf("dependent ran = %v, want %v (%s)", got, tt.afterRuns, tr)
			}
			if !tr.has(tt.wantEvent) {
				t.Errorf("events %s lack %q", tr, tt.wantEvent)
			}
			if tt.onError == "skip" && !strings.HasPrefix(tr.reasons["bad"], "failed: bad: bad input") {
				t.Errorf("skip reason = %q", tr.reasons["bad"])
			}
		})
	}
}

func TestRetries(t *testing.T) {
	ts := &testSteps{}
	tr := &recorder{}
	p := ts.pipelineOf(t, `
pipelines:
  - name: t
    steps:
      - {id: flaky, uses: fake, with: {id: flaky, fail_times: 2}, retries: 2}
      - {id: hopeless, uses: fake, with: {id: hopeless, fail_times: 5}, retries: 1, on_error: continue}
`)
	r := &pipeline.Runner{RetryDelay: time.Millisecond}
	if _, err := r.Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageAll, tr); err != nil {
		t.Fatal(err)
	}
	if ts.calls("flaky") != 3 || !tr.has("ok flaky") {
		t.Errorf("flaky: %d calls, events %s; want 3 calls ending ok", ts.calls("flaky"), tr)
	}
	if ts.calls("hopeless") != 2 {
		t.Errorf("hopeless: %d calls, want 2 (1 + 1 retry)", ts.calls("hopeless"))
	}
}

// TestStages: the fast stage runs the fast steps that need nothing heavy
// and reports that more remains; the heavy stage runs the rest, taking
// the fast steps' outcomes as given.
func TestStages(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, `
pipelines:
  - name: t
    steps:
      - uses: probe
      - {id: quick, uses: fake, with: {id: quick}}
      - uses: encode
      - {id: after_encode, uses: fake, with: {id: after_encode}, needs: [encode]}
      - {id: big, uses: fake, with: {id: big}, pool: heavy}
`)
	for id, heavy := range map[string]bool{"probe": false, "quick": false, "encode": true, "after_encode": true, "big": true} {
		if p.Step(id).Heavy() != heavy {
			t.Errorf("%s: heavy = %v, want %v", id, p.Step(id).Heavy(), heavy)
		}
	}
	fast := &recorder{}
	more, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, p, pipeline.StageFast, fast)
	if err != nil || !more {
		t.Fatalf("fast stage: more %v, err %v; want more", more, err)
	}
	if ts.calls("quick") != 1 || ts.calls("encode") != 0 || ts.calls("big") != 0 {
		t.Errorf("fast stage ran quick %d, encode %d, big %d times", ts.calls("quick"), ts.calls("encode"), ts.calls("big"))
	}
	heavy := &recorder{prior: map[string]pipeline.Outcome{"probe": pipeline.Succeeded, "quick": pipeline.Succeeded}}
	more, err = (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageHeavy, heavy)
	if err != nil || more {
		t.Fatalf("heavy stage: more %v, err %v", more, err)
	}
	if ts.calls("quick") != 1 || ts.calls("encode") != 1 || ts.calls("after_encode") != 1 || ts.calls("big") != 1 {
		t.Errorf("after both stages: quick %d, encode %d, after_encode %d, big %d runs; want 1 each",
			ts.calls("quick"), ts.calls("encode"), ts.calls("after_encode"), ts.calls("big"))
	}
	// A pipeline with no heavy step is done after the fast stage.
	light := ts.pipelineOf(t, "pipelines:\n  - name: l\n    steps:\n      - uses: probe\n")
	if more, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir()}, light, pipeline.StageFast, &recorder{}); more || err != nil {
		t.Errorf("light pipeline: more %v, err %v", more, err)
	}
}

// TestOutputNames: outputs of a step whose id differs from its type go
// under the id; each step writes in its own directory.
func TestOutputNames(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, `
pipelines:
  - name: t
    steps:
      - {uses: fake, with: {id: plain, outs: [a.txt, sub/b.txt]}}
      - {id: second, uses: fake, with: {id: second, outs: [a.txt]}}
`)
	tr := &recorder{}
	dir := t.TempDir()
	if _, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: dir, Media: video}, p, pipeline.StageAll, tr); err != nil {
		t.Fatal(err)
	}
	check := func(id string, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for _, o := range tr.outputs[id] {
			got[o.Name] = o.File
			if _, err := os.Stat(o.File); err != nil {
				t.Errorf("%s: output %s: %v", id, o.Name, err)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s outputs = %v, want %v", id, got, want)
		}
	}
	check("fake", map[string]string{"a.txt": filepath.Join(dir, "fake", "a.txt"), "sub/b.txt": filepath.Join(dir, "fake", "sub", "b.txt")})
	check("second", map[string]string{"second/a.txt": filepath.Join(dir, "second", "a.txt")})
}

func TestBadOutputNameFails(t *testing.T) {
	ts := &testSteps{}
	for _, name := range []string{"../escape", "/abs", "a/../../b", "./x"} {
		p := ts.pipelineOf(t, fmt.Sprintf("pipelines:\n  - name: t\n    steps:\n      - {uses: fake, with: {id: x, outs: [%q]}}\n", name))
		_, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageAll, &recorder{})
		if err == nil || !strings.Contains(err.Error(), "bad output name") {
			t.Errorf("output %q: err = %v, want bad output name", name, err)
		}
	}
}

// A failure in one branch interrupts the others, whose ends are recorded.
func TestFailureInterruptsOthers(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, `
pipelines:
  - name: t
    steps:
      - {id: long, uses: fake, with: {id: long, sleep: 1m}}
      - {id: bad, uses: fake, with: {id: bad, sleep: 50ms, fail_times: 1, media_error: true}}
`)
	tr := &recorder{}
	start := time.Now()
	_, err := (&pipeline.Runner{Parallel: 2}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageAll, tr)
	if !pipeline.IsMediaError(err) {
		t.Fatalf("err = %v, want bad's MediaError", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("Run waited for the long step")
	}
	if !strings.Contains(tr.String(), "fail long: interrupted") {
		t.Errorf("events = %s; want long recorded as interrupted", tr)
	}
}

// Shutdown (the caller's context ending) leaves steps unrecorded.
func TestShutdownLeavesStepsUnrecorded(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, "pipelines:\n  - name: t\n    steps:\n      - {id: long, uses: fake, with: {id: long, sleep: 1m}}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	tr := &recorder{}
	_, err := (&pipeline.Runner{}).Run(ctx, &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageAll, tr)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if got := tr.String(); got != "start long" {
		t.Errorf("events = %s, want only the start", got)
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

// TestSkipAndDegrade: a step may end skipped (nothing it could do) or
// degraded (its work could not be done); neither fails the job unless the
// pipeline says on_error: fail for the degraded one, neither is retried,
// and the steps that need them are skipped.
func TestSkipAndDegrade(t *testing.T) {
	ts := &testSteps{}
	p := ts.pipelineOf(t, `
pipelines:
  - name: t
    steps:
      - {id: unconfigured, uses: fake, with: {id: unconfigured, end: skip}, retries: 3}
      - {id: flaky_ai, uses: fake, with: {id: flaky_ai, end: degrade}, retries: 3}
      - {id: summary, uses: fake, with: {id: summary}, needs: [flaky_ai]}
      - {id: other, uses: fake, with: {id: other}}
`)
	tr := &recorder{}
	if _, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, p, pipeline.StageAll, tr); err != nil {
		t.Fatalf("err = %v, want the job to go on", err)
	}
	if ts.calls("unconfigured") != 1 || ts.calls("flaky_ai") != 1 || ts.calls("summary") != 0 || ts.calls("other") != 1 {
		t.Errorf("calls: unconfigured %d, flaky_ai %d, summary %d, other %d; want 1, 1, 0, 1 (%s)",
			ts.calls("unconfigured"), ts.calls("flaky_ai"), ts.calls("summary"), ts.calls("other"), tr)
	}
	if got := tr.reasons["unconfigured"]; got != "unconfigured: no provider configured" {
		t.Errorf("skip reason = %q", got)
	}
	if !tr.has("fail flaky_ai: flaky_ai: every provider failed") {
		t.Errorf("degraded step not reported to the tracker with its reason: %s", tr)
	}
	if got := tr.reasons["summary"]; got != "needs flaky_ai, which was degraded" {
		t.Errorf("dependent's reason = %q", got)
	}

	strict := ts.pipelineOf(t, "pipelines:\n  - name: s\n    steps:\n      - {id: ai, uses: fake, with: {id: ai2, end: degrade}, on_error: fail}\n")
	_, err := (&pipeline.Runner{}).Run(context.Background(), &pipeline.Job{Dir: t.TempDir(), Media: video}, strict, pipeline.StageAll, &recorder{})
	var de *pipeline.DegradedError
	if !errors.As(err, &de) {
		t.Errorf("on_error: fail with a degraded step: err = %v, want the DegradedError", err)
	}
}
