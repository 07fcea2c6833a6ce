package ai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/mediatest"
)

// nsfwTestDir is the sidecar in this package's source tree.
const nsfwTestDir = "nsfwjs"

// requireNSFW fails the test when node or the sidecar's modules are
// missing: these tests run the real sidecar.
func requireNSFW(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node not found on PATH: these tests run the nsfwjs sidecar; install Node.js and its modules with `bash scripts/ai-deps.sh`")
	}
	for _, m := range nsfwModules {
		if _, err := os.Stat(filepath.Join(nsfwTestDir, "node_modules", m, "package.json")); err != nil {
			t.Fatalf("%s is not installed in internal/ai/%s: run `bash scripts/ai-deps.sh` (npm ci there)", m, nsfwTestDir)
		}
	}
}

func newTestNSFW(t testing.TB, pc ProviderConfig, o NSFWOptions) *NSFW {
	t.Helper()
	if o.Dir == "" {
		o.Dir = nsfwTestDir
	}
	n, err := NewNSFWWithOptions(pc, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

// lavfiImage renders one frame of an ffmpeg lavfi source to PNG or JPEG.
func lavfiImage(t testing.TB, src, ext string) Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "frame"+ext)
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", "1", out)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	ct := "image/png"
	if ext == ".jpg" {
		ct = "image/jpeg"
	}
	return Image{Data: data, ContentType: ct}
}

func TestNSFWClassifiesSafeImages(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	if err := n.Available(ctx); err != nil {
		t.Fatalf("Available: %v", err)
	}
	images := map[string]Image{
		"testsrc png":  lavfiImage(t, "testsrc2=s=320x240", ".png"),
		"testsrc jpeg": lavfiImage(t, "testsrc2=s=320x240", ".jpg"),
		"mandelbrot":   lavfiImage(t, "mandelbrot=s=320x240", ".jpg"),
		"text":         {Data: textFrame(t, "SLUICE 2026", ".png"), ContentType: "image/png"},
	}
	for name, img := range images {
		t.Run(name, func(t *testing.T) {
			labels, usage, err := n.Tag(ctx, TagRequest{Image: img})
			if err != nil {
				t.Fatalf("Tag: %v", err)
			}
			t.Logf("%s: %v", name, labels)
			var names []string
			var sum float64
			for i, l := range labels {
				names = append(names, l.Name)
				sum += l.Score
				if i > 0 && l.Score > labels[i-1].Score {
					t.Errorf("labels not sorted by score: %v", labels)
				}
			}
			sort.Strings(names)
			if !slices.Equal(names, NSFWClasses) {
				t.Errorf("labels %v, want the five classes %v", names, NSFWClasses)
			}
			if math.Abs(sum-1) > 0.01 {
				t.Errorf("scores sum to %v, want about 1", sum)
			}
			if top := labels[0].Name; top != NSFWNeutral && top != NSFWDrawing {
				t.Errorf("top label %s, want Neutral or Drawing for a test pattern", top)
			}
			if usage.Images != 1 {
				t.Errorf("usage %+v, want 1 image", usage)
			}

			m, usage, err := n.Moderate(ctx, ModerateRequest{Images: []Image{img}})
			if err != nil {
				t.Fatalf("Moderate: %v", err)
			}
			if m.Flagged || len(m.Categories) != 5 || usage.Images != 1 {
				t.Errorf("Moderate: %+v %+v, want not flagged, five categories, one image", m, usage)
			}
			for _, l := range labels {
				if m.Categories[l.Name] != l.Score {
					t.Errorf("category %s = %v, tag said %v", l.Name, m.Categories[l.Name], l.Score)
				}
			}
		})
	}

	top2, _, err := n.Tag(ctx, TagRequest{Image: images["mandelbrot"], TopK: 2})
	if err != nil || len(top2) != 2 {
		t.Errorf("Tag TopK 2: %v, %v; want two labels", top2, err)
	}
}

// Latency per image, warm sidecar, measured from Go (HTTP included).
func TestNSFWLatency(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	start := time.Now()
	if err := n.Available(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("sidecar start with model load: %v", time.Since(start))
	for _, size := range []string{"320x240", "1280x720"} {
		img := lavfiImage(t, "testsrc2=s="+size, ".jpg")
		var times []time.Duration
		for range 20 {
			s := time.Now()
			if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
				t.Fatal(err)
			}
			times = append(times, time.Since(s))
		}
		slices.Sort(times)
		t.Logf("classify %s JPEG: median %v, min %v, max %v over %d", size, times[len(times)/2], times[0], times[len(times)-1], len(times))
	}
}

