package ai

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NSFW moderates and classifies images with the npm package nsfwjs, whose
// model (MobileNetV2 by default; its weights ship inside the package)
// runs offline in Node on the TensorFlow.js WebAssembly backend. Node
// runs as a sidecar, internal/ai/nsfwjs/server.mjs, that NSFW starts on
// first use (or on Available), keeps running, starts again when it has
// died, and stops on Close. It listens on 127.0.0.1 only, takes requests
// only with a random token it is given at start, and exits by itself
// when this process goes away.
//
// nsfwjs is a content classifier, not a general tagger: every image gets
// scores for the same five classes, Drawing, Hentai, Neutral, Porn and
// Sexy, summing to about 1. Tag returns them as labels; Moderate returns
// them as categories and flags an image as NSFWOptions' thresholds say.
type NSFW struct {
	name  string
	node  string
	dir   string
	model string
	opts  NSFWOptions
	token string // the sidecar's bearer token, random per provider

	client *http.Client

	mu         sync.Mutex
	closed     bool
	sc         *nsfwSidecar  // the running sidecar, or nil
	starting   chan struct{} // closed when the start in progress ends
	startErr   error         // the last failed start, for nsfwRestartBackoff
	startErrAt time.Time
	version    string // nsfwjs's version, once read
}

var (
	_ Provider  = (*NSFW)(nil)
	_ Moderator = (*NSFW)(nil)
	_ Tagger    = (*NSFW)(nil)
)

// The five classes nsfwjs scores.
const (
	NSFWDrawing = "Drawing" // safe drawings and anime
	NSFWHentai  = "Hentai"  // explicit drawings
	NSFWNeutral = "Neutral" // safe photos
	NSFWPorn    = "Porn"    // explicit photos
	NSFWSexy    = "Sexy"    // suggestive, not explicit
)

// NSFWClasses lists them.
var NSFWClasses = []string{NSFWDrawing, NSFWHentai, NSFWNeutral, NSFWPorn, NSFWSexy}

// NSFWOptions tunes the nsfwjs provider. Zero values take the defaults.
type NSFWOptions struct {
	// Dir holds server.mjs and its node_modules. Default: the
	// SLUICE_NSFWJS_DIR environment variable, else the first of
	// ./internal/ai/nsfwjs, ./nsfwjs, and nsfwjs and
	// ../internal/ai/nsfwjs beside the executable that has server.mjs.
	Dir string
	// ExplicitThreshold flags an image whose Porn + Hentai score reaches
	// it. Default 0.5: explicit content is more likely than not.
	ExplicitThreshold float64
	// SuggestiveThreshold flags an image whose Sexy score reaches it.
	// Default 0.8: the class also takes swimwear and underwear, so only a
	// confident score flags. Above 1 never flags on it.
	SuggestiveThreshold float64
	// StartTimeout bounds the sidecar's start, model load included
	// (about a second here). Default 60s.
	StartTimeout time.Duration
	// RequestTimeout bounds a classification when the caller's context
	// has no deadline. Default 30s.
	RequestTimeout time.Duration
}

const (
	nsfwDefaultModel = "MobileNetV2"
	// nsfwRestartBackoff is how long a failed start stands before another
	// is tried: a sidecar that cannot start must not cost every job a
	// start.
	nsfwRestartBackoff = 5 * time.Second
	// nsfwMaxImage bounds one image sent to the sidecar (which refuses
	// more than 32 MiB and 50 megapixels).
	nsfwMaxImage = 32 << 20
)

var nsfwModels = []string{"MobileNetV2", "MobileNetV2Mid", "InceptionV3"}

