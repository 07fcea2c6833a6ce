package ai

import (
	"errors"
	"fmt"
	"github.com/sluice-media/sluice/internal/pipeline"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The AI configuration file:
//
//	cache_dir: /var/lib/sluice/ai-cache
//	health_ttl: 30s                   # how long a provider's Available answer is trusted
//	providers:
//	  - name: openai
//	    type: openai                  # openai, workers-ai, tesseract, nsfwjs
//	    base_url: https://api.openai.com/v1
//	    api_key_env: OPENAI_API_KEY   # or api_key_file: /run/secrets/openai
//	    models:
//	      transcribe: whisper-1
//	      describe: gpt-4o-mini
//	      summarize: gpt-4o-mini
//	    limits:
//	      concurrency: 4
//	      rate_per_second: 2
//	      burst: 4
//	      timeout: 60s
//	      audio_timeout_factor: 0.5   # transcription: timeout + 0.5 × audio duration
//	      retries: 2
//	      breaker: {failures: 5, cooldown: 30s}
//	  - name: cloudflare
//	    type: workers-ai
//	    account_id_env: CF_ACCOUNT_ID # or account_id: ...
//	    api_key_env: CF_API_TOKEN
//	    models: {transcribe: "@cf/openai/whisper"}
//	  - name: tesseract
//	    type: tesseract
//	    command: tesseract
//	    languages: [eng, deu]
//	chains:                           # per task, providers tried in order
//	  transcribe: [openai, cloudflare]
//	budgets:
//	  per_asset: {audio_seconds: 14400, images: 200, tokens: 200000}
//	  per_key_per_day: {audio_seconds: 36000, images: 5000, tokens: 2000000}
//
// A task with no chain is served by the providers whose models name it,
// in file order (tesseract and nsfwjs serve theirs without models).
// Secrets are never read from the file itself: api_key is refused.
// Relative api_key_file paths are relative to the file's directory.
// Every error names the file, line and field.

// Config is the gateway's configuration, apart from the providers
// themselves (ProviderConfig).
type Config struct {
	// Chains lists, per task, the names of the providers to try in order.
	// A task with no chain is not configured (ErrNotConfigured).
	Chains map[Task][]string
	// Limits per provider name; a provider with none gets DefaultLimits.
	Limits map[string]Limits
	// Budgets are checked before every call.
	Budgets Budgets
	// CacheDir is where the caller keeps the result cache
	// (NewFileCache); "" for the data directory's default.
	CacheDir string
	// HealthTTL is how long a provider's Available answer is trusted
	// (default 30s).
	HealthTTL time.Duration
}

// Limits bound the calls to one provider.
type Limits struct {
	// Concurrency is the most calls in flight at once.
	Concurrency int
	// RatePerSecond is the steady call rate allowed, with bursts of Burst
	// calls; 0 is unlimited.
	RatePerSecond float64
	Burst         int
	// Timeout bounds one call. For transcription it grows with the audio:
	// Timeout + AudioTimeoutFactor × the audio's duration.
	Timeout            time.Duration
	AudioTimeoutFactor float64
	// Retries is how many times a temporarily failed call is tried again
	// (0: none).
	Retries int
	// BreakerFailures consecutive failures open the provider's circuit
	// breaker; after BreakerCooldown one probe call may close it again.
	BreakerFailures int
	BreakerCooldown time.Duration
}

// DefaultLimits are the limits of a provider the configuration gives
// none for; fields a configuration leaves out keep these values.
var DefaultLimits = Limits{
	Concurrency:        4,
	Timeout:            60 * time.Second,
	AudioTimeoutFactor: 1,
	Retries:            2,
	BreakerFailures:    5,
	BreakerCooldown:    30 * time.Second,
}

// localLimits are the defaults of providers that run on this machine: as
// many calls as cores, and a retry only for a sidecar's restart.
func localLimits() Limits {
	l := DefaultLimits
	l.Concurrency = max(1, runtime.GOMAXPROCS(0))
	l.Timeout = 30 * time.Second
	l.Retries = 1
	return l
}

const defaultHealthTTL = 30 * time.Second

// Provider types NewProvider knows, and the tasks the local ones serve
// without a models entry.
var (
	providerTypes = []string{"openai", "workers-ai", "tesseract", "nsfwjs"}
	localTasks    = map[string][]Task{
		"tesseract": {TaskOCR},
		"nsfwjs":    {TaskModerate, TaskTag},
	}
)

// DefaultConfig is the configuration with no file: the local providers
// only, Tesseract for OCR and nsfwjs for moderation and tags. Other tasks
// are not configured.
func DefaultConfig() (Config, []ProviderConfig) {
	providers := []ProviderConfig{
		{Name: "tesseract", Type: "tesseract", Command: "tesseract", Languages: []string{"eng"}},
		{Name: "nsfwjs", Type: "nsfwjs", Command: "node"},
	}
	return Config{
		Chains: map[Task][]string{
			TaskOCR:      {"tesseract"},
			TaskModerate: {"nsfwjs"},
			TaskTag:      {"nsfwjs"},
		},
		Limits: map[string]Limits{
			"tesseract": localLimits(),
			"nsfwjs":    localLimits(),
		},
		HealthTTL: defaultHealthTTL,
	}, providers
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	var errs []error
	for t, chain := range c.Chains {
		if !slices.Contains(Tasks, t) {
			errs = append(errs, fmt.Errorf("chains: unknown task %q", t))
		}
		seen := map[string]bool{}
		for _, name := range chain {
			if seen[name] {
				errs = append(errs, fmt.Errorf("chains.%s: provider %q listed twice", t, name))
			}
			seen[name] = true
		}
	}
	for name, l := range c.Limits {
		if err := l.validate(); err != nil {
			errs = append(errs, fmt.Errorf("limits of %s: %w", name, err))
		}
	}
	b := []Budget{c.Budgets.PerAsset, c.Budgets.PerKeyDay}
	for _, b := range b {
		if b.AudioSeconds < 0 || b.Images < 0 || b.Tokens < 0 {
			errs = append(errs, errors.New("budgets: negative value"))
			break
		}
	}
	if c.HealthTTL < 0 {
		errs = append(errs, errors.New("health_ttl: negative"))
	}
	return errors.Join(errs...)
}

func (l Limits) validate() error {
	switch {
	case l.Concurrency < 0:
		return errors.New("concurrency: negative")
	case l.RatePerSecond < 0:
		return errors.New("rate_per_second: negative")
	case l.Burst < 0:
		return errors.New("burst: negative")
	case l.Timeout < 0:
		return errors.New("timeout: negative")
	case l.AudioTimeoutFactor < 0:
		return errors.New("audio_timeout_factor: negative")
	case l.Retries < 0 || l.Retries > 10:
		return errors.New("retries: want 0 to 10")
	case l.BreakerFailures < 0:
		return errors.New("breaker.failures: negative")
	case l.BreakerCooldown < 0:
		return errors.New("breaker.cooldown: negative")
	}
	return nil
}

// withDefaults fills the fields for which zero means nothing (a call
// cannot run with no concurrency or no time) from DefaultLimits.
func (l Limits) withDefaults() Limits {
	if l.Concurrency == 0 {
		l.Concurrency = DefaultLimits.Concurrency
	}
	if l.Timeout == 0 {
		l.Timeout = DefaultLimits.Timeout
	}
	if l.BreakerFailures == 0 {
		l.BreakerFailures = DefaultLimits.BreakerFailures
	}
	if l.BreakerCooldown == 0 {
		l.BreakerCooldown = DefaultLimits.BreakerCooldown
	}
	if l.RatePerSecond > 0 && l.Burst == 0 {
		l.Burst = max(1, int(l.RatePerSecond))
	}
	return l
}

// ConfigError is one error in an AI configuration file: the same
// file:line:col: field: message form as pipeline files.
type ConfigError = pipeline.ConfigError

// LoadConfig reads the AI configuration file at path, resolving API keys
// and account ids named by environment variables through getenv (nil:
// os.Getenv). With path "" it returns DefaultConfig.
func LoadConfig(path string, getenv func(string) string) (Config, []ProviderConfig, error) {
	if path == "" {
		c, p := DefaultConfig()
		return c, p, nil
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("ai config: %w", err)
	}
	l := &configLoader{file: path, dir: filepath.Dir(path), getenv: getenv}
	cfg, providers := l.parse(data)
	if len(l.errs) > 0 {
		return Config{}, nil, errors.Join(l.errs...)
	}
	return cfg, providers, nil
}

type configLoader struct {
	file   string
	dir    string
	getenv func(string) string
	errs   []error
}

func (l *configLoader) fail(n *yaml.Node, field, format string, args ...any) {
	ce := &ConfigError{File: l.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		ce.Line, ce.Column = n.Line, n.Column
	}
	l.errs = append(l.errs, ce)
}

var validProviderName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func (l *configLoader) parse(data []byte) (Config, []ProviderConfig) {
	cfg := Config{Chains: map[Task][]string{}, Limits: map[string]Limits{}, HealthTTL: defaultHealthTTL}
	if len(data) > 1<<20 {
		l.fail(nil, "", "file larger than 1 MiB")
		return cfg, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		l.fail(nil, "", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return cfg, nil
	}
	if len(doc.Content) == 0 {
		l.fail(nil, "", "empty file: want a mapping with a providers list")
		return cfg, nil
	}
	root := l.mapping(doc.Content[0], "", "providers", "chains", "budgets", "cache_dir", "health_ttl")
	cfg.CacheDir = l.str(root["cache_dir"], "cache_dir")
	if n := root["health_ttl"]; n != nil {
		cfg.HealthTTL = l.duration(n, "health_ttl")
	}

	var providers []ProviderConfig
	names := map[string]bool{}
	declared := map[string]bool{} // names given, even of providers with errors
	if list := root["providers"]; list == nil {
		l.fail(doc.Content[0], "providers", "missing: want a list of providers")
	} else if list.Kind != yaml.SequenceNode {
		l.fail(list, "providers", "want a list")
	} else {
		for i, pn := range list.Content {
			at := fmt.Sprintf("providers[%d]", i)
			pc, lim, ok := l.provider(pn, at)
			declared[pc.Name] = true
			if !ok {
				continue
			}
			if names[pc.Name] {
				l.fail(pn, at+".name", "provider %q is defined twice", pc.Name)
				continue
			}
			names[pc.Name] = true
			providers = append(providers, pc)
			cfg.Limits[pc.Name] = lim
		}
	}

	if cn := root["chains"]; cn != nil {
		for k, v := range l.pairs(cn, "chains") {
			at := "chains." + k.Value
			t := Task(k.Value)
			if !slices.Contains(Tasks, t) {
				l.fail(k, at, "unknown task (known: %s)", knownTasks())
				continue
			}
			items := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				items = v.Content
			}
			chain := l.strs(v, at)
			for i, name := range chain {
				n := items[min(i, len(items)-1)]
				if !declared[name] {
					l.fail(n, fmt.Sprintf("%s[%d]", at, i), "no provider named %q is defined", name)
				}
				if slices.Index(chain, name) < i {
					l.fail(n, fmt.Sprintf("%s[%d]", at, i), "provider %q listed twice", name)
				}
			}
			cfg.Chains[t] = chain
		}
	}
	for _, t := range Tasks {
		if _, ok := cfg.Chains[t]; ok {
			continue
		}
		for _, pc := range providers {
			_, hasModel := pc.Models[t]
			if hasModel || len(pc.Models) == 0 && slices.Contains(localTasks[pc.Type], t) {
				cfg.Chains[t] = append(cfg.Chains[t], pc.Name)
			}
		}
	}

	if bn := root["budgets"]; bn != nil {
		b := l.mapping(bn, "budgets", "per_asset", "per_key_per_day")
		cfg.Budgets.PerAsset = l.budget(b["per_asset"], "budgets.per_asset")
		cfg.Budgets.PerKeyDay = l.budget(b["per_key_per_day"], "budgets.per_key_per_day")
	}
	return cfg, providers
}

func (l *configLoader) provider(n *yaml.Node, at string) (ProviderConfig, Limits, bool) {
	before := len(l.errs)
	f := l.mapping(n, at, "name", "type", "base_url", "api_key", "api_key_env", "api_key_file",
		"account_id", "account_id_env", "models", "command", "languages", "limits")
	pc := ProviderConfig{
		Name:      l.str(f["name"], at+".name"),
		Type:      l.str(f["type"], at+".type"),
		BaseURL:   l.str(f["base_url"], at+".base_url"),
		Command:   l.str(f["command"], at+".command"),
		Languages: l.strs(f["languages"], at+".languages"),
	}
	switch {
	case f["name"] == nil:
		l.fail(n, at+".name", "missing: every provider needs a name")
	case !validProviderName.MatchString(pc.Name):
		l.fail(f["name"], at+".name", "%q is not a valid name (letters, digits, '.', '-' and '_')", pc.Name)
	}
	if f["type"] == nil {
		l.fail(n, at+".type", "missing (known: %s)", strings.Join(providerTypes, ", "))
	} else if !slices.Contains(providerTypes, pc.Type) {
		l.fail(f["type"], at+".type", "unknown type %q (known: %s)", pc.Type, strings.Join(providerTypes, ", "))
	}

	if k := f["api_key"]; k != nil {
		// The value is not repeated in the error.
		l.fail(k, at+".api_key", "secrets are not read from the configuration file: use api_key_env or api_key_file")
	}
	envName := l.str(f["api_key_env"], at+".api_key_env")
	keyFile := l.str(f["api_key_file"], at+".api_key_file")
	switch {
	case f["api_key_env"] != nil && f["api_key_file"] != nil:
		l.fail(f["api_key_file"], at+".api_key_file", "give api_key_env or api_key_file, not both")
	case f["api_key_env"] != nil:
		if pc.APIKey = strings.TrimSpace(l.getenv(envName)); pc.APIKey == "" {
			l.fail(f["api_key_env"], at+".api_key_env", "environment variable %s is not set", envName)
		}
	case f["api_key_file"] != nil:
		if !filepath.IsAbs(keyFile) {
			keyFile = filepath.Join(l.dir, keyFile)
		}
		b, err := os.ReadFile(keyFile)
		switch {
		case err != nil:
			l.fail(f["api_key_file"], at+".api_key_file", "%v", err)
		case len(strings.TrimSpace(string(b))) == 0:
			l.fail(f["api_key_file"], at+".api_key_file", "%s is empty", keyFile)
		default:
			pc.APIKey = strings.TrimSpace(string(b))
		}
	}

	pc.AccountID = l.str(f["account_id"], at+".account_id")
	if n := f["account_id_env"]; n != nil {
		if f["account_id"] != nil {
			l.fail(n, at+".account_id_env", "give account_id or account_id_env, not both")
		}
		name := l.str(n, at+".account_id_env")
		if pc.AccountID = strings.TrimSpace(l.getenv(name)); pc.AccountID == "" {
			l.fail(n, at+".account_id_env", "environment variable %s is not set", name)
		}
	}
	if pc.Type == "workers-ai" && pc.AccountID == "" && f["account_id_env"] == nil {
		l.fail(n, at+".account_id", "missing: Workers AI needs account_id or account_id_env")
	}

	if mn := f["models"]; mn != nil {
		pc.Models = map[Task]string{}
		for k, v := range l.pairs(mn, at+".models") {
			t := Task(k.Value)
			if !slices.Contains(Tasks, t) {
				l.fail(k, at+".models."+k.Value, "unknown task (known: %s)", knownTasks())
				continue
			}
			pc.Models[t] = l.str(v, at+".models."+k.Value)
		}
	}

	lim := DefaultLimits
	if localTasks[pc.Type] != nil {
		lim = localLimits()
	}
	if ln := f["limits"]; ln != nil {
		lim = l.limits(ln, at+".limits", lim)
	}
	return pc, lim, len(l.errs) == before
}

func (l *configLoader) limits(n *yaml.Node, at string, lim Limits) Limits {
	f := l.mapping(n, at, "concurrency", "rate_per_second", "burst", "timeout", "audio_timeout_factor", "retries", "breaker")
	if v := f["concurrency"]; v != nil {
		lim.Concurrency = l.intIn(v, at+".concurrency", 1, 10000)
	}
	if v := f["rate_per_second"]; v != nil {
		lim.RatePerSecond = l.float(v, at+".rate_per_second")
	}
	if v := f["burst"]; v != nil {
		lim.Burst = l.intIn(v, at+".burst", 1, 10000)
	}
	if v := f["timeout"]; v != nil {
		lim.Timeout = l.positiveDuration(v, at+".timeout")
	}
	if v := f["audio_timeout_factor"]; v != nil {
		lim.AudioTimeoutFactor = l.float(v, at+".audio_timeout_factor")
	}
	if v := f["retries"]; v != nil {
		lim.Retries = l.intIn(v, at+".retries", 0, 10)
	}
	if bn := f["breaker"]; bn != nil {
		b := l.mapping(bn, at+".breaker", "failures", "cooldown")
		if v := b["failures"]; v != nil {
			lim.BreakerFailures = l.intIn(v, at+".breaker.failures", 1, 1000)
		}
		if v := b["cooldown"]; v != nil {
			lim.BreakerCooldown = l.positiveDuration(v, at+".breaker.cooldown")
		}
	}
	if lim.RatePerSecond > 0 && lim.Burst == 0 {
		lim.Burst = max(1, int(lim.RatePerSecond))
	}
	return lim
}

func (l *configLoader) budget(n *yaml.Node, at string) Budget {
	if n == nil {
		return Budget{}
	}
	f := l.mapping(n, at, "audio_seconds", "images", "tokens")
	var b Budget
	if v := f["audio_seconds"]; v != nil {
		b.AudioSeconds = l.float(v, at+".audio_seconds")
	}
	if v := f["images"]; v != nil {
		b.Images = l.intIn(v, at+".images", 0, 1<<31-1)
	}
	if v := f["tokens"]; v != nil {
		b.Tokens = l.intIn(v, at+".tokens", 0, 1<<53)
	}
	return b
}

// mapping returns the values of a mapping node by key, reporting keys
// not in allowed and keys given twice.
func (l *configLoader) mapping(n *yaml.Node, at string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	for k, v := range l.pairs(n, at) {
		field := cfgJoin(at, k.Value)
		if !slices.Contains(allowed, k.Value) {
			l.fail(k, field, "unknown field (known: %s)", strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out
}

// pairs yields a mapping node's keys and values, reporting a node that is
// not a mapping and keys given twice.
func (l *configLoader) pairs(n *yaml.Node, at string) func(yield func(k, v *yaml.Node) bool) {
	return func(yield func(k, v *yaml.Node) bool) {
		if n.Kind != yaml.MappingNode {
			l.fail(n, at, "want a mapping")
			return
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if seen[k.Value] {
				l.fail(k, cfgJoin(at, k.Value), "given twice")
				continue
			}
			seen[k.Value] = true
			if !yield(k, v) {
				return
			}
		}
	}
}

func cfgJoin(at, field string) string {
	if at == "" {
		return field
	}
	return at + "." + field
}

func (l *configLoader) str(n *yaml.Node, at string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		l.fail(n, at, "want a single value")
		return ""
	}
	return n.Value
}

func (l *configLoader) strs(n *yaml.Node, at string) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		l.fail(n, at, "want a list of strings")
		return nil
	}
	var out []string
	for i, e := range n.Content {
		if e.Kind != yaml.ScalarNode {
			l.fail(e, fmt.Sprintf("%s[%d]", at, i), "want a string")
			continue
		}
		out = append(out, e.Value)
	}
	return out
}

func (l *configLoader) intIn(n *yaml.Node, at string, lo, hi int) int {
	s := l.str(n, at)
	i, err := strconv.Atoi(s)
	if err != nil {
		l.fail(n, at, "want a whole number, not %q", s)
		return 0
	}
	if i < lo || i > hi {
		l.fail(n, at, "%d is out of range [%d, %d]", i, lo, hi)
		return 0
	}
	return i
}

func (l *configLoader) float(n *yaml.Node, at string) float64 {
	s := l.str(n, at)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		l.fail(n, at, "want a number, not %q", s)
		return 0
	}
	if f < 0 {
		l.fail(n, at, "want 0 or more")
		return 0
	}
	return f
}

