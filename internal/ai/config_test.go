package ai

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const cfgSecret = "sk-test-0123456789abcdef"

func cfgEnv(name string) string {
	switch name {
	case "OPENAI_API_KEY":
		return cfgSecret
	case "CF_ACCOUNT_ID":
		return "acc-123"
	}
	return ""
}

func writeCfg(t *testing.T, dir, yaml string) string {
	t.Helper()
	p := filepath.Join(dir, "ai.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodCfg = `
cache_dir: /var/cache/sluice-ai
health_ttl: 10s
providers:
  - name: openai
    type: openai
    base_url: https://api.openai.com/v1
    api_key_env: OPENAI_API_KEY
    models:
      transcribe: whisper-1
      describe: gpt-4o-mini
      summarize: gpt-4o-mini
    limits:
      concurrency: 8
      rate_per_second: 2.5
      timeout: 90s
      audio_timeout_factor: 0.25
      retries: 3
      breaker: {failures: 4, cooldown: 2m}
  - name: cloudflare
    type: workers-ai
    account_id_env: CF_ACCOUNT_ID
    api_key_file: cf.key
    models:
      transcribe: "@cf/openai/whisper"
      tag: "@cf/microsoft/resnet-50"
  - name: tesseract
    type: tesseract
    command: /usr/bin/tesseract
    languages: [eng, deu]
  - name: nsfwjs
    type: nsfwjs
chains:
  transcribe: [cloudflare, openai]
budgets:
  per_asset: {audio_seconds: 7200, images: 300, tokens: 100000}
  per_key_per_day:
    audio_seconds: 36000.5
    images: 5000
`

func TestConfigLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cf.key"), []byte("cf-token-xyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, pcs, err := LoadConfig(writeCfg(t, dir, goodCfg), cfgEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(pcs) != 4 {
		t.Fatalf("providers = %v, want 4", pcs)
	}
	oa, cf, tess := pcs[0], pcs[1], pcs[2]
	if oa.Name != "openai" || oa.Type != "openai" || oa.BaseURL != "https://api.openai.com/v1" || oa.APIKey != cfgSecret {
		t.Errorf("openai = %v (key from env: %v)", oa, oa.APIKey == cfgSecret)
	}
	if oa.Models[TaskDescribe] != "gpt-4o-mini" || len(oa.Models) != 3 {
		t.Errorf("openai models = %v", oa.Models)
	}
	if cf.APIKey != "cf-token-xyz" || cf.AccountID != "acc-123" {
		t.Errorf("cloudflare: key from file %v, account %q", cf.APIKey == "cf-token-xyz", cf.AccountID)
	}
	if tess.Command != "/usr/bin/tesseract" || !slices.Equal(tess.Languages, []string{"eng", "deu"}) {
		t.Errorf("tesseract = %+v", tess)
	}
	wantLim := Limits{Concurrency: 8, RatePerSecond: 2.5, Burst: 2, Timeout: 90 * time.Second,
		AudioTimeoutFactor: 0.25, Retries: 3, BreakerFailures: 4, BreakerCooldown: 2 * time.Minute}
	if got := cfg.Limits["openai"]; got != wantLim {
		t.Errorf("openai limits = %+v, want %+v", got, wantLim)
	}
	if got := cfg.Limits["cloudflare"]; got != DefaultLimits {
		t.Errorf("cloudflare limits = %+v, want the defaults", got)
	}
	wantChains := map[Task][]string{
		TaskTranscribe: {"cloudflare", "openai"}, // as given
		TaskDescribe:   {"openai"},               // from models
		TaskSummarize:  {"openai"},
		TaskTag:        {"cloudflare", "nsfwjs"}, // nsfwjs has no models: its own tasks
		TaskModerate:   {"nsfwjs"},
		TaskOCR:        {"tesseract"},
	}
	for _, task := range Tasks {
		if got := cfg.Chains[task]; !slices.Equal(got, wantChains[task]) {
			t.Errorf("chain %s = %v, want %v", task, got, wantChains[task])
		}
	}
	wantBudgets := Budgets{
		PerAsset:  Budget{AudioSeconds: 7200, Images: 300, Tokens: 100000},
		PerKeyDay: Budget{AudioSeconds: 36000.5, Images: 5000},
	}
	if cfg.Budgets != wantBudgets {
		t.Errorf("budgets = %+v, want %+v", cfg.Budgets, wantBudgets)
	}
	if cfg.CacheDir != "/var/cache/sluice-ai" || cfg.HealthTTL != 10*time.Second {
		t.Errorf("cache_dir %q, health_ttl %v", cfg.CacheDir, cfg.HealthTTL)
	}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}

	// The loaded configuration builds a gateway.
	providers, err := NewProviders(pcs)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, providers, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if got := g.Providers(TaskTranscribe); !slices.Equal(got, []string{"cloudflare", "openai"}) {
		t.Errorf("gateway transcribe chain = %v", got)
	}
}

func TestConfigDefault(t *testing.T) {
	cfg, pcs, err := LoadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	providers, err := NewProviders(pcs)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, providers, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	got := map[Task][]string{}
	for _, task := range Tasks {
		if g.Configured(task) {
			got[task] = g.Providers(task)
		}
	}
	want := map[Task][]string{TaskOCR: {"tesseract"}, TaskModerate: {"nsfwjs"}, TaskTag: {"nsfwjs"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("default chains = %v, want %v", got, want)
	}
}

func TestConfigErrorsNameFileAndField(t *testing.T) {
	const head = "providers:\n  - name: openai\n    type: openai\n"
	for _, tc := range []struct {
		name, yaml, field, msg string
	}{
		{"no providers", "chains: {}\n", "providers", "missing"},
		{"unknown top field", head + "cache: x\n", "cache", "unknown field"},
		{"unknown type", "providers:\n  - name: x\n    type: gemini\n", "providers[0].type", `unknown type "gemini"`},
		{"no name", "providers:\n  - type: openai\n", "providers[0].name", "missing"},
		{"bad name", "providers:\n  - name: a b\n    type: openai\n", "providers[0].name", "not a valid name"},
		{"duplicate", head + "  - name: openai\n    type: openai\n", "providers[1].name", "defined twice"},
		{"unset env", head + "    api_key_env: NOPE_KEY\n", "providers[0].api_key_env", "NOPE_KEY is not set"},
		{"missing key file", head + "    api_key_file: /nonexistent/key\n", "providers[0].api_key_file", "no such file"},
		{"both key sources", head + "    api_key_env: OPENAI_API_KEY\n    api_key_file: k\n", "providers[0].api_key_file", "not both"},
		{"literal key", head + "    api_key: sk-literal-secret\n", "providers[0].api_key", "not read from the configuration file"},
		{"model task", head + "    models: {speak: tts-1}\n", "providers[0].models.speak", "unknown task"},
		{"timeout", head + "    limits: {timeout: soon}\n", "providers[0].limits.timeout", "want a duration"},
		{"retries", head + "    limits: {retries: 99}\n", "providers[0].limits.retries", "out of range"},
		{"concurrency", head + "    limits: {concurrency: many}\n", "providers[0].limits.concurrency", "whole number"},
		{"breaker", head + "    limits: {breaker: {failures: 0}}\n", "providers[0].limits.breaker.failures", "out of range"},
		{"cooldown", head + "    limits: {breaker: {cooldown: -1s}}\n", "providers[0].limits.breaker.cooldown", "0 or more"},
		{"workers-ai account", "providers:\n  - name: cf\n    type: workers-ai\n", "providers[0].account_id", "missing"},
		{"chain task", head + "chains: {dance: [openai]}\n", "chains.dance", "unknown task"},
		{"chain provider", head + "chains: {transcribe: [openai, groq]}\n", "chains.transcribe[1]", `no provider named "groq"`},
		{"chain twice", head + "chains: {transcribe: [openai, openai]}\n", "chains.transcribe[1]", "listed twice"},
		{"budget", head + "budgets: {per_asset: {audio_minutes: 5}}\n", "budgets.per_asset.audio_minutes", "unknown field"},
		{"budget value", head + "budgets: {per_key_per_day: {images: -3}}\n", "budgets.per_key_per_day.images", "out of range"},
		{"not a mapping", head + "budgets: [1]\n", "budgets", "want a mapping"},
		{"yaml", "providers: [\n", "", "line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeCfg(t, t.TempDir(), tc.yaml)
			_, _, err := LoadConfig(path, cfgEnv)
			if err == nil {
				t.Fatal("LoadConfig accepted the file")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+":") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			if tc.field != "" && !strings.Contains(msg, ": "+tc.field+": ") {
				t.Errorf("error %q does not name the field %s", msg, tc.field)
			}
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("error %q does not say %q", msg, tc.msg)
			}
			if strings.Contains(msg, "sk-literal-secret") {
				t.Errorf("error %q repeats the key from the file", msg)
			}
		})
	}
}

func TestConfigSecretNeverPrinted(t *testing.T) {
	dir := t.TempDir()
	// A good provider with a key, and an error elsewhere in the file.
	path := writeCfg(t, dir, goodCfg+"  - name: broken\n    type: openai\n    api_key_env: OPENAI_API_KEY\n    limits: {timeout: x}\n")
	_, _, err := LoadConfig(path, cfgEnv)
	if err == nil {
		t.Fatal("LoadConfig accepted a bad timeout")
	}
	if strings.Contains(err.Error(), cfgSecret) {
		t.Errorf("error shows the API key: %v", err)
	}

	os.WriteFile(filepath.Join(dir, "cf.key"), []byte("cf-token-xyz"), 0o600)
	_, pcs, err := LoadConfig(writeCfg(t, dir, goodCfg), cfgEnv)
	if err != nil {
		t.Fatal(err)
	}
	if pcs[0].APIKey != cfgSecret {
		t.Fatal("api_key_env was not read through getenv")
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "provider", pcs[0], "all", pcs)
	for _, s := range []string{
		fmt.Sprint(pcs), fmt.Sprintf("%v", pcs[0]), fmt.Sprintf("%+v", pcs[0]), fmt.Sprintf("%#v", pcs[0]),
		fmt.Sprintf("%+v", pcs), logs.String(),
	} {
		if strings.Contains(s, cfgSecret) || strings.Contains(s, "cf-token-xyz") {
			t.Errorf("printed configuration shows a key: %s", s)
		}
	}
	if !strings.Contains(fmt.Sprint(pcs[0]), "redacted") {
		t.Errorf("printed provider %q does not say a key is set", fmt.Sprint(pcs[0]))
	}
}

func TestNewProviderUnknownType(t *testing.T) {
	if _, err := NewProvider(ProviderConfig{Name: "x", Type: "gemini"}); err == nil || !strings.Contains(err.Error(), `"gemini"`) {
		t.Errorf("NewProvider: %v, want unknown type", err)
	}
}
