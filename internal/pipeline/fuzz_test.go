package pipeline_test

import (
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// FuzzLoad feeds arbitrary bytes to the pipelines loader: it must return
// pipelines or an error, never panic or hang, and every error must name
// the file.
func FuzzLoad(f *testing.F) {
	f.Add(string(pipeline.BuiltinYAML))
	f.Add(probeThumb)
	f.Add("pipelines:\n  - {name: p, steps: [{id: a, uses: fake, with: {id: a}, needs: [b]}, {id: b, uses: fake, with: {id: b}, needs: [a]}]}\n")
	f.Add("pipelines:\n  - extends: p\n    disable: [x]\n")
	f.Add("pipelines:\n  - name: p\n    steps:\n      - uses: thumb\n        when: 'media.duration > 1 && asset.metadata[\"k\"] == \"v\"'\n")
	f.Add("pipelines: [{name: p, steps: [{uses: fake, with: {id: x, sleep: [1, 2]}}]}]")
	f.Add("&a [*a, *a]")
	f.Fuzz(func(t *testing.T, data string) {
		set := pipeline.NewSet((&testSteps{}).registry(t))
		err := set.Load("fuzz.yaml", []byte(data))
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error without the file name: %v", err)
		}
		if err == nil {
			for _, p := range set.All() {
				if len(p.Steps) == 0 {
					t.Fatalf("pipeline %q loaded with no steps", p.Name)
				}
			}
		}
	})
}
