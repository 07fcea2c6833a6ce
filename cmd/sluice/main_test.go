package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/server"
	"github.com/sluice-media/sluice/internal/store/postgres/pgtest"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestMain lets the test binary act as the sluice command, so that tests
// can run `sluice serve` as a real child process (to signal or kill it)
// without building a separate binary.
func TestMain(m *testing.M) {
	if args := os.Getenv("SLUICE_TEST_MAIN_ARGS"); args != "" {
		os.Args = append([]string{"sluice"}, strings.Split(args, "\x1f")...)
		main()
		os.Exit(0)
	}
	// Every server the tests start gets this admin key, and every CLI
	// run and child process sends it.
	os.Setenv("SLUICE_ADMIN_TOKEN", testToken)
	os.Setenv("SLUICE_API_KEY", testToken)
	// pgtest runs the PostgreSQL server of the scale-out test and stops it.
	pgtest.Main(m)
}

var testToken = auth.NewToken()

func startInProcess(t *testing.T) string {
	t.Helper()
	url, _ := startInProcessDir(t)
	return url
}

// startInProcessDir starts a server and returns its URL and data dir.
func startInProcessDir(t *testing.T) (string, string) {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	cfg := config.Default()
	cfg.Addr = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Pipelines = []string{mediatest.LightPipeline(t, 320)}
	cfg.Wasm.CacheDir = mediatest.WasmCacheDir()
	cfg.AdminToken = testToken
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, cfg, newLogger(io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.URL(), cfg.DataDir
}

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// decodeOnly decodes stdout as exactly one JSON document.
func decodeOnly(t *testing.T, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not the asset JSON: %v\n%s", err, stdout)
	}
	if rest, _ := io.ReadAll(dec.Buffered()); strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("stdout has more than the JSON document: %q", rest)
	}
}

func TestUploadWaitJSON(t *testing.T) {
	url := startInProcess(t)
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 2, Video: true, Audio: true})

	for _, mode := range []struct {
		name  string
		extra []string
	}{{"put", nil}, {"tus", []string{"--tus-threshold", "1"}}} {
		t.Run(mode.name, func(t *testing.T) {
			args := append([]string{"upload", clip, "--server", url, "--wait", "--json"}, mode.extra...)
			stdout, stderr, err := runCLI(t, args...)
			if err != nil {
				t.Fatalf("upload: %v\n%s", err, stderr)
			}
			var a wire.Asset
			decodeOnly(t, stdout, &a)
			if a.Status != wire.StatusSucceeded || a.Name != "clip.mp4" || len(a.Outputs) != 2 || len(a.Steps) != 3 {
				t.Errorf("asset = %+v", a)
			}
			// assets get prints the same document.
			stdout, _, err = runCLI(t, "assets", "get", a.ID, "--server", url, "--json")
			if err != nil {
				t.Fatal(err)
			}
			var again wire.Asset
			decodeOnly(t, stdout, &again)
			if again.ID != a.ID || again.Status != a.Status || len(again.Outputs) != len(a.Outputs) {
				t.Errorf("assets get = %+v, want %+v", again, a)
			}
		})
	}

	t.Run("failed asset exits 1", func(t *testing.T) {
		// A PNG signature and then nothing of a picture: accepted at the
		// edge, failed by the pipeline.
		bad := dir + "/bad.png"
		if err := os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot a picture at all"), 0o644); err != nil {
			t.Fatal(err)
		}
		stdout, _, err := runCLI(t, "upload", bad, "--server", url, "--wait", "--json")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 1 {
			t.Fatalf("err = %v, want exit 1", err)
		}
		var a wire.Asset
		decodeOnly(t, stdout, &a)
		if a.Status != wire.StatusFailed || a.Error == "" {
			t.Errorf("asset = %s %q, want failed with an error", a.Status, a.Error)
		}
	})

	t.Run("list", func(t *testing.T) {
		stdout, _, err := runCLI(t, "assets", "list", "--server", url)
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Count(stdout, "\n"); lines != 3 {
			t.Errorf("list printed %d lines, want 3:\n%s", lines, stdout)
		}
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{}, {"frobnicate"}, {"upload"}, {"assets", "get"}} {
			_, _, err := runCLI(t, args...)
			var ee exitError
			if !errors.As(err, &ee) || ee.code != 2 {
				t.Errorf("sluice %v: err = %v, want exit 2", args, err)
			}
		}
		if _, _, err := runCLI(t, "upload", dir+"/missing.mp4", "--server", url); err == nil {
			t.Error("upload of a missing file succeeded")
		}
	})
}

// child is `sluice serve` running as a separate process.
type child struct {
	cmd  *exec.Cmd
	url  string
	done chan error
	// printed is what the child printed on stderr outside its JSON log
	// (the first start's admin key banner), up to its "serving" line.
	printed []string

	mu   sync.Mutex
	logs []string // every line of its stderr
}

// logged returns the lines the child wrote to stderr so far.
func (c *child) logged() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.logs)
}

func startChild(t testing.TB, dataDir string, extra ...string) *child {
	t.Helper()
	return startChildEnv(t, nil, dataDir, extra...)
}

