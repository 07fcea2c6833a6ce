package pipeline

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Kind is the type of a step parameter.
type Kind int

const (
	String Kind = iota
	Int
	Float
	Bool
	Duration // "2s", "1m30s", or a number of seconds
	Strings  // a list of strings
	Ints     // a list of integers
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Int:
		return "integer"
	case Float:
		return "number"
	case Bool:
		return "boolean"
	case Duration:
		return "duration"
	case Strings:
		return "list of strings"
	case Ints:
		return "list of integers"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Param declares one parameter a step type accepts under `with`.
type Param struct {
	Name string
	Kind Kind
	// Default is used when the pipeline does not set the parameter. Its Go
	// type matches Kind: string, int, float64, bool, time.Duration,
	// []string or []int. Nil with Required false means "unset": the
	// accessor returns the zero value.
	Default  any
	Required bool
	// Enum lists the allowed values of a String (or of each element of
	// Strings), when not empty.
	Enum []string
	// Min and Max bound Int, Float and Duration (in seconds) values and
	// each element of Ints, when Max > Min.
	Min, Max float64
	// MaxItems bounds the length of list values (0: 16).
	MaxItems int
	Doc      string
}

// Params are a step's validated parameter values, defaults filled in.
// Steps read them with the typed accessors, which panic on a name the
// step type did not declare with that kind: a programming error, caught
// by the step's own tests.
type Params struct {
	values map[string]any
}

// NewParams validates raw values (as decoded from YAML or JSON: strings,
// ints, floats, bools and lists of those) against decl.
func NewParams(decl []Param, raw map[string]any) (Params, error) {
	p := Params{values: make(map[string]any, len(decl))}
	known := make(map[string]bool, len(decl))
	for _, d := range decl {
		known[d.Name] = true
		v, ok := raw[d.Name]
		if !ok || v == nil {
			if d.Required {
				return p, &ParamError{Param: d.Name, Msg: "is required"}
			}
			if d.Default != nil {
				p.values[d.Name] = d.Default
			}
			continue
		}
		cv, err := convert(d, v)
		if err != nil {
			return p, &ParamError{Param: d.Name, Msg: err.Error()}
		}
		p.values[d.Name] = cv
	}
	var unknown []string
	for name := range raw {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		names := make([]string, 0, len(decl))
		for _, d := range decl {
			names = append(names, d.Name)
		}
		msg := "unknown parameter"
		if len(names) > 0 {
			msg += " (known: " + strings.Join(names, ", ") + ")"
		} else {
			msg += " (the step takes none)"
		}
		return p, &ParamError{Param: unknown[0], Msg: msg}
	}
	return p, nil
}

// ParamError names the parameter at fault.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Param + ": " + e.Msg }

func convert(d Param, v any) (any, error) {
	switch d.Kind {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, wantGot(d.Kind, v)
		}
		return s, checkEnum(d, s)
	case Int:
		n, err := toInt(v)
		if err != nil {
			return nil, err
		}
		return n, checkRange(d, float64(n))
	case Float:
		f, ok := toFloat(v)
		if !ok {
			return nil, wantGot(d.Kind, v)
		}
		return f, checkRange(d, f)
	case Bool:
		b, ok := v.(bool)
		if !ok {
			return nil, wantGot(d.Kind, v)
		}
		return b, nil
	case Duration:
		dur, err := toDuration(v)
		if err != nil {
			return nil, err
		}
		return dur, checkRange(d, dur.Seconds())
	case Strings, Ints:
		list, ok := v.([]any)
		if !ok {
			// A single value stands for a list of one.
			list = []any{v}
		}
		maxItems := d.MaxItems
		if maxItems <= 0 {
			maxItems = 16
		}
		if len(list) == 0 {
			return nil, fmt.Errorf("want a non-empty %s", d.Kind)
		}
		if len(list) > maxItems {
			return nil, fmt.Errorf("at most %d items, got %d", maxItems, len(list))
		}
		if d.Kind == Strings {
			out := make([]string, len(list))
			for i, e := range list {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("item %d: %w", i+1, wantGot(String, e))
				}
				if err := checkEnum(d, s); err != nil {
					return nil, fmt.Errorf("item %d: %w", i+1, err)
				}
				out[i] = s
			}
			return out, nil
		}
		out := make([]int, len(list))
		for i, e := range list {
			n, err := toInt(e)
			if err == nil {
				err = checkRange(d, float64(n))
			}
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i+1, err)
			}
			out[i] = n
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported kind %v", d.Kind)
}

func wantGot(k Kind, v any) error {
	article := "a"
	if k == Int {
		article = "an"
	}
	return fmt.Errorf("want %s %s, got %s", article, k, describe(v))
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	case bool:
		return fmt.Sprintf("%t", v)
	}
	return fmt.Sprintf("%v", v)
}

func toInt(v any) (int, error) {
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		return int(n), nil
	case uint64:
		if n <= math.MaxInt32 {
			return int(n), nil
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32 {
			return int(n), nil
		}
	}
	return 0, wantGot(Int, v)
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n) && !math.IsInf(n, 0)
	}
	return 0, false
}

func toDuration(v any) (time.Duration, error) {
	if s, ok := v.(string); ok {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("want a duration such as \"2s\" or \"1m30s\", got %q", s)
		}
		return d, nil
	}
	if f, ok := toFloat(v); ok && math.Abs(f) < 1e9 {
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, wantGot(Duration, v)
}

func checkEnum(d Param, s string) error {
	if len(d.Enum) > 0 && !slices.Contains(d.Enum, s) {
		return fmt.Errorf("%q is not one of %s", s, strings.Join(d.Enum, ", "))
	}
	return nil
}

func checkRange(d Param, f float64) error {
	if d.Max > d.Min && (f < d.Min || f > d.Max) {
		return fmt.Errorf("%v is out of range [%v, %v]", f, d.Min, d.Max)
	}
	return nil
}

func (p Params) get(name string) any { return p.values[name] }

// Has reports whether the parameter has a value (set or defaulted).
func (p Params) Has(name string) bool { _, ok := p.values[name]; return ok }

// String returns a String parameter ("" when unset).
func (p Params) String(name string) string { s, _ := p.get(name).(string); return s }

// Int returns an Int parameter (0 when unset).
func (p Params) Int(name string) int { n, _ := p.get(name).(int); return n }

// Float returns a Float parameter (0 when unset).
func (p Params) Float(name string) float64 { f, _ := p.get(name).(float64); return f }

// Bool returns a Bool parameter (false when unset).
func (p Params) Bool(name string) bool { b, _ := p.get(name).(bool); return b }

// Duration returns a Duration parameter (0 when unset).
func (p Params) Duration(name string) time.Duration { d, _ := p.get(name).(time.Duration); return d }

// Strings returns a Strings parameter (nil when unset).
func (p Params) Strings(name string) []string { s, _ := p.get(name).([]string); return s }

// Ints returns an Ints parameter (nil when unset).
func (p Params) Ints(name string) []int { s, _ := p.get(name).([]int); return s }
