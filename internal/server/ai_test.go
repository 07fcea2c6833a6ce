package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/ai/aitest"
	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// fakeOpenAI starts a fake of the OpenAI API and returns it with a test
// configuration whose only AI provider it is, for the given models.
func fakeOpenAI(t *testing.T, models string) (*aitest.OpenAI, config.Config) {
	fake := aitest.NewOpenAI(t, aitest.OpenAIOptions{APIKey: "sk-test-secret"})
	t.Setenv("TEST_OPENAI_KEY", "sk-test-secret")
	cfg := testConfig(t)
	cfg.AIConfig = writePipelines(t, `
providers:
  - name: fake-openai
    type: openai
    base_url: `+fake.BaseURL()+`
    api_key_env: TEST_OPENAI_KEY
    models: `+models+`
    limits: {retries: 1, timeout: 10s, breaker: {failures: 50, cooldown: 1s}}
`)
	return fake, cfg
}

// TestEnrichment runs transcript, summary and describe against a fake
// OpenAI-compatible API: results land as outputs; when the provider
// fails, the steps end degraded and the asset still succeeds with its
// media outputs; a step with no provider ends skipped with the reason;
// a reprocess of the degraded steps fills them in.
func TestEnrichment(t *testing.T) {
	fake, cfg := fakeOpenAI(t, "{transcribe: whisper-1, summarize: gpt-4o-mini, describe: gpt-4o-mini}")
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: enrich
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: transcript
      - uses: summary
        needs: [transcript]
      - uses: describe
        with: {frames: 2}
      - uses: tags
        with: {}
`)}
	h := start(t, cfg)
	clip := mediatest.Generate(t, t.TempDir(), "talk", mediatest.Clip{Width: 320, Height: 240, Duration: 3, Video: true, Audio: true})

	id := h.uploadPut(t, clip)
	a := h.wait(t, id)
	if a.Status != wire.StatusSucceeded || len(a.Degraded) != 0 {
		t.Fatalf("asset: %s %q, degraded %+v; steps %+v", a.Status, a.Error, a.Degraded, a.Steps)
	}
	steps := stepStates(a)
	for _, s := range []string{"transcript", "summary", "describe"} {
		if steps[s].Status != wire.StatusSucceeded {
			t.Errorf("step %s = %+v", s, steps[s])
		}
	}
	_, body := h.get(t, output(t, a, "transcript.json").URL, nil)
	var tr struct {
		Provider string
		Text     string
		Segments []struct{ Start, End float64 }
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Provider != "fake-openai" || tr.Text != aitest.SampleTranscript().Text() || len(tr.Segments) == 0 {
		t.Errorf("transcript.json = %s (%v)", body, err)
	}
	if _, vtt := h.get(t, output(t, a, "transcript.vtt").URL, nil); !strings.HasPrefix(string(vtt), "WEBVTT\n") {
		t.Errorf("transcript.vtt = %q", vtt)
	}
	if _, sum := h.get(t, output(t, a, "summary.json").URL, nil); !strings.Contains(string(sum), `"provider": "fake-openai"`) {
		t.Errorf("summary.json = %s", sum)
	}
	// tags: the fake serves no tag model and the local classifier may
	// not be installed here; either way the step does not fail the asset.
	if s := steps["tags"]; s.Status == wire.StatusFailed {
		t.Errorf("tags failed: %+v", s)
	}

	// The provider goes down: every call fails.
	calls := fake.Calls()
	fake.FailNext(1000, http.StatusServiceUnavailable)
	// Another clip: the same audio would be answered from the cache.
	other := mediatest.Generate(t, t.TempDir(), "other", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true})
	id2 := h.uploadPut(t, other)
	a2 := h.wait(t, id2)
	if a2.Status != wire.StatusSucceeded {
		t.Fatalf("asset with a dead provider: %s %q, want succeeded", a2.Status, a2.Error)
	}
	if fake.Calls() == calls {
		t.Fatal("the provider was not called")
	}
	missing := map[string]string{}
	for _, m := range a2.Degraded {
		missing[m.Step] = m.Reason
	}
	for _, s := range []string{"transcript", "describe"} {
		if !strings.Contains(missing[s], "HTTP 503") || strings.Contains(missing[s], "sk-test-secret") {
			t.Errorf("degraded %s: %q, want the provider's 503 (and no key)", s, missing[s])
		}
	}
	if s := stepStates(a2)["summary"]; s.Status != "skipped" || s.Reason != "needs transcript, which was degraded" {
		t.Errorf("summary after a degraded transcript = %+v", s)
	}
	output(t, a2, "thumbnail.jpg") // media outputs are kept

	// It comes back; a reprocess of the missing steps fills them in.
	fake.ClearFaults()
	if _, err := h.client.Reprocess(ctxT(t, 30*time.Second), id2, []string{"transcript", "summary", "describe"}); err != nil {
		t.Fatal(err)
	}
	a3 := h.wait(t, id2)
	if a3.Status != wire.StatusSucceeded || len(a3.Degraded) != 0 {
		t.Errorf("after reprocess: %s, degraded %+v", a3.Status, a3.Degraded)
	}
	output(t, a3, "transcript.json")
	output(t, a3, "summary.json")
}

// TestQuarantine: a moderation step under a quarantine policy holds a
// flagged asset's outputs back from delivery until it is released.
func TestQuarantine(t *testing.T) {
	fake := aitest.NewOpenAI(t, aitest.OpenAIOptions{
		Moderate: func(text string, images [][]byte) map[string]float64 { return map[string]float64{"violence": 0.91} },
	})
	cfg := testConfig(t)
	cfg.AIConfig = writePipelines(t, `
providers:
  - name: mod
    type: openai
    base_url: `+fake.BaseURL()+`
    models: {moderate: omni-moderation-latest}
`)
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: held
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: moderation
        with: {frames: 1, quarantine: true}
`)}
	h := start(t, cfg)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true})
	id := h.uploadPut(t, clip)
	a := h.wait(t, id)
	if a.Status != wire.StatusSucceeded || !strings.Contains(a.Quarantined, "violence 0.91") {
		t.Fatalf("asset: %s %q, quarantined %q", a.Status, a.Error, a.Quarantined)
	}
	thumb := output(t, a, "thumbnail.jpg")
	if r, body := h.get(t, thumb.URL, nil); r.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"quarantined"`) {
		t.Errorf("held output: %s %s, want 403 quarantined", r.Status, body)
	}
	if r, _ := h.get(t, h.URL()+"/v1/assets/"+id+"/thumbnail.jpg?width=64", nil); r.StatusCode != http.StatusForbidden {
		t.Errorf("held on-demand thumbnail: %s, want 403", r.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, h.URL()+"/v1/assets/"+id+"/release", nil)
	setHeaders(req, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("release: %s", resp.Status)
	}
	if r, _ := h.get(t, thumb.URL, nil); r.StatusCode != http.StatusOK {
		t.Errorf("released output: %s, want 200", r.Status)
	}
}

// TestAIQuota holds a key to its daily AI units: once they are used, its
// assets' AI steps end degraded with the reason (no provider is called),
// the media steps still run, and /v1/usage shows the units.
func TestAIQuota(t *testing.T) {
	fake, cfg := fakeOpenAI(t, "{transcribe: whisper-1}")
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: enrich
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: transcript
`)}
	h := start(t, cfg)
	k := h.newKey(t, wire.KeyRequest{Name: "ai", Scopes: []string{auth.ScopeUpload, auth.ScopeRead},
		Limits: wire.Limits{AIUnitsPerDay: 0.01}})
	c := client.New(h.URL(), k.Token)
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "talk", mediatest.Clip{Width: 320, Height: 240, Duration: 3, Video: true, Audio: true})
	ctx := ctxT(t, time.Minute)

	// The first transcript is allowed (nothing used yet) and charged by
	// the seconds of audio the provider billed (a unit per minute): over
	// the 0.01 allowed.
	first, err := c.UploadFile(ctx, clip, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if a := h.wait(t, first); a.Status != wire.StatusSucceeded || stepStates(a)["transcript"].Status != wire.StatusSucceeded {
		t.Fatalf("first asset: %s, steps %+v", a.Status, a.Steps)
	}
	u, err := c.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.AIUnits <= 0.01 || u.AIUnits > 1 {
		t.Errorf("AI units used = %g, want the few seconds of audio billed (over 0.01, under 1)", u.AIUnits)
	}
	calls := fake.Calls()
	// A different clip (no cached answer) is refused before any call.
	clip2 := mediatest.Generate(t, dir, "talk2", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true})
	second, err := c.UploadFile(ctx, clip2, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	a := h.wait(t, second)
	tr := stepStates(a)["transcript"]
	if a.Status != wire.StatusSucceeded || tr.Status != "degraded" || !strings.Contains(tr.Reason, "AI units") {
		t.Errorf("second asset: %s, transcript %+v; want succeeded with the transcript degraded by the quota", a.Status, tr)
	}
	if stepStates(a)["thumbnail"].Status != wire.StatusSucceeded {
		t.Errorf("media steps did not run: %+v", a.Steps)
	}
	if fake.Calls() != calls {
		t.Errorf("the provider was called %d more times after the quota ran out", fake.Calls()-calls)
	}
}
