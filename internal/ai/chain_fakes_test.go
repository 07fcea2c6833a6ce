package ai_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/ai"
	"github.com/sluice-media/sluice/internal/ai/aitest"
)

// TestChainAgainstFakes runs the gateway over the real providers and the
// fake servers of both remote APIs: Workers AI first, OpenAI as fallback.
// It checks the fallback on a dead provider, the breaker that then skips
// it without a call, the cache that answers a repeat with no call, and a
// slow provider cut off by its timeout.
func TestChainAgainstFakes(t *testing.T) {
	cf := aitest.NewWorkersAI(t, aitest.WorkersAIOptions{APIKey: "cf-token", AccountID: "acct"})
	oa := aitest.NewOpenAI(t, aitest.OpenAIOptions{APIKey: "sk-key"})
	first, err := ai.NewWorkersAI(ai.ProviderConfig{Name: "cf", Type: "workers-ai", BaseURL: cf.BaseURL(), APIKey: "cf-token", AccountID: "acct"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := ai.NewOpenAI(ai.ProviderConfig{Name: "oa", Type: "openai", BaseURL: oa.BaseURL(), APIKey: "sk-key"})
	if err != nil {
		t.Fatal(err)
	}
	cache, err := ai.NewFileCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	limits := ai.DefaultLimits
	limits.Retries, limits.BreakerFailures, limits.BreakerCooldown, limits.Timeout = 1, 2, time.Hour, 2*time.Second
	g, err := ai.New(ai.Config{
		Chains: map[ai.Task][]string{ai.TaskSummarize: {"cf", "oa"}},
		Limits: map[string]ai.Limits{"cf": limits, "oa": limits},
	}, []ai.Provider{first, second}, cache, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	summarize := func(text string) (ai.Meta, error) {
		_, m, err := g.Summarize(ctx, ai.SummarizeRequest{Text: text, MaxTokens: 64}, ai.Call{AssetID: "a"})
		return m, err
	}

	// Workers AI is down: 503s. The first call tries it twice (one
	// retry), then OpenAI answers; two failures open its breaker.
	cf.FailNext(100, http.StatusServiceUnavailable)
	for i, text := range []string{"one", "two"} {
		m, err := summarize(text)
		if err != nil || m.Provider != "oa" || len(m.Skipped) != 1 || m.Skipped[0].Provider != "cf" {
			t.Fatalf("call %d: provider %q, skipped %+v, err %v; want oa after cf failed", i, m.Provider, m.Skipped, err)
		}
	}
	// The second call skipped it without a request: its breaker is open.
	if got := cf.Calls(); got != 2 {
		t.Errorf("Workers AI requests = %d, want 2 (the first call and its retry)", got)
	}
	// A repeat is answered from the cache: no call anywhere.
	before := oa.Calls()
	m, err := summarize("one")
	if err != nil || !m.Cached || oa.Calls() != before || cf.Calls() != 2 {
		t.Errorf("repeat: cached %v, err %v, OpenAI calls %d -> %d", m.Cached, err, before, oa.Calls())
	}
	// OpenAI gets slow beyond its timeout too: every provider fails, and
	// the error says why for each.
	oa.SetLatency(time.Minute)
	_, err = summarize("four")
	var chain *ai.ChainError
	if !errors.As(err, &chain) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ai.ErrOpen) {
		t.Errorf("all failing: err = %v, want a ChainError with the open breaker and the timeout", err)
	}
}
