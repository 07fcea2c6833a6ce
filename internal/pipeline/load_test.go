package pipeline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// TestValidation: every error names the file, the line and the field.
func TestValidation(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"not yaml", "pipelines: [", []string{"test.yaml: ", "line 1"}},
		{"empty", "", []string{"test.yaml: empty file"}},
		{"no pipelines key", "steps: []\n", []string{"test.yaml:1:1: steps: unknown field"}},
		{"pipelines not a list", "pipelines: {a: 1}\n", []string{"test.yaml:1:12: pipelines: want a list"}},
		{"unknown step", `
pipelines:
  - name: p
    steps:
      - uses: probe
      - uses: thumbnial
`, []string{"test.yaml:6:15: pipelines[0].steps[1](thumbnial).uses: unknown step \"thumbnial\" (known: encode, fake, panicky, probe, slow, thumb)"}},
		{"bad delivery", `
pipelines:
  - name: p
    delivery: secret
    steps:
      - uses: probe
`, []string{"test.yaml:4:15: pipelines[0].delivery: want public or private, not \"secret\""}},
		{"missing uses", `
pipelines:
  - name: p
    steps:
      - id: x
`, []string{"test.yaml:5:9: pipelines[0].steps[0].uses: missing"}},
		{"unknown field", `
pipelines:
  - name: p
    steps:
      - uses: probe
        retry: 3
`, []string{"test.yaml:6:9: pipelines[0].steps[0].retry: unknown field (known: id, uses, with, needs, when, timeout, retries, on_error, pool, engine)"}},
		{"cycle", `
pipelines:
  - name: p
    steps:
      - {id: a, uses: fake, with: {id: a}, needs: [b]}
      - {id: b, uses: fake, with: {id: b}, needs: [c]}
      - {id: c, uses: fake, with: {id: c}, needs: [a]}
`, []string{"test.yaml:5:51: pipelines[0].steps[0](a).needs: cycle: a -> b -> c -> a"}},
		{"self need", `
pipelines:
  - name: p
    steps:
      - {id: a, uses: fake, with: {id: a}, needs: [a]}
`, []string{"needs: a step cannot need itself"}},
		{"unknown need", `
pipelines:
  - name: p
    steps:
      - uses: probe
      - {id: a, uses: fake, with: {id: a}, needs: [prob]}
`, []string{`test.yaml:6:51: pipelines[0].steps[1](a).needs: no step with id "prob"`}},
		{"bad expression", `
pipelines:
  - name: p
    steps:
      - uses: probe
      - uses: thumb
        when: "media.duration >"
`, []string{"test.yaml:7:15: pipelines[0].steps[1](thumb).when: invalid expression"}},
		{"undeclared variable", `
pipelines:
  - name: p
    steps:
      - uses: thumb
        when: "duration > 3"
`, []string{"when: invalid expression", "undeclared reference to 'duration'"}},
		{"non-bool expression", `
pipelines:
  - name: p
    steps:
      - uses: thumb
        when: "1 + 2"
`, []string{"when: expression gives int, want a bool"}},
		{"bad parameter type", `
pipelines:
  - name: p
    steps:
      - uses: fake
        with:
          id: x
          sleep: soon
`, []string{`test.yaml:8:18: pipelines[0].steps[0](fake).with.sleep: want a duration such as "2s" or "1m30s", got "soon"`}},
		{"int for string list item", `
pipelines:
  - name: p
    steps:
      - uses: fake
        with: {id: x, fail_times: "three"}
`, []string{`with.fail_times: want an integer, got "three"`}},
		{"unknown parameter", `
pipelines:
  - name: p
    steps:
      - uses: fake
        with: {id: x, colour: red}
`, []string{"with.colour: unknown parameter (known: id, sleep, fail_times, media_error, outs, heavy, end)"}},
		{"missing required parameter", `
pipelines:
  - name: p
    steps:
      - uses: fake
`, []string{"with.id: is required"}},
		{"duplicate id", `
pipelines:
  - name: p
    steps:
      - uses: probe
      - uses: probe
`, []string{`test.yaml:6:9: pipelines[0].steps[1](probe).id: step id "probe" is already used by step 1`}},
		{"id shadowing a type", `
pipelines:
  - name: p
    steps:
      - {id: thumb, uses: fake, with: {id: x}}
`, []string{`id: id "thumb" is the name of another step type`}},
		{"bad enums", `
pipelines:
  - name: p
    steps:
      - {uses: probe, on_error: ignore, pool: medium, engine: gpu, retries: 99, timeout: -1s}
`, []string{
			`on_error: "ignore" is not one of fail, skip, continue`,
			`pool: "medium" is not one of fast, heavy`,
			`engine: "gpu" is not one of auto, wasm, native`,
			`retries: 99 is out of range [0, 10]`,
			`timeout: must not be negative`,
		}},
		{"no steps", "pipelines:\n  - name: p\n    steps: []\n", []string{"test.yaml:2:5: pipelines[0].steps: a pipeline needs at least one step"}},
		{"no name", "pipelines:\n  - steps: [{uses: probe}]\n", []string{"pipelines[0].name: missing"}},
		{"duplicate pipeline", "pipelines:\n  - {name: p, steps: [{uses: probe}]}\n  - {name: p, steps: [{uses: probe}]}\n", []string{`test.yaml:3:5: pipelines[1].name: pipeline "p" is defined twice`}},
		{"extends unknown", "pipelines:\n  - extends: nope\n", []string{`test.yaml:2:14: pipelines[0].extends: no pipeline "nope" is defined before this one`}},
		{"disable without extends", "pipelines:\n  - {name: p, disable: [x], steps: [{uses: probe}]}\n", []string{"pipelines[0].disable: disable needs extends"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set := pipeline.NewSet((&testSteps{}).registry(t))
			err := set.Load("test.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("loaded without error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, w)
				}
			}
			if len(set.All()) != 0 {
				t.Errorf("a file with errors added %d pipelines", len(set.All()))
			}
		})
	}
}

