package pipeline

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The pipelines file format:
//
//	pipelines:
//	  - name: video
//	    match:
//	      content_types: ["video/*"]
//	      keys: ["uploads/**"]
//	      metadata: {tier: pro}
//	    steps:
//	      - uses: probe
//	      - uses: thumbnail
//	        with: {width: 320}
//	      - id: hls
//	        uses: hls
//	        when: media.duration > 1.0
//	        pool: heavy
//	        timeout: 30m
//	        retries: 1
//	        on_error: continue
//
//	  # Start from a pipeline defined earlier (a built-in one, say) and
//	  # turn steps off; the result replaces it.
//	  - extends: audio
//	    disable: [waveform]
//
// Every error names the file, line and field.

// BuiltinYAML is the default pipelines file, used with no configuration.
//
//go:embed builtin.yaml
var BuiltinYAML []byte

// Set is the pipelines a process runs, in the order they are matched:
// those from configuration files first, in file order, then the built-in
// ones (a configured pipeline with a built-in's name takes its place).
type Set struct {
	reg       *Registry
	pipelines []*Pipeline
	builtin   int // index of the first built-in pipeline
}

// NewSet returns an empty set whose steps come from reg.
func NewSet(reg *Registry) *Set { return &Set{reg: reg} }

// DefaultSet returns the built-in pipelines followed by those in files.
func DefaultSet(reg *Registry, files ...string) (*Set, error) {
	s := NewSet(reg)
	if err := s.LoadDefaults("builtin", BuiltinYAML); err != nil {
		return nil, fmt.Errorf("built-in pipelines: %w", err)
	}
	for _, f := range files {
		if err := s.LoadFile(f); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// LoadFile reads a pipelines file into the set.
func (s *Set) LoadFile(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("pipelines: %w", err)
	}
	return s.load(name, data, false)
}

// Load parses pipelines from data (named file in errors) into the set.
func (s *Set) Load(file string, data []byte) error { return s.load(file, data, false) }

// LoadDefaults parses default pipelines, which are matched after all
// others.
func (s *Set) LoadDefaults(file string, data []byte) error { return s.load(file, data, true) }

// All returns the pipelines in match order.
func (s *Set) All() []*Pipeline { return slices.Clone(s.pipelines) }

// Get returns the pipeline with the given name, or nil.
func (s *Set) Get(name string) *Pipeline {
	for _, p := range s.pipelines {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Match returns the first pipeline that matches the asset, or nil.
func (s *Set) Match(a AssetInfo) *Pipeline {
	for _, p := range s.pipelines {
		if p.Match.Matches(a) {
			return p
		}
	}
	return nil
}

// ConfigError is one error in a pipelines file.
type ConfigError struct {
	File         string
	Line, Column int
	// Field is the path to the field at fault, such as
	// "pipelines[0].steps[2].with.width" (indexes from 0).
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func (s *Set) load(file string, data []byte, builtin bool) error {
	var errs []error
	fail := func(n *yaml.Node, field, format string, args ...any) {
		ce := &ConfigError{File: file, Field: field, Msg: fmt.Sprintf(format, args...)}
		if n != nil {
			ce.Line, ce.Column = n.Line, n.Column
		}
		errs = append(errs, ce)
	}
	if len(data) > 1<<20 {
		fail(nil, "", "file larger than 1 MiB")
		return errors.Join(errs...)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml errors carry "line N:" already.
		fail(nil, "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return errors.Join(errs...)
	}
	if len(doc.Content) == 0 {
		fail(nil, "", "empty file: want a mapping with a pipelines list")
		return errors.Join(errs...)
	}
	root := doc.Content[0]
	fields := mapping(root, "", fail, "pipelines")
	list := fields["pipelines"]
	if list == nil {
		if root.Kind == yaml.MappingNode {
			fail(root, "pipelines", "missing: want a list of pipelines")
		}
		return errors.Join(errs...)
	}
	if list.Kind != yaml.SequenceNode {
		fail(list, "pipelines", "want a list")
		return errors.Join(errs...)
	}
	var loaded []*Pipeline
	names := map[string]bool{}
	for i, pn := range list.Content {
		at := fmt.Sprintf("pipelines[%d]", i)
		p, ok := s.parsePipeline(pn, at, file, fail)
		if !ok {
			continue
		}
		if names[p.Name] {
			fail(pn, at+".name", "pipeline %q is defined twice in this file", p.Name)
			continue
		}
		names[p.Name] = true
		loaded = append(loaded, p)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, p := range loaded {
		s.add(p, builtin)
	}
	return nil
}

func (s *Set) add(p *Pipeline, builtin bool) {
	for i, q := range s.pipelines {
		if q.Name == p.Name {
			s.pipelines[i] = p
			return
		}
	}
	if builtin {
		s.pipelines = append(s.pipelines, p)
		return
	}
	s.pipelines = slices.Insert(s.pipelines, s.builtin, p)
	s.builtin++
}

type failFunc func(n *yaml.Node, field, format string, args ...any)

// mapping returns the values of a mapping node by key, reporting keys not
// in allowed.
func mapping(n *yaml.Node, at string, fail failFunc, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		fail(n, at, "want a mapping")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		field := join(at, k.Value)
		if !slices.Contains(allowed, k.Value) {
			fail(k, field, "unknown field (known: %s)", strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			fail(k, field, "given twice")
			continue
		}
		out[k.Value] = v
	}
	return out
}

func join(at, field string) string {
	if at == "" {
		return field
	}
	return at + "." + field
}

func scalar(n *yaml.Node, at string, fail failFunc) (string, bool) {
	if n == nil {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		fail(n, at, "want a single value")
		return "", false
	}
	return n.Value, true
}

func stringList(n *yaml.Node, at string, fail failFunc) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		fail(n, at, "want a list of strings")
		return nil
	}
	var out []string
	for i, e := range n.Content {
		if e.Kind != yaml.ScalarNode {
			fail(e, fmt.Sprintf("%s[%d]", at, i), "want a string")
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

func (s *Set) parsePipeline(n *yaml.Node, at, file string, fail failFunc) (*Pipeline, bool) {
	nerr := 0
	f := func(n *yaml.Node, field, format string, args ...any) {
		nerr++
		fail(n, field, format, args...)
	}
	fields := mapping(n, at, f, "name", "doc", "extends", "disable", "match", "delivery", "steps")
	p := &Pipeline{Source: fmt.Sprintf("%s:%d", file, n.Line)}
	p.Name, _ = scalar(fields["name"], join(at, "name"), f)
	p.Doc, _ = scalar(fields["doc"], join(at, "doc"), f)
	p.Delivery, _ = scalar(fields["delivery"], join(at, "delivery"), f)
	if p.Delivery != "" && p.Delivery != DeliveryPublic && p.Delivery != DeliveryPrivate {
		f(fields["delivery"], join(at, "delivery"), "want public or private, not %q", p.Delivery)
	}
	base, _ := scalar(fields["extends"], join(at, "extends"), f)
	disable := stringList(fields["disable"], join(at, "disable"), f)
	var stepNodes []*yaml.Node // the node each step's errors point at
	if base != "" {
		b := s.Get(base)
		if b == nil {
			f(fields["extends"], join(at, "extends"), "no pipeline %q is defined before this one", base)
			return nil, false
		}
		if p.Name == "" {
			p.Name = b.Name
		}
		if p.Doc == "" {
			p.Doc = b.Doc
		}
		if p.Delivery == "" {
			p.Delivery = b.Delivery
		}
		p.Match = b.Match
		if fields["steps"] == nil {
			for _, st := range b.Steps {
				c := *st
				c.With = st.With
				p.Steps = append(p.Steps, &c)
				stepNodes = append(stepNodes, fields["extends"])
			}
		}
	} else if len(disable) > 0 {
		f(fields["disable"], join(at, "disable"), "disable needs extends")
	}
	if p.Name == "" {
		f(n, join(at, "name"), "missing: every pipeline needs a name")
	} else if !validID(p.Name) {
		f(fields["name"], join(at, "name"), "%q is not a valid name (letters, digits, - and _)", p.Name)
	}
	if m := fields["match"]; m != nil {
		p.Match = Match{}
		mf := mapping(m, join(at, "match"), f, "content_types", "keys", "metadata")
		p.Match.ContentTypes = stringList(mf["content_types"], join(at, "match.content_types"), f)
		p.Match.Keys = stringList(mf["keys"], join(at, "match.keys"), f)
		if md := mf["metadata"]; md != nil {
			if err := md.Decode(&p.Match.Metadata); err != nil {
				f(md, join(at, "match.metadata"), "want a mapping of strings")
			}
		}
	}
	if sn := fields["steps"]; sn != nil {
		if sn.Kind != yaml.SequenceNode {
			f(sn, join(at, "steps"), "want a list of steps")
		} else {
			for i, stn := range sn.Content {
				st := parseStep(stn, fmt.Sprintf("%s.steps[%d]", at, i), f)
				p.Steps = append(p.Steps, st)
				stepNodes = append(stepNodes, stn)
			}
		}
	}
	for _, id := range disable {
		i := slices.IndexFunc(p.Steps, func(s *StepSpec) bool { return s.ID == id || s.ID == "" && s.Uses == id })
		if i < 0 {
			f(fields["disable"], join(at, "disable"), "no step %q to disable", id)
			continue
		}
		p.Steps = slices.Delete(p.Steps, i, i+1)
		stepNodes = slices.Delete(stepNodes, i, i+1)
	}
	if nerr > 0 {
		return nil, false
	}
	for _, fe := range p.compile(s.reg) {
		node, field := n, join(at, fe.field)
		if fe.step >= 0 {
			node = stepNodes[fe.step]
			field = fmt.Sprintf("%s.steps[%d].%s", at, fe.step, fe.field)
			if node != nil && node.Kind == yaml.MappingNode {
				node = findField(node, fe.field)
			}
			if p.Steps[fe.step].ID != "" {
				field = fmt.Sprintf("%s.steps[%d](%s).%s", at, fe.step, p.Steps[fe.step].ID, fe.field)
			}
		}
		f(node, field, "%s", fe.msg)
	}
	return p, nerr == 0
}

// findField returns the node of a dotted field path in a step mapping
// (its value's node, or the key's for fields not set), falling back to
// the step itself.
func findField(n *yaml.Node, path string) *yaml.Node {
	cur := n
	for _, part := range strings.Split(path, ".") {
		if cur.Kind != yaml.MappingNode {
			return cur
		}
		var next *yaml.Node
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == part {
				next = cur.Content[i+1]
			}
		}
		if next == nil {
			return cur
		}
		cur = next
	}
	return cur
}

func parseStep(n *yaml.Node, at string, fail failFunc) *StepSpec {
	fields := mapping(n, at, fail, "id", "uses", "with", "needs", "when", "timeout", "retries", "on_error", "pool", "engine")
	s := &StepSpec{}
	s.ID, _ = scalar(fields["id"], join(at, "id"), fail)
	s.Uses, _ = scalar(fields["uses"], join(at, "uses"), fail)
	if s.Uses == "" && n.Kind == yaml.MappingNode {
		fail(n, join(at, "uses"), "missing: name the step type to use")
	}
	if w := fields["with"]; w != nil {
		if w.Kind != yaml.MappingNode {
			fail(w, join(at, "with"), "want a mapping of parameters")
		} else if err := w.Decode(&s.With); err != nil {
			fail(w, join(at, "with"), "%v", err)
		}
	}
	s.Needs = stringList(fields["needs"], join(at, "needs"), fail)
	s.When, _ = scalar(fields["when"], join(at, "when"), fail)
	if t := fields["timeout"]; t != nil {
		var raw any
		_ = t.Decode(&raw)
		d, err := toDuration(raw)
		if err != nil {
			fail(t, join(at, "timeout"), "%v", err)
		}
		if d > 24*time.Hour {
			fail(t, join(at, "timeout"), "at most 24h")
		}
		s.Timeout = d
	}
	if r := fields["retries"]; r != nil {
		var raw any
		_ = r.Decode(&raw)
		n, err := toInt(raw)
		if err != nil {
			fail(r, join(at, "retries"), "%v", err)
		}
		s.Retries = n
	}
	s.OnError, _ = scalar(fields["on_error"], join(at, "on_error"), fail)
	s.Pool, _ = scalar(fields["pool"], join(at, "pool"), fail)
	s.Engine, _ = scalar(fields["engine"], join(at, "engine"), fail)
	return s
}