// nsfwModules are what server.mjs imports; each must be installed.
var nsfwModules = []string{"nsfwjs", "@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "jpeg-js", "pngjs"}

// NewNSFW returns the nsfwjs provider with default options: pc.Command is
// the node executable (default "node"), and pc.Models may name the
// nsfwjs model for TaskModerate and TaskTag (MobileNetV2, the default;
// MobileNetV2Mid; InceptionV3), the same for both. It starts nothing.
func NewNSFW(pc ProviderConfig) (*NSFW, error) {
	return NewNSFWWithOptions(pc, NSFWOptions{})
}

// NewNSFWWithOptions is NewNSFW with options.
func NewNSFWWithOptions(pc ProviderConfig, o NSFWOptions) (*NSFW, error) {
	n := &NSFW{name: pc.Name, node: pc.Command, model: nsfwDefaultModel}
	if n.name == "" {
		n.name = "nsfwjs"
	}
	if n.node == "" {
		n.node = "node"
	}
	var chosen string
	for task, m := range pc.Models {
		if task != TaskModerate && task != TaskTag {
			return nil, fmt.Errorf("ai: nsfwjs %q: it does moderate and tag only, not %s", n.name, task)
		}
		if m == "" {
			continue
		}
		if !slices.Contains(nsfwModels, m) {
			return nil, fmt.Errorf("ai: nsfwjs %q: unknown model %q, want one of %v", n.name, m, nsfwModels)
		}
		if chosen != "" && m != chosen {
			return nil, fmt.Errorf("ai: nsfwjs %q: one sidecar runs one model: %s or %s", n.name, chosen, m)
		}
		chosen = m
	}
	if chosen != "" {
		n.model = chosen
	}
	if o.ExplicitThreshold == 0 {
		o.ExplicitThreshold = 0.5
	}
	if o.SuggestiveThreshold == 0 {
		o.SuggestiveThreshold = 0.8
	}
	if o.ExplicitThreshold < 0 || o.SuggestiveThreshold < 0 {
		return nil, fmt.Errorf("ai: nsfwjs %q: negative threshold", n.name)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = time.Minute
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.Dir == "" {
		o.Dir = findNSFWDir()
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("ai: nsfwjs %q: %w", n.name, err)
	}
	n.dir, n.opts = dir, o
	var tok [16]byte
	_, _ = rand.Read(tok[:])
	n.token = hex.EncodeToString(tok[:])
	// Loopback only, never through a proxy from the environment.
	n.client = &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}}
	return n, nil
}

func findNSFWDir() string {
	if d := os.Getenv("SLUICE_NSFWJS_DIR"); d != "" {
		return d
	}
	cands := []string{filepath.Join("internal", "ai", "nsfwjs"), "nsfwjs"}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		cands = append(cands, filepath.Join(d, "nsfwjs"), filepath.Join(d, "..", "internal", "ai", "nsfwjs"))
	}
	for _, c := range cands {
		if _, err := os.Stat(filepath.Join(c, "server.mjs")); err == nil {
			return c
		}
	}
	return cands[0]
}

// Name implements Provider.
func (n *NSFW) Name() string { return n.name }

