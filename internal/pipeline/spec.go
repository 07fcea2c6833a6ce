package pipeline

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/bmatcuk/doublestar/v4"
)

// Pools a step may run in. The fast pool takes probes, thumbnails and
// other quick outputs of new uploads; the heavy pool takes encodes, so
// that a backlog of renditions never delays a thumbnail.
const (
	PoolFast  = "fast"
	PoolHeavy = "heavy"
)

// What a step's failure does to the rest of the job.
const (
	// OnErrorFail fails the asset (the default).
	OnErrorFail = "fail"
	// OnErrorSkip records the step as skipped, with the error as its
	// reason; steps that need it are skipped too.
	OnErrorSkip = "skip"
	// OnErrorContinue records the step as failed and goes on; steps that
	// need it still run.
	OnErrorContinue = "continue"
)

// Pipeline is a named DAG of steps and the assets it applies to.
type Pipeline struct {
	Name  string
	Doc   string
	Match Match
	// Delivery is how the outputs are served: "public" (anyone with the
	// URL), "private" (signed URLs only), or "" for the server's default.
	// An asset may choose for itself when uploaded.
	Delivery string
	Steps    []*StepSpec
	// Source is where the pipeline was defined ("builtin" or file:line).
	Source string
}

// Delivery modes of a pipeline's (or an asset's) outputs.
const (
	DeliveryPublic  = "public"
	DeliveryPrivate = "private"
)

// Match selects the assets a pipeline applies to. Every set field must
// match; an empty Match matches everything.
type Match struct {
	// ContentTypes are patterns such as "video/*" matched against the
	// asset's sniffed content type.
	ContentTypes []string
	// Keys are glob patterns ("uploads/**/*.mov") matched against the
	// object key.
	Keys []string
	// Metadata must all be present on the asset with these values.
	Metadata map[string]string
}

// Matches reports whether the asset is selected.
func (m Match) Matches(a AssetInfo) bool {
	if len(m.ContentTypes) > 0 && !slices.ContainsFunc(m.ContentTypes, func(p string) bool {
		ok, _ := path.Match(p, mediaType(a.ContentType))
		return ok
	}) {
		return false
	}
	if len(m.Keys) > 0 && !slices.ContainsFunc(m.Keys, func(p string) bool {
		ok, _ := doublestar.Match(p, a.Key)
		return ok
	}) {
		return false
	}
	for k, v := range m.Metadata {
		if got, ok := a.Metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mediaType drops parameters: "text/plain; charset=utf-8" -> "text/plain".
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.TrimSpace(ct))
}

// StepSpec is one step of a pipeline, as configured.
type StepSpec struct {
	// ID names the step within its pipeline: in `needs`, in the asset's
	// step list, and as the folder of its outputs when it differs from
	// Uses. Defaults to Uses.
	ID   string
	Uses string
	With map[string]any
	// Needs are the ids of steps that must finish first. Every step
	// implicitly needs the pipeline's probe step, when it has one.
	Needs []string
	// When is a CEL expression over `media` and `asset`; the step runs
	// only when it is true. Empty: always.
	When    string
	Timeout time.Duration // 0: the runner's default
	// Retries is how many more times a failed run is tried, with backoff.
	Retries int
	OnError string // OnErrorFail, OnErrorSkip or OnErrorContinue
	Pool    string // PoolFast or PoolHeavy
	Engine  string // "", "auto", "wasm" or "native"

	step Step
	when *condition
	// onErrorSet: the pipeline gave on_error (a degraded step then fails
	// the asset when it says fail).
	onErrorSet bool
	// heavy: this step runs in the heavy stage (it is in the heavy pool,
	// or needs, directly or not, a step that is).
	heavy bool
}

// Step returns the step built from the spec.
func (s *StepSpec) Step() Step { return s.step }

// Heavy reports whether the step runs in the heavy stage.
func (s *StepSpec) Heavy() bool { return s.heavy }

// outputPrefix is prepended to the names of the step's outputs.
func (s *StepSpec) outputPrefix() string {
	if s.ID == s.Uses {
		return ""
	}
	return s.ID + "/"
}

