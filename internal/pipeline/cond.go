package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
)

// Conditions (a step's `when`) are CEL expressions, the expression
// language of Kubernetes admission policies and Envoy, with two
// variables:
//
//	media: the probe summary, as the API shows it, plus has_video,
//	       has_audio, and video and audio (the first stream of each kind,
//	       absent when there is none):
//	       media.duration > 60.0 && media.video.height >= 720
//	asset: name, content_type, key, size and metadata (a map of strings):
//	       asset.metadata["tier"] == "pro"
//
// A condition that fails to evaluate (a field that is not there, say
// media.audio.codec on a silent clip) counts as false, and the step is
// skipped with the evaluation error as its reason; has(media.audio)
// tests for presence.
type condition struct {
	src string
	prg cel.Program
}

var (
	celEnvOnce sync.Once
	celEnv     *cel.Env
	celEnvErr  error
)

func env() (*cel.Env, error) {
	celEnvOnce.Do(func() {
		celEnv, celEnvErr = cel.NewEnv(
			cel.Variable("media", cel.MapType(cel.StringType, cel.DynType)),
			cel.Variable("asset", cel.MapType(cel.StringType, cel.DynType)),
			// media.duration > 60 compares a double with an int.
			cel.CrossTypeNumericComparisons(true),
		)
	})
	return celEnv, celEnvErr
}

// maxConditionCost bounds the work one evaluation may do, so that a
// condition cannot stall a worker.
const maxConditionCost = 100_000

func compileCondition(src string) (*condition, error) {
	if len(src) > 4096 {
		return nil, errors.New("expression longer than 4096 characters")
	}
	e, err := env()
	if err != nil {
		return nil, err
	}
	ast, iss := e.Compile(src)
	if iss.Err() != nil {
		return nil, fmt.Errorf("invalid expression: %s", oneLine(iss.Err().Error()))
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("expression gives %s, want a bool", t)
	}
	prg, err := e.Program(ast, cel.CostLimit(maxConditionCost))
	if err != nil {
		return nil, fmt.Errorf("invalid expression: %v", err)
	}
	return &condition{src: src, prg: prg}, nil
}

// eval reports whether the condition holds for the job.
func (c *condition) eval(job *Job) (bool, error) {
	out, _, err := c.prg.Eval(map[string]any{
		"media": mediaVars(job.Media),
		"asset": assetVars(job.Asset),
	})
	if err != nil {
		return false, fmt.Errorf("when %q: %v", c.src, err)
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("when %q: gave %v, not a bool", c.src, out.Value())
	}
	return b, nil
}

func mediaVars(m *Media) map[string]any {
	vars := map[string]any{"has_video": false, "has_audio": false}
	if m == nil {
		return vars
	}
	data, _ := json.Marshal(m)
	_ = json.Unmarshal(data, &vars)
	if v := m.Video(); v != nil {
		vars["has_video"] = true
		vars["video"] = streamVars(v)
	}
	if a := m.Audio(); a != nil {
		vars["has_audio"] = true
		vars["audio"] = streamVars(a)
	}
	return vars
}

func streamVars(s *Stream) map[string]any {
	var vars map[string]any
	data, _ := json.Marshal(s)
	_ = json.Unmarshal(data, &vars)
	return vars
}

func assetVars(a AssetInfo) map[string]any {
	md := map[string]any{}
	for k, v := range a.Metadata {
		md[k] = v
	}
	return map[string]any{
		"name":         a.Name,
		"content_type": a.ContentType,
		"key":          a.Key,
		"size":         a.Size,
		"metadata":     md,
	}
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.Join(strings.Fields(s), " ")
}