func TestNSFWModerationThresholds(t *testing.T) {
	requireNSFW(t)
	img := lavfiImage(t, "testsrc2=s=320x240", ".png")
	for _, tc := range []struct {
		name string
		o    NSFWOptions
		want bool
	}{
		{"defaults", NSFWOptions{}, false},
		{"explicit threshold reached", NSFWOptions{ExplicitThreshold: 1e-9}, true},
		{"suggestive threshold reached", NSFWOptions{SuggestiveThreshold: 1e-9, ExplicitThreshold: 2}, true},
		{"both off", NSFWOptions{SuggestiveThreshold: 2, ExplicitThreshold: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNSFW(t, ProviderConfig{}, tc.o)
			m, _, err := n.Moderate(context.Background(), ModerateRequest{Images: []Image{img, img}})
			if err != nil {
				t.Fatal(err)
			}
			if m.Flagged != tc.want {
				t.Errorf("flagged %v, want %v (%v)", m.Flagged, tc.want, m.Categories)
			}
		})
	}
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	_, _, err := n.Moderate(context.Background(), ModerateRequest{Text: "words"})
	var pe *ProviderError
	if !errors.As(err, &pe) || pe.Code != "unsupported" || pe.Temporary {
		t.Errorf("Moderate text: %v, want a permanent unsupported ProviderError", err)
	}
}

func TestNSFWUnavailable(t *testing.T) {
	requireNSFW(t)
	ctx := context.Background()
	withServer := t.TempDir()
	src, err := os.ReadFile(filepath.Join(nsfwTestDir, "server.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(withServer, "server.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pc   ProviderConfig
		dir  string
		want []string
	}{
		{"no node_modules", ProviderConfig{}, withServer, []string{"node modules", "nsfwjs", "@tensorflow/tfjs-backend-wasm", withServer, "bash scripts/ai-deps.sh"}},
		{"empty dir", ProviderConfig{}, t.TempDir(), []string{"server.mjs", "SLUICE_NSFWJS_DIR"}},
		{"no node", ProviderConfig{Name: "mod", Command: filepath.Join(t.TempDir(), "no-node")}, nsfwTestDir, []string{"mod:", "node not found", "bash scripts/ai-deps.sh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNSFW(t, tc.pc, NSFWOptions{Dir: tc.dir})
			err := n.Available(ctx)
			if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Available: %v, want ErrUnavailable", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Available: %q, want it to say %q", err, w)
				}
			}
			if _, _, err := n.Tag(ctx, TagRequest{Image: Image{Data: []byte("\x89PNG\r\n\x1a\n")}}); !errors.Is(err, ErrUnavailable) {
				t.Errorf("Tag: %v, want ErrUnavailable", err)
			}
			if n.pid() != 0 {
				t.Error("a sidecar runs")
			}
		})
	}
}

// A sidecar that cannot start says why (its stderr), and is not tried
// again at once.
func TestNSFWStartFailure(t *testing.T) {
	requireNSFW(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join(nsfwTestDir, "server.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.mjs"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, m := range nsfwModules { // packages without code
		if err := os.MkdirAll(filepath.Join(dir, "node_modules", m), 0o755); err != nil {
			t.Fatal(err)
		}
		pkg := fmt.Sprintf(`{"name":%q,"version":"0.0.0","main":"missing.js"}`, m)
		if err := os.WriteFile(filepath.Join(dir, "node_modules", m, "package.json"), []byte(pkg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{Dir: dir})
	err = n.Available(context.Background())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "sidecar failed to start") || !strings.Contains(err.Error(), "@tensorflow/tfjs") {
		t.Fatalf("Available: %v, want ErrUnavailable with the sidecar's error about @tensorflow/tfjs", err)
	}
	again := n.Available(context.Background())
	if again == nil || again.Error() != err.Error() {
		t.Errorf("second Available: %v, want the same error", again)
	}
	if got := sidecarsWithToken(t, n.token); len(got) != 0 {
		t.Errorf("node processes %v left running", got)
	}
}

func TestNSFWRestartsAfterKill(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	img := lavfiImage(t, "testsrc2=s=320x240", ".png")
	if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
		t.Fatal(err)
	}
	first := n.pid()
	if first == 0 || !processAlive(first) {
		t.Fatal("no sidecar after a call")
	}

	// Killed between calls: the next call starts another.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, first)
	if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
		t.Fatalf("Tag after the sidecar was killed: %v", err)
	}
	second := n.pid()
	if second == 0 || second == first || !processAlive(second) {
		t.Fatalf("sidecar pid %d after a restart (first %d)", second, first)
	}

	// Killed with the provider unaware: the call finds it dead and
	// restarts it.
	_ = syscall.Kill(second, syscall.SIGKILL)
	if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
		t.Fatalf("Tag right after the kill: %v", err)
	}
	if third := n.pid(); third == 0 || third == second {
		t.Fatalf("sidecar pid %d after the second restart (was %d)", third, second)
	}
}

func TestNSFWConcurrentFirstUseStartsOne(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	img := lavfiImage(t, "testsrc2=s=320x240", ".jpg")
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			_, _, err := n.Tag(context.Background(), TagRequest{Image: img})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := sidecarsWithToken(t, n.token); len(got) != 1 {
		t.Errorf("%d sidecars running (%v), want 1", len(got), got)
	}
}

func TestNSFWCloseStopsSidecar(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	if err := n.Available(ctx); err != nil {
		t.Fatal(err)
	}
	pid := n.pid()
	if len(sidecarsWithToken(t, n.token)) != 1 {
		t.Fatal("sidecar not found among processes")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("sidecar %d still running after Close", pid)
	}
	if got := sidecarsWithToken(t, n.token); len(got) != 0 {
		t.Errorf("node processes %v still running after Close", got)
	}
	if err := n.Available(ctx); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Available after Close: %v, want ErrUnavailable", err)
	}
	if got := sidecarsWithToken(t, n.token); len(got) != 0 {
		t.Errorf("a call after Close started %v", got)
	}
}