// Step returns the spec with the given id, or nil.
func (p *Pipeline) Step(id string) *StepSpec {
	for _, s := range p.Steps {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// HasHeavy reports whether any step runs in the heavy stage.
func (p *Pipeline) HasHeavy() bool {
	return slices.ContainsFunc(p.Steps, (*StepSpec).Heavy)
}

// needs returns the ids s waits for: its own needs plus the probe step.
func (p *Pipeline) needs(s *StepSpec) []string {
	out := slices.Clone(s.Needs)
	if probe := p.probeID(); probe != "" && s.ID != probe && !slices.Contains(out, probe) {
		out = append(out, probe)
	}
	return out
}

// probeID is the id of the pipeline's probe step, or "".
func (p *Pipeline) probeID() string {
	for _, s := range p.Steps {
		if s.Uses == "probe" {
			return s.ID
		}
	}
	return ""
}

// compile builds each step, compiles conditions, checks the DAG and
// works out stages. Errors are returned per step, keyed by the field at
// fault, for the loader to place in the file.
func (p *Pipeline) compile(reg *Registry) []fieldError {
	var errs []fieldError
	ids := map[string]int{}
	for i, s := range p.Steps {
		at := func(field, format string, args ...any) {
			errs = append(errs, fieldError{step: i, field: field, msg: fmt.Sprintf(format, args...)})
		}
		if s.ID == "" {
			s.ID = s.Uses
		}
		if !validID(s.ID) {
			at("id", "%q is not a valid step id (letters, digits, - and _, at most 64)", s.ID)
		}
		if j, dup := ids[s.ID]; dup {
			at("id", "step id %q is already used by step %d; give one of them another id", s.ID, j+1)
		}
		ids[s.ID] = i
		typ, ok := reg.Lookup(s.Uses)
		if !ok {
			at("uses", "unknown step %q (known: %s)", s.Uses, strings.Join(typeNames(reg), ", "))
		} else {
			if s.ID != s.Uses {
				if _, clash := reg.Lookup(s.ID); clash {
					at("id", "id %q is the name of another step type; pick another", s.ID)
				}
			}
			step, err := typ.Build(s.With)
			if err != nil {
				if pe, ok := err.(*ParamError); ok {
					at("with."+pe.Param, "%s", pe.Msg)
				} else {
					at("with", "%v", err)
				}
			}
			s.step = step
			if s.Pool == "" {
				heavy := typ.Heavy
				if h, ok := step.(HeavyStep); ok {
					heavy = h.IsHeavy()
				}
				s.Pool = PoolFast
				if heavy {
					s.Pool = PoolHeavy
				}
			}
		}
		if s.OnError == "" {
			s.OnError = OnErrorFail
		} else {
			s.onErrorSet = true
		}
		if !slices.Contains([]string{OnErrorFail, OnErrorSkip, OnErrorContinue}, s.OnError) {
			at("on_error", "%q is not one of fail, skip, continue", s.OnError)
		}
		if s.Pool != "" && s.Pool != PoolFast && s.Pool != PoolHeavy {
			at("pool", "%q is not one of fast, heavy", s.Pool)
		}
		if s.Engine != "" && !slices.Contains([]string{"auto", "wasm", "native"}, s.Engine) {
			at("engine", "%q is not one of auto, wasm, native", s.Engine)
		}
		if s.Retries < 0 || s.Retries > 10 {
			at("retries", "%d is out of range [0, 10]", s.Retries)
		}
		if s.Timeout < 0 {
			at("timeout", "must not be negative")
		}
		if s.When != "" {
			c, err := compileCondition(s.When)
			if err != nil {
				at("when", "%v", err)
			}
			s.when = c
		}
	}
	if len(p.Steps) == 0 {
		errs = append(errs, fieldError{step: -1, field: "steps", msg: "a pipeline needs at least one step"})
	}
	for i, s := range p.Steps {
		for _, n := range s.Needs {
			if _, ok := ids[n]; !ok {
				errs = append(errs, fieldError{step: i, field: "needs", msg: fmt.Sprintf("no step with id %q in this pipeline", n)})
			}
			if n == s.ID {
				errs = append(errs, fieldError{step: i, field: "needs", msg: "a step cannot need itself"})
			}
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if cycle := p.findCycle(); cycle != nil {
		i := ids[cycle[0]]
		return []fieldError{{step: i, field: "needs", msg: "cycle: " + strings.Join(cycle, " -> ")}}
	}
	p.markStages()
	return nil
}

// findCycle returns the ids along a cycle in the needs graph, or nil.
func (p *Pipeline) findCycle() []string {
	const (
		unseen = iota
		active
		finished
	)
	state := map[string]int{}
	var stack []string
	var visit func(id string) []string
	visit = func(id string) []string {
		switch state[id] {
		case active:
			i := slices.Index(stack, id)
			return append(slices.Clone(stack[i:]), id)
		case finished:
			return nil
		}
		state[id] = active
		stack = append(stack, id)
		for _, n := range p.needs(p.Step(id)) {
			if c := visit(n); c != nil {
				return c
			}
		}
		stack = stack[:len(stack)-1]
		state[id] = finished
		return nil
	}
	for _, s := range p.Steps {
		if c := visit(s.ID); c != nil {
			return c
		}
	}
	return nil
}

// markStages puts each step in the heavy stage when it is in the heavy
// pool or needs a step that is in the heavy stage.
func (p *Pipeline) markStages() {
	memo := map[string]bool{}
	var heavy func(s *StepSpec) bool
	heavy = func(s *StepSpec) bool {
		if h, ok := memo[s.ID]; ok {
			return h
		}
		h := s.Pool == PoolHeavy
		for _, n := range p.needs(s) {
			h = heavy(p.Step(n)) || h
		}
		memo[s.ID] = h
		return h
	}
	for _, s := range p.Steps {
		s.heavy = heavy(s)
	}
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func typeNames(reg *Registry) []string {
	var names []string
	for _, t := range reg.Types() {
		names = append(names, t.Name)
	}
	return names
}

// fieldError is a compile error of one field of one step (step -1: of
// the pipeline itself).
type fieldError struct {
	step  int
	field string
	msg   string
}