func TestLoadFields(t *testing.T) {
	set := pipeline.NewSet((&testSteps{}).registry(t))
	err := set.Load("test.yaml", []byte(`
pipelines:
  - name: clips
    doc: Short clips from the mobile app.
    match:
      content_types: ["video/*"]
      keys: ["uploads/mobile/**"]
      metadata: {app: mobile}
    steps:
      - uses: probe
      - id: a
        uses: fake
        with: {id: a, outs: [x.txt], sleep: 1.5}
        needs: [probe]
        when: media.duration > 1
        timeout: 90s
        retries: 2
        on_error: continue
        pool: heavy
        engine: native
`))
	if err != nil {
		t.Fatal(err)
	}
	p := set.Get("clips")
	if p == nil || p.Doc != "Short clips from the mobile app." || p.Source != "test.yaml:3" {
		t.Fatalf("pipeline = %+v", p)
	}
	a := p.Step("a")
	if a == nil || a.Uses != "fake" || a.When != "media.duration > 1" || a.Timeout != 90*time.Second ||
		a.Retries != 2 || a.OnError != "continue" || a.Pool != "heavy" || a.Engine != "native" || !a.Heavy() {
		t.Errorf("step a = %+v", a)
	}
	if probe := p.Step("probe"); probe.Pool != "fast" || probe.OnError != "fail" || probe.Heavy() {
		t.Errorf("probe defaults = %+v", probe)
	}
	for _, tt := range []struct {
		asset pipeline.AssetInfo
		want  bool
	}{
		{pipeline.AssetInfo{ContentType: "video/mp4", Key: "uploads/mobile/2026/a.mp4", Metadata: map[string]string{"app": "mobile"}}, true},
		{pipeline.AssetInfo{ContentType: "video/quicktime; codecs=x", Key: "uploads/mobile/a.mov", Metadata: map[string]string{"app": "mobile", "x": "y"}}, true},
		{pipeline.AssetInfo{ContentType: "audio/mpeg", Key: "uploads/mobile/a.mp3", Metadata: map[string]string{"app": "mobile"}}, false},
		{pipeline.AssetInfo{ContentType: "video/mp4", Key: "uploads/web/a.mp4", Metadata: map[string]string{"app": "mobile"}}, false},
		{pipeline.AssetInfo{ContentType: "video/mp4", Key: "uploads/mobile/a.mp4"}, false},
	} {
		if got := p.Match.Matches(tt.asset); got != tt.want {
			t.Errorf("Matches(%+v) = %v, want %v", tt.asset, got, tt.want)
		}
	}
}