func TestNSFWCloseDuringStart(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	errc := make(chan error, 1)
	go func() { errc <- n.Available(context.Background()) }()
	for {
		n.mu.Lock()
		starting := n.starting != nil
		n.mu.Unlock()
		if starting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrUnavailable) {
		t.Errorf("Available closed during the start: %v, want ErrUnavailable", err)
	}
	if got := sidecarsWithToken(t, n.token); len(got) != 0 {
		t.Errorf("node processes %v still running after Close", got)
	}
}

// sidecarsWithToken lists the processes started with the provider's
// token in their environment.
func sidecarsWithToken(t *testing.T, token string) []int {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/environ")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, p := range procs {
		env, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(env, []byte("SLUICE_NSFWJS_TOKEN="+token)) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(p, "/proc/%d/environ", &pid); err == nil && processAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestNSFWBadInput(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	img := lavfiImage(t, "testsrc2=s=320x240", ".png")
	for _, tc := range []struct {
		name   string
		data   []byte
		status int
	}{
		{"not an image", []byte("/etc/passwd\n"), 0},
		{"gif", []byte("GIF89a\x01\x00\x01\x00"), 0},
		{"truncated png", img.Data[:100], http.StatusBadRequest},
		{"truncated jpeg", lavfiImage(t, "testsrc2=s=320x240", ".jpg").Data[:300], http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := n.Tag(ctx, TagRequest{Image: Image{Data: tc.data}})
			var pe *ProviderError
			if !errors.As(err, &pe) || pe.Temporary || pe.Status != tc.status {
				t.Fatalf("Tag: %#v, want a permanent ProviderError with status %d", err, tc.status)
			}
		})
	}
	// The sidecar survives bad input.
	if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
		t.Fatalf("Tag after bad input: %v", err)
	}
}

func TestNSFWSidecarListener(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{}, NSFWOptions{})
	ctx := context.Background()
	sc, err := n.sidecar(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sc.base, "http://127.0.0.1:") {
		t.Errorf("sidecar at %s, want loopback", sc.base)
	}
	for _, tc := range []struct {
		method, path, auth string
		status             int
	}{
		{"GET", "/healthz", "", http.StatusUnauthorized},
		{"POST", "/classify", "Bearer wrong", http.StatusUnauthorized},
		{"GET", "/healthz", "Bearer " + n.token, http.StatusOK},
		{"GET", "/classify", "Bearer " + n.token, http.StatusMethodNotAllowed},
		{"GET", "/nope", "Bearer " + n.token, http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(ctx, tc.method, sc.base+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s with %q: %d %v, want %d", tc.method, tc.path, tc.auth, resp.StatusCode, body, tc.status)
		}
		if tc.status == http.StatusOK && (body["backend"] != "wasm" || body["model"] != "MobileNetV2") {
			t.Errorf("healthz %v, want the wasm backend and MobileNetV2", body)
		}
	}
}

func TestNSFWConfig(t *testing.T) {
	requireNSFW(t)
	n := newTestNSFW(t, ProviderConfig{Models: map[Task]string{TaskTag: "MobileNetV2"}}, NSFWOptions{})
	var pkg struct{ Version string }
	b, err := os.ReadFile(filepath.Join(nsfwTestDir, "node_modules", "nsfwjs", "package.json"))
	if err != nil || json.Unmarshal(b, &pkg) != nil {
		t.Fatal("cannot read nsfwjs's package.json")
	}
	if got, want := n.Model(TaskModerate), "nsfwjs-"+pkg.Version+"/MobileNetV2"; got != want {
		t.Errorf("Model(moderate) = %q, want %q", got, want)
	}
	if got := n.Model(TaskOCR); got != "" {
		t.Errorf("Model(ocr) = %q, want \"\"", got)
	}
	if got := n.Name(); got != "nsfwjs" {
		t.Errorf("Name() = %q", got)
	}
	for _, models := range []map[Task]string{
		{TaskOCR: "MobileNetV2"},
		{TaskTag: "ResNet"},
		{TaskTag: "InceptionV3", TaskModerate: "MobileNetV2"},
	} {
		if _, err := NewNSFW(ProviderConfig{Models: models}); err == nil {
			t.Errorf("NewNSFW took models %v", models)
		}
	}
}

// BenchmarkNSFWClassify measures one classification of a 320x240 JPEG
// by a warm sidecar, HTTP over loopback included.
func BenchmarkNSFWClassify(b *testing.B) {
	requireNSFW(b)
	n := newTestNSFW(b, ProviderConfig{}, NSFWOptions{})
	img := lavfiImage(b, "testsrc2=s=320x240", ".jpg")
	ctx := context.Background()
	if err := n.Available(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := n.Tag(ctx, TagRequest{Image: img}); err != nil {
			b.Fatal(err)
		}
	}
}