func (l *configLoader) duration(n *yaml.Node, at string) time.Duration {
	s := l.str(n, at)
	d, err := time.ParseDuration(s)
	if err != nil {
		l.fail(n, at, "want a duration such as 30s or 2m, not %q", s)
		return 0
	}
	if d < 0 {
		l.fail(n, at, "want 0 or more")
		return 0
	}
	return d
}

func (l *configLoader) positiveDuration(n *yaml.Node, at string) time.Duration {
	before := len(l.errs)
	d := l.duration(n, at)
	if d == 0 && len(l.errs) == before {
		l.fail(n, at, "want more than 0")
	}
	return d
}

func knownTasks() string {
	s := make([]string, len(Tasks))
	for i, t := range Tasks {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

// String describes the provider without its API key, so that printing a
// configuration never shows a secret.
func (pc ProviderConfig) String() string {
	key := ""
	if pc.APIKey != "" {
		key = " api_key=[redacted]"
	}
	return fmt.Sprintf("%s (%s %s)%s", pc.Name, pc.Type, pc.BaseURL, key)
}

// GoString is String, for %#v.
func (pc ProviderConfig) GoString() string { return "ai.ProviderConfig{" + pc.String() + "}" }

// LogValue keeps the API key out of structured logs.
func (pc ProviderConfig) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("name", pc.Name),
		slog.String("type", pc.Type),
		slog.String("base_url", pc.BaseURL),
		slog.Bool("api_key_set", pc.APIKey != ""),
	)
}

// NewProvider builds the provider pc describes, by its type.
func NewProvider(pc ProviderConfig) (Provider, error) {
	// Each case returns through its own variable, so that a failed
	// constructor's nil pointer never becomes a non-nil Provider.
	switch pc.Type {
	case "openai":
		p, err := NewOpenAI(pc)
		if err != nil {
			return nil, err
		}
		return p, nil
	case "workers-ai":
		p, err := NewWorkersAI(pc)
		if err != nil {
			return nil, err
		}
		return p, nil
	case "tesseract":
		p, err := NewTesseract(pc)
		if err != nil {
			return nil, err
		}
		return p, nil
	case "nsfwjs":
		p, err := NewNSFW(pc)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
	return nil, fmt.Errorf("ai: provider %s: unknown type %q (known: %s)", pc.Name, pc.Type, strings.Join(providerTypes, ", "))
}

// NewProviders builds every provider of a configuration, in order.
func NewProviders(pcs []ProviderConfig) ([]Provider, error) {
	ps := make([]Provider, 0, len(pcs))
	for _, pc := range pcs {
		p, err := NewProvider(pc)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}
