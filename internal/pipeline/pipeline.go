// Package pipeline defines what a processing step is and runs the steps of
// a pipeline over one asset. It knows nothing of queues, HTTP or FFmpeg:
// the worker hands it a Job whose input is a local file and a scratch
// directory, steps (registered in a Registry) turn that into outputs, and
// the Runner reports each step's start and end to a Recorder so that state
// is written as the job goes.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Job is what a step works on: one asset's source, read-only, and a
// scratch directory that belongs to this job alone.
type Job struct {
	AssetID string
	// Input is the local path of the source object. Steps must not modify it.
	Input string
	// Dir is a scratch directory for outputs, removed after the job.
	Dir string
	// Media is the probe summary; nil until the probe step has run.
	Media *Media
	// Engine is the FFmpeg engine the running step's spec asks for
	// ("auto", "wasm", "native"; "" for the default). Set per step.
	Engine string
}

// Output is a file a step wrote into Job.Dir. Name is both the file name in
// Dir and the output's name on the asset (e.g. "thumbnail.jpg").
type Output struct {
	Name        string
	ContentType string
}

// Result is what a step produced.
type Result struct {
	// Media is set by the step that probes the input.
	Media   *Media
	Outputs []Output
}

// Step is one unit of work in a pipeline. Steps must be idempotent: running
// one again on the same input produces the same outputs under the same names.
type Step interface {
	Name() string
	// Applies reports whether the step has anything to do for the job, given
	// what is known so far (for example, no audio step for a silent clip).
	Applies(job *Job) bool
	Run(ctx context.Context, job *Job) (Result, error)
}

// Prestarter is implemented by steps worth starting while the input is
// still being probed, on the guess that they will apply: a thumbnail of a
// fresh upload should not wait for the probe. Prestart runs with
// job.Media nil. Once the probe is done the runner keeps the early result
// only if the step applies and Keep accepts it; otherwise the step runs
// as usual and its outputs are written again.
type Prestarter interface {
	Prestart(ctx context.Context, job *Job) (Result, error)
	Keep(job *Job, early Result) bool
}

// MediaError is a failure caused by the input itself: a file that is not
// media, or media that cannot be decoded. Retrying does not help. Reason is
// one readable line, suitable for showing to the person who uploaded it.
type MediaError struct {
	Reason string
	Err    error // underlying cause, for logs
}

func (e *MediaError) Error() string { return e.Reason }
func (e *MediaError) Unwrap() error { return e.Err }

// Invalid returns a MediaError with a formatted reason.
func Invalid(format string, args ...any) error {
	return &MediaError{Reason: fmt.Sprintf(format, args...)}
}

// IsMediaError reports whether err is, or wraps, a MediaError.
func IsMediaError(err error) bool {
	var me *MediaError
	return errors.As(err, &me)
}

// Registry maps step names to steps. It is a value, built by whoever wires
// the process together, not a global.
type Registry struct {
	steps map[string]Step
}

// NewRegistry returns a registry holding the given steps.
func NewRegistry(steps ...Step) (*Registry, error) {
	r := &Registry{steps: make(map[string]Step)}
	for _, s := range steps {
		if err := r.Register(s); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a step; names must be unique.
func (r *Registry) Register(s Step) error {
	if _, dup := r.steps[s.Name()]; dup {
		return fmt.Errorf("pipeline: step %q registered twice", s.Name())
	}
	r.steps[s.Name()] = s
	return nil
}

// Lookup returns the step with the given name.
func (r *Registry) Lookup(name string) (Step, bool) {
	s, ok := r.steps[name]
	return s, ok
}

// Pipeline is an ordered list of steps. The first step is expected to probe
// the input, so that later steps can decide whether they apply.
type Pipeline struct {
	Name  string
	Steps []StepSpec
}

// StepSpec places a registered step in a pipeline.
type StepSpec struct {
	Uses    string
	Timeout time.Duration // 0: the runner's default
	Engine  string        // "", "auto", "wasm" or "native"
}

// Resolve checks that every step of p is registered.
func (r *Registry) Resolve(p Pipeline) error {
	if len(p.Steps) == 0 {
		return fmt.Errorf("pipeline %q: no steps", p.Name)
	}
	for _, s := range p.Steps {
		if _, ok := r.Lookup(s.Uses); !ok {
			return fmt.Errorf("pipeline %q: unknown step %q", p.Name, s.Uses)
		}
	}
	return nil
}