// Model implements Provider: "nsfwjs-VERSION/MODEL" for moderation and
// tagging, so that an upgrade of nsfwjs misses results cached by the old
// one ("nsfwjs/MODEL" while the package is not installed).
func (n *NSFW) Model(t Task) string {
	if t != TaskModerate && t != TaskTag {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.version == "" {
		var pkg struct{ Version string }
		if b, err := os.ReadFile(filepath.Join(n.dir, "node_modules", "nsfwjs", "package.json")); err == nil && json.Unmarshal(b, &pkg) == nil {
			n.version = pkg.Version
		}
	}
	if n.version == "" {
		return "nsfwjs/" + n.model
	}
	return "nsfwjs-" + n.version + "/" + n.model
}

// Dir is the sidecar's directory.
func (n *NSFW) Dir() string { return n.dir }

// Available implements Provider: nil once the sidecar answers its health
// check, starting it if it is not running; else why not, and what to
// install.
func (n *NSFW) Available(ctx context.Context) error {
	sc, err := n.sidecar(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.base+"/healthz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.client.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: sidecar health check: %v", ErrUnavailable, n.name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: %s: sidecar health check: HTTP %d", ErrUnavailable, n.name, resp.StatusCode)
	}
	return nil
}

// Moderate implements Moderator, for images only. Categories are the
// five class scores (the highest over the images sent); the content is
// flagged when an image's Porn + Hentai reaches ExplicitThreshold or its
// Sexy reaches SuggestiveThreshold.
func (n *NSFW) Moderate(ctx context.Context, req ModerateRequest) (Moderation, Usage, error) {
	if len(req.Images) == 0 {
		return Moderation{}, Usage{}, &ProviderError{Provider: n.name, Code: "unsupported", Message: "nsfwjs moderates images, not text"}
	}
	m := Moderation{Categories: make(map[string]float64, len(NSFWClasses))}
	var usage Usage
	for _, img := range req.Images {
		scores, err := n.classify(ctx, img)
		if err != nil {
			return Moderation{}, usage, err
		}
		usage.Images++
		for c, s := range scores {
			m.Categories[c] = math.Max(m.Categories[c], s)
		}
		if scores[NSFWPorn]+scores[NSFWHentai] >= n.opts.ExplicitThreshold || scores[NSFWSexy] >= n.opts.SuggestiveThreshold {
			m.Flagged = true
		}
	}
	return m, usage, nil
}

// Tag implements Tagger: the five nsfwjs classes, most likely first, at
// most req.TopK of them. They say what kind of picture it is (photo or
// drawing, safe or not), not what is in it.
func (n *NSFW) Tag(ctx context.Context, req TagRequest) ([]Label, Usage, error) {
	scores, err := n.classify(ctx, req.Image)
	if err != nil {
		return nil, Usage{}, err
	}
	labels := make([]Label, 0, len(scores))
	for c, s := range scores {
		labels = append(labels, Label{Name: c, Score: s})
	}
	slices.SortFunc(labels, func(a, b Label) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	if req.TopK > 0 && req.TopK < len(labels) {
		labels = labels[:req.TopK]
	}
	return labels, Usage{Images: 1}, nil
}

// classify sends one image to the sidecar and returns its five scores.
// When the sidecar turns out to have died, it is started again and the
// image sent once more.
func (n *NSFW) classify(ctx context.Context, img Image) (map[string]float64, error) {
	if len(img.Data) == 0 {
		return nil, &ProviderError{Provider: n.name, Code: "invalid_image", Message: "empty image"}
	}
	if len(img.Data) > nsfwMaxImage {
		return nil, &ProviderError{Provider: n.name, Code: "invalid_image", Message: fmt.Sprintf("image of %d bytes, over %d", len(img.Data), nsfwMaxImage)}
	}
	if f := localImageFormat(img.Data); f != "png" && f != "jpeg" {
		return nil, &ProviderError{Provider: n.name, Code: "invalid_image", Message: "nsfwjs takes JPEG or PNG images"}
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		sc, err := n.sidecar(ctx)
		if err != nil {
			return nil, err
		}
		scores, err := n.post(ctx, sc, img.Data)
		if err == nil {
			return scores, nil
		}
		var pe *ProviderError
		if errors.As(err, &pe) || ctx.Err() != nil {
			return nil, err
		}
		// A connection error: the sidecar may have died under us (and
		// be reaped a moment later).
		select {
		case <-sc.done:
			n.forget(sc)
			if attempt == 0 {
				continue
			}
		case <-time.After(time.Second):
		}
		return nil, &ProviderError{Provider: n.name, Code: "sidecar", Message: err.Error(), Temporary: true}
	}
}

func (n *NSFW) post(ctx context.Context, sc *nsfwSidecar, data []byte) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sc.base+"/classify", bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := n.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			pe := &ProviderError{Provider: n.name, Code: "timeout", Message: "nsfwjs sidecar did not answer: " + ctx.Err().Error(),
				Temporary: errors.Is(ctx.Err(), context.DeadlineExceeded)}
			return nil, fmt.Errorf("%w (%w)", pe, ctx.Err())
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, &ProviderError{Provider: n.name, Status: resp.StatusCode, Code: "truncated", Message: err.Error(), Temporary: true}
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = string(localHead(body, 200))
		}
		return nil, &ProviderError{Provider: n.name, Status: resp.StatusCode, Message: e.Error, Temporary: resp.StatusCode >= 500}
	}
	var out []struct {
		ClassName   string  `json:"className"`
		Probability float64 `json:"probability"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, &ProviderError{Provider: n.name, Status: resp.StatusCode, Code: "bad_response", Message: err.Error(), Temporary: true}
	}
	scores := make(map[string]float64, len(out))
	for _, c := range out {
		if !slices.Contains(NSFWClasses, c.ClassName) || math.IsNaN(c.Probability) || c.Probability < 0 || c.Probability > 1 {
			return nil, &ProviderError{Provider: n.name, Code: "bad_response", Message: fmt.Sprintf("unexpected class %q %v", c.ClassName, c.Probability), Temporary: true}
		}
		scores[c.ClassName] = c.Probability
	}
	if len(scores) != len(NSFWClasses) {
		return nil, &ProviderError{Provider: n.name, Code: "bad_response", Message: fmt.Sprintf("%d classes, want %d", len(scores), len(NSFWClasses)), Temporary: true}
	}
	return scores, nil
}

func (n *NSFW) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.opts.RequestTimeout)
}

// Close stops the sidecar (SIGTERM, then SIGKILL to its process group)
// and waits for it to exit. The provider takes no calls after.
func (n *NSFW) Close() error {
	n.mu.Lock()
	n.closed = true // no start begins after this
	starting := n.starting
	n.mu.Unlock()
	if starting != nil {
		<-starting // a start in progress: stop what it started too
	}
	n.mu.Lock()
	sc := n.sc
	n.sc = nil
	n.mu.Unlock()
	if sc != nil {
		sc.stop()
	}
	n.client.CloseIdleConnections()
	return nil
}

// check says what is missing for the sidecar to run.
func (n *NSFW) check() error {
	if _, err := exec.LookPath(n.node); err != nil {
		return fmt.Errorf("%w: %s: node not found (%q): install Node.js 18 or newer and the sidecar's modules with `bash scripts/ai-deps.sh`",
			ErrUnavailable, n.name, n.node)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "server.mjs")); err != nil {
		return fmt.Errorf("%w: %s: no nsfwjs sidecar (server.mjs) in %s: set SLUICE_NSFWJS_DIR to Sluice's internal/ai/nsfwjs directory",
			ErrUnavailable, n.name, n.dir)
	}
	var missing []string
	for _, m := range nsfwModules {
		if _, err := os.Stat(filepath.Join(n.dir, "node_modules", m, "package.json")); err != nil {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s: node modules %v not installed in %s: run `bash scripts/ai-deps.sh` (or `npm ci` there)",
			ErrUnavailable, n.name, missing, n.dir)
	}
	return nil
}

// sidecar returns the running sidecar, starting one if none is running.
// One start runs at a time; callers wait for it as long as ctx lets them,
// and the start goes on for the next caller if they give up.
func (n *NSFW) sidecar(ctx context.Context) (*nsfwSidecar, error) {
	for {
		n.mu.Lock()
		if n.closed {
			n.mu.Unlock()
			return nil, fmt.Errorf("%w: %s: closed", ErrUnavailable, n.name)
		}
		if sc := n.sc; sc != nil {
			select {
			case <-sc.done:
				n.sc = nil // died: start another
			default:
				n.mu.Unlock()
				return sc, nil
			}
		}
		if n.starting == nil {
			if err := n.startErr; err != nil && time.Since(n.startErrAt) < nsfwRestartBackoff {
				n.mu.Unlock()
				return nil, err
			}
			if err := n.check(); err != nil {
				n.mu.Unlock()
				return nil, err
			}
			n.starting = make(chan struct{})
			go n.start(n.starting)
		}
		starting := n.starting
		n.mu.Unlock()
		select {
		case <-starting:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %s: sidecar still starting: %w", ErrUnavailable, n.name, ctx.Err())
		}
		n.mu.Lock()
		sc, err := n.sc, n.startErr
		n.mu.Unlock()
		if sc == nil && err != nil {
			return nil, err
		}
	}
}

// start starts a sidecar and records the outcome, then closes done.
func (n *NSFW) start(done chan struct{}) {
	sc, err := n.launch()
	n.mu.Lock()
	n.sc = sc
	if err != nil {
		n.startErr, n.startErrAt = err, time.Now()
	} else {
		n.startErr = nil
	}
	n.starting = nil
	n.mu.Unlock()
	close(done)
}

// forget drops sc if it is still the current sidecar.
func (n *NSFW) forget(sc *nsfwSidecar) {
	n.mu.Lock()
	if n.sc == sc {
		n.sc = nil
	}
	n.mu.Unlock()
}

// nsfwSidecar is one running server.mjs.
type nsfwSidecar struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	base   string        // http://127.0.0.1:PORT
	done   chan struct{} // closed once the process has exited and been reaped
	stderr *localTail
}

func (n *NSFW) launch() (*nsfwSidecar, error) {
	node, err := exec.LookPath(n.node)
	if err != nil {
		return nil, n.check()
	}
	cmd := exec.Command(node, "server.mjs", "--port", "0", "--model", n.model)
	cmd.Dir = n.dir
	// Nothing from this process's environment: no keys of other
	// providers, no proxies, no NODE_OPTIONS.
	cmd.Env = []string{"SLUICE_NSFWJS_TOKEN=" + n.token}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr := &localTail{max: 8 << 10}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe() // the sidecar exits when it closes
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: %s: start node: %v", ErrUnavailable, n.name, err)
	}
	sc := &nsfwSidecar{cmd: cmd, stdin: stdin, done: make(chan struct{}), stderr: stderr}
	// The ready line is the first that parses; anything else a library
	// printed on stdout is skipped, and after it stdout is drained so that
	// the child never blocks on it.
	ready := make(chan int, 1)
	go func() {
		sent := false
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 4096), 64<<10)
		for sc.Scan() {
			var hello struct {
				Port int `json:"port"`
			}
			if !sent && json.Unmarshal(sc.Bytes(), &hello) == nil && hello.Port > 0 && hello.Port < 65536 {
				ready <- hello.Port
				sent = true
			}
		}
		if !sent {
			ready <- 0
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		_ = cmd.Wait()
		close(sc.done)
	}()
	timer := time.NewTimer(n.opts.StartTimeout)
	defer timer.Stop()
	var port int
	select {
	case port = <-ready:
	case <-timer.C:
		sc.stop()
		return nil, fmt.Errorf("%w: %s: sidecar not ready after %v: %s", ErrUnavailable, n.name, n.opts.StartTimeout, nsfwStderr(stderr.String()))
	}
	if port == 0 {
		sc.stop()
		return nil, fmt.Errorf("%w: %s: sidecar failed to start: %s", ErrUnavailable, n.name, nsfwStderr(stderr.String()))
	}
	sc.base = "http://127.0.0.1:" + strconv.Itoa(port)
	return sc, nil
}

// stop ends the sidecar: its stdin closes (it exits by itself), then
// SIGTERM and after two seconds SIGKILL go to its process group.
func (sc *nsfwSidecar) stop() {
	_ = sc.stdin.Close()
	pid := sc.cmd.Process.Pid
	select {
	case <-sc.done:
		return
	default:
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-sc.done:
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-sc.done
	}
}

// pid is the sidecar's process id, or 0 when none runs (for tests).
func (n *NSFW) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.sc == nil {
		return 0
	}
	return n.sc.cmd.Process.Pid
}

// nsfwStderr is the end of a child's stderr, for an error message.
func nsfwStderr(s string) string {
	const max = 1000
	if len(s) > max {
		s = "..." + s[len(s)-max:]
	}
	if s == "" {
		return "(no output)"
	}
	return s
}