// startChildEnv starts `sluice serve` with env added to this process's.
func startChildEnv(t testing.TB, env []string, dataDir string, extra ...string) *child {
	t.Helper()
	return startProcess(t, env, append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--pipelines", mediatest.LightPipeline(t, 320)}, extra...)...)
}

// startProcess runs the sluice command with args (and env added to this
// process's) as a child, and waits until it serves.
func startProcess(t testing.TB, env []string, args ...string) *child {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SLUICE_TEST_MAIN_ARGS="+strings.Join(args, "\x1f"),
		"SLUICE_WASM_CACHE_DIR="+mediatest.WasmCacheDir())
	cmd.Env = append(cmd.Env, env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		started := false // only this goroutine touches it and c.printed until addr is sent
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				if line.Msg == "sluice serving" {
					started = true
					addr <- line.Addr
				}
			} else if !started {
				c.printed = append(c.printed, sc.Text())
			}
			c.mu.Lock()
			c.logs = append(c.logs, sc.Text())
			c.mu.Unlock()
			t.Log("child:", sc.Text())
		}
	}()
	go func() { c.done <- cmd.Wait() }()
	select {
	case a := <-addr:
		c.url = "http://" + a
	case err := <-c.done:
		t.Fatalf("sluice serve exited early: %v", err)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("sluice serve did not start in 60s")
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// waitReady polls /readyz until the child answers 200 (the WebAssembly
// engine compiled, the store and queue up).
func (c *child) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(c.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("sluice serve not ready after 2 minutes (last: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSIGTERMShutsDownGracefully(t *testing.T) {
	c := startChild(t, t.TempDir())
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
		c.done <- err // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("no exit 30s after SIGTERM")
	}
}

// TestCrashRecovery kills the server with SIGKILL in the middle of a job,
// starts it again on the same data dir, and checks that every asset ends
// succeeded with its outputs stored once.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir, "--concurrency", "1", "--ack-wait", "3s")
	cl := client.New(c.url, testToken)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	media := t.TempDir()
	var clips, ids []string
	for i := range 4 {
		clips = append(clips, mediatest.Generate(t, media, "c"+string(rune('0'+i)), mediatest.Clip{Width: 1280, Height: 720, Duration: 4, Video: true, Audio: true}))
	}
	for _, p := range clips {
		id, err := cl.UploadFile(ctx, p, client.UploadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Kill while the first job is running.
	deadline := time.Now().Add(time.Minute)
	for {
		a, err := cl.Asset(ctx, ids[0])
		if err == nil && a.Status == wire.StatusProcessing {
			break
		}
		if err == nil && a.Done() || time.Now().After(deadline) {
			t.Fatalf("never saw the first job running (status %s)", a.Status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.done
	c.done <- nil

	c2 := startChild(t, dir, "--concurrency", "2", "--ack-wait", "3s")
	cl2 := client.New(c2.url, testToken)
	for _, id := range ids {
		a, err := cl2.Wait(ctx, id, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != wire.StatusSucceeded || len(a.Outputs) != 2 {
			t.Errorf("asset %s after crash: %s %q, %d outputs; want succeeded with 2", id, a.Status, a.Error, len(a.Outputs))
		}
	}
	// One job, so one set of outputs, however often it ran.
	var files []string
	root := dir + "/bucket/assets/" + ids[0]
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 {
		t.Errorf("files for the interrupted asset = %v, want 2", files)
	}
}

// TestServeWithoutFFmpeg runs `sluice serve` with an empty PATH, as on a
// machine where FFmpeg was never installed: uploads still get probed,
// thumbnailed and their audio extracted, on the WebAssembly engine.
func TestServeWithoutFFmpeg(t *testing.T) {
	c := startChildEnv(t, []string{"PATH=" + t.TempDir()}, t.TempDir())
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true, AudioCodec: "libmp3lame", Ext: ".mkv"})
	stdout, stderr, err := runCLI(t, "upload", clip, "--server", c.url, "--wait", "--json")
	if err != nil {
		t.Fatalf("upload: %v\n%s", err, stderr)
	}
	var a wire.Asset
	decodeOnly(t, stdout, &a)
	if a.Status != wire.StatusSucceeded || len(a.Outputs) != 2 {
		t.Fatalf("asset = %s %q with %d outputs, want succeeded with thumbnail and audio", a.Status, a.Error, len(a.Outputs))
	}
	ready, err := client.New(c.url, testToken).HTTP.Get(c.url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	ready.Body.Close()
	if ready.StatusCode != 200 {
		t.Errorf("readyz = %d", ready.StatusCode)
	}
}

// TestPipelinesValidate: the CLI checks pipeline files and prints each
// error with its file, line and field, exiting 1.
func TestPipelinesValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("pipelines:\n  - extends: video\n    disable: [preview]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(`pipelines:
  - name: p
    steps:
      - uses: probe
      - uses: thumbnial
      - uses: thumbnail
        with: {width: wide}
        when: "media.duration >"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := runCLI(t, "pipelines", "validate", good)
	if err != nil || !strings.Contains(stdout, good+": ok") {
		t.Fatalf("validate good: %v\n%s%s", err, stdout, stderr)
	}
	_, stderr, err = runCLI(t, "pipelines", "validate", bad)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("validate bad: err %v, want exit 1", err)
	}
	for _, want := range []string{
		bad + `:5:15: pipelines[0].steps[1](thumbnial).uses: unknown step "thumbnial"`,
		bad + `:7:23: pipelines[0].steps[2](thumbnail).with.width: want an integer, got "wide"`,
		bad + `:8:15: pipelines[0].steps[2](thumbnail).when: invalid expression`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	stdout, _, err = runCLI(t, "pipelines", "list", "--pipelines", good)
	if err != nil || !strings.Contains(stdout, "video  (") || strings.Contains(stdout, "uses preview") {
		t.Errorf("list: %v\n%s", err, stdout)
	}
	stdout, _, err = runCLI(t, "pipelines", "steps")
	if err != nil || !strings.Contains(stdout, "hls  (heavy)") || !strings.Contains(stdout, "segment_duration") {
		t.Errorf("steps: %v\n%s", err, stdout)
	}
}
