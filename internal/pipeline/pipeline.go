// Package pipeline defines what a processing step is, what a pipeline of
// steps is, and runs a pipeline over one asset. It knows nothing of
// queues, HTTP or FFmpeg.
//
//   - Step types (StepType, in a Registry) declare their parameters;
//     pipelines name them in `uses` and set parameters in `with`.
//   - Pipelines come from YAML (load.go): a built-in file plus files
//     from configuration, checked when loaded, with errors that name the
//     file, line and field. A Set picks the pipeline for an asset by
//     content type, key glob and metadata.
//   - Steps form a DAG (`needs`), may be conditional (`when`, a CEL
//     expression, cond.go), and say what their failure does (`on_error`)
//     and which worker pool runs them (`pool`).
//   - The Runner runs a stage of a pipeline over a Job, in parallel where
//     the DAG allows, and reports each step's start and end to a Tracker,
//     which the worker implements to persist state as the job goes.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Job is what a step works on: one asset's source, read-only, and a
// scratch directory that belongs to this job alone.
type Job struct {
	AssetID string
	// Owner is the id of the API key that created the asset ("" for
	// none): AI calls are charged to it.
	Owner string
	// Input is the local path of the source object. Steps must not modify it.
	Input string
	// Dir is the running step's own scratch directory for outputs,
	// removed after the job. Each step has its own, so that steps running
	// in parallel cannot clash.
	Dir string
	// Media is the probe summary; nil until the probe step has run.
	Media *Media
	// Engine is the FFmpeg engine the running step's spec asks for
	// ("auto", "wasm", "native"; "" for the default). Set per step.
	Engine string
	// Asset describes the asset for conditions and steps that name
	// outputs after it.
	Asset AssetInfo
	// ReadOutput returns a stored output of the asset by name (one a step
	// it needs wrote: the summary reads the transcript), or an error
	// wrapping fs.ErrNotExist. Nil when there is no store (tests).
	ReadOutput func(ctx context.Context, name string) ([]byte, error)
}

// AssetInfo is what a job knows of its asset besides the file.
type AssetInfo struct {
	Name        string
	ContentType string
	Key         string
	Size        int64
	Metadata    map[string]string
}

// Output is a file a step wrote into Job.Dir. Name is its path relative to
// Dir, slash-separated (e.g. "thumbnail.jpg", "hls/720p/index.m3u8"), and
// the output's name on the asset, under the step's id when the pipeline
// gives the step an id other than its type's name.
type Output struct {
	Name        string
	ContentType string
	// File is where the output lies on this host; set by the runner.
	File string
}

// Result is what a step produced.
type Result struct {
	// Media is set by the step that probes the input.
	Media   *Media
	Outputs []Output
	// Quarantine, when set, holds the asset's outputs back from delivery
	// until an operator releases it; it says why (a moderation step's
	// verdict, under a pipeline policy that asks for it).
	Quarantine string
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

// HeavyStep is implemented by steps whose weight depends on their
// parameters (a custom FFmpeg command): IsHeavy then decides the step's
// default pool instead of its type's Heavy.
type HeavyStep interface {
	IsHeavy() bool
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

// SkipError ends a step as skipped, not failed: it found nothing to do
// that could not be known before it ran (no provider is configured for
// its task, say). Reason is shown with the step.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

// Skip returns a SkipError with a formatted reason.
func Skip(format string, args ...any) error {
	return &SkipError{Reason: fmt.Sprintf(format, args...)}
}

// DegradedError ends a step as degraded: the work it exists for could not
// be done (every AI provider failed), but the asset is not lost for it.
// The asset still succeeds with its other outputs, the step shows the
// reason, and a reprocess can fill it in later. A pipeline that sets
// on_error: fail on the step fails the asset instead.
type DegradedError struct {
	Reason string
	Err    error
}

func (e *DegradedError) Error() string { return e.Reason }
func (e *DegradedError) Unwrap() error { return e.Err }

// Degrade wraps err as a DegradedError.
func Degrade(err error) error { return &DegradedError{Reason: err.Error(), Err: err} }

// Invalid returns a MediaError with a formatted reason.
func Invalid(format string, args ...any) error {
	return &MediaError{Reason: fmt.Sprintf(format, args...)}
}

// IsMediaError reports whether err is, or wraps, a MediaError.
func IsMediaError(err error) bool {
	var me *MediaError
	return errors.As(err, &me)
}

// StepType is a kind of step that pipelines name in `uses`, with the
// parameters it accepts under `with`. A pipeline may use one type several
// times with different parameters (two mp4 renditions, say); each use is
// a Step built by New.
type StepType struct {
	Name string
	// Doc is one line for `sluice pipelines list`.
	Doc    string
	Params []Param
	// Heavy puts the step in the heavy pool unless the pipeline says
	// otherwise: encodes that take minutes, not seconds.
	Heavy bool
	// New builds a step from validated parameters. It may reject
	// combinations of values that each passed validation; the error is
	// reported against the step's `with`.
	New func(p Params) (Step, error)
}

// Build validates raw parameters and builds a step.
func (t StepType) Build(raw map[string]any) (Step, error) {
	p, err := NewParams(t.Params, raw)
	if err != nil {
		return nil, err
	}
	return t.New(p)
}

// Registry maps step type names to step types. It is a value, built by
// whoever wires the process together, not a global.
type Registry struct {
	types map[string]StepType
}

// NewRegistry returns a registry holding the given step types.
func NewRegistry(types ...StepType) (*Registry, error) {
	r := &Registry{types: make(map[string]StepType)}
	for _, t := range types {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a step type; names must be unique.
func (r *Registry) Register(t StepType) error {
	if t.Name == "" || t.New == nil {
		return fmt.Errorf("pipeline: step type %q needs a name and a constructor", t.Name)
	}
	if _, dup := r.types[t.Name]; dup {
		return fmt.Errorf("pipeline: step type %q registered twice", t.Name)
	}
	r.types[t.Name] = t
	return nil
}

// Lookup returns the step type with the given name.
func (r *Registry) Lookup(name string) (StepType, bool) {
	t, ok := r.types[name]
	return t, ok
}

// Types returns the registered step types ordered by name.
func (r *Registry) Types() []StepType {
	out := make([]StepType, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b StepType) int { return strings.Compare(a.Name, b.Name) })
	return out
}