// TestExtendsAndOrder: a configured pipeline replaces the built-in of its
// name in place; new ones are matched before the built-ins.
func TestExtendsAndOrder(t *testing.T) {
	set := pipeline.NewSet((&testSteps{}).registry(t))
	if err := set.LoadDefaults("base.yaml", []byte(`
pipelines:
  - name: video
    match: {content_types: ["video/*"]}
    delivery: private
    steps:
      - uses: probe
      - uses: thumb
      - uses: encode
  - name: any
    steps: [{uses: probe}]
`)); err != nil {
		t.Fatal(err)
	}
	if err := set.Load("mine.yaml", []byte(`
pipelines:
  - extends: video
    disable: [encode]
  - name: vip
    match: {metadata: {vip: "yes"}}
    steps: [{uses: probe}, {uses: encode}]
`)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range set.All() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "vip,video,any" {
		t.Errorf("order = %s, want vip,video,any", got)
	}
	v := set.Get("video")
	if len(v.Steps) != 2 || v.Step("encode") != nil || v.HasHeavy() {
		t.Errorf("video after disable: %d steps, heavy %v", len(v.Steps), v.HasHeavy())
	}
	if v.Delivery != pipeline.DeliveryPrivate {
		t.Errorf("video after extends: delivery %q, want the base's private", v.Delivery)
	}
	if got := set.Match(pipeline.AssetInfo{ContentType: "video/mp4"}); got.Name != "video" {
		t.Errorf("Match(video) = %s", got.Name)
	}
	if got := set.Match(pipeline.AssetInfo{ContentType: "video/mp4", Metadata: map[string]string{"vip": "yes"}}); got.Name != "vip" {
		t.Errorf("Match(vip video) = %s", got.Name)
	}
	if got := set.Match(pipeline.AssetInfo{ContentType: "text/plain"}); got.Name != "any" {
		t.Errorf("Match(text) = %s", got.Name)
	}
	err := set.Load("bad.yaml", []byte("pipelines:\n  - extends: video\n    disable: [nothing]\n"))
	if err == nil || !strings.Contains(err.Error(), `bad.yaml:3:14: pipelines[0].disable: no step "nothing" to disable`) {
		t.Errorf("disable of an unknown step: %v", err)
	}
}

// TestBuiltin: the built-in pipelines load with the step types they name.
func TestBuiltin(t *testing.T) {
	var types []pipeline.StepType
	for _, name := range []string{"probe", "thumbnail", "audio", "hls", "storyboard", "preview", "waveform", "analyze", "image",
		"ocr", "moderation", "tags", "describe", "transcript", "summary"} {
		types = append(types, pipeline.StepType{Name: name, Heavy: name == "hls",
			New: func(pipeline.Params) (pipeline.Step, error) { return slowStep{}, nil }})
	}
	reg, err := pipeline.NewRegistry(types...)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(mine, []byte("pipelines:\n  - extends: video\n    disable: [hls, preview]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set, err := pipeline.DefaultSet(reg, mine)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range set.All() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "video,audio,image,media" {
		t.Errorf("built-in pipelines = %s", got)
	}
	if v := set.Get("video"); v.Step("hls") != nil || v.Step("storyboard") == nil {
		t.Errorf("video after disabling hls: %v", v.Steps)
	}
	if _, err := pipeline.DefaultSet(reg, filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a missing pipelines file loaded")
	}
}

func TestParams(t *testing.T) {
	decl := []pipeline.Param{
		{Name: "width", Kind: pipeline.Int, Default: 640, Min: 16, Max: 4096},
		{Name: "quality", Kind: pipeline.Float, Min: 0, Max: 1},
		{Name: "format", Kind: pipeline.String, Default: "webp", Enum: []string{"webp", "gif"}},
		{Name: "every", Kind: pipeline.Duration, Default: 5 * time.Second},
		{Name: "loop", Kind: pipeline.Bool},
		{Name: "heights", Kind: pipeline.Ints, Default: []int{720, 360}, Min: 16, Max: 4320, MaxItems: 3},
		{Name: "tags", Kind: pipeline.Strings},
	}
	p, err := pipeline.NewParams(decl, map[string]any{"width": 320, "quality": 0.5, "every": "2s", "loop": true, "heights": []any{480}, "tags": "one"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Int("width") != 320 || p.Float("quality") != 0.5 || p.String("format") != "webp" || p.Duration("every") != 2*time.Second ||
		!p.Bool("loop") || len(p.Ints("heights")) != 1 || p.Ints("heights")[0] != 480 || p.Strings("tags")[0] != "one" {
		t.Errorf("params = %+v", p)
	}
	for raw, want := range map[string]map[string]any{
		"width: 8 is out of range [16, 4096]":                     {"width": 8},
		"width: want an integer, got 1.5":                         {"width": 1.5},
		`format: "png" is not one of webp, gif`:                   {"format": "png"},
		"heights: at most 3 items, got 4":                         {"heights": []any{1, 2, 3, 4}},
		"heights: item 2: 9999 is out of range [16, 4320]":        {"heights": []any{720, 9999}},
		`loop: want a boolean, got "yes"`:                         {"loop": "yes"},
		"heights: want a non-empty list of integers":              {"heights": []any{}},
		"quality: 2 is out of range [0, 1]":                       {"quality": 2},
		`every: want a duration such as "2s" or "1m30s", got "x"`: {"every": "x"},
	} {
		_, err := pipeline.NewParams(decl, want)
		if err == nil || err.Error() != raw {
			t.Errorf("NewParams(%v) = %v, want %q", want, err, raw)
		}
	}
}
