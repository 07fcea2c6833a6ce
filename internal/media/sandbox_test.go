package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// These tests drive the native engine's sandbox with real ffmpeg, and,
// where a property needs a process FFmpeg would not be (one that forks,
// opens a socket, reads its environment), with a shell through the same
// run path every ffmpeg and ffprobe child takes.

// sandboxNative is a native engine with cfg changed by edit.
func sandboxNative(t *testing.T, edit func(*NativeConfig)) *Native {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	cfg := DefaultNativeConfig()
	cfg.TempDir = t.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	n, err := NewNative(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sandbox: %s", n.Sandbox())
	return n
}

// requirePrlimit fails the test where the rlimits cannot be applied.
func requirePrlimit(t *testing.T, n *Native) {
	t.Helper()
	if n.sb.prlimit == "" {
		t.Fatal("prlimit is not installed: the rlimits cannot be tested (apt-get install util-linux)")
	}
}

// sandboxShell runs a sh script through the engine's run path.
func sandboxShell(ctx context.Context, n *Native, dir, script string) (string, error) {
	var out, errb bytes.Buffer
	_, err := n.run(ctx, dir, "/bin/sh", []string{"-c", script}, &out, &errb)
	if err != nil {
		return out.String(), fmt.Errorf("%w: %s", err, errb.String())
	}
	return out.String(), nil
}

// sandboxClip generates a small clip and probes it.
func sandboxClip(t *testing.T, n *Native) (string, *pipeline.Media) {
	t.Helper()
	in := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 320, Height: 180, Duration: 1, Video: true})
	m, err := n.Probe(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return in, m
}

// endlessEncode is an encode that never ends by itself: the input looped
// forever, encoded to nothing.
func endlessEncode(in string, m *pipeline.Media) Command {
	return Command{Input: in, Args: slices.Concat(
		[]string{"-stream_loop", "-1"}, inputArgs(m),
		[]string{"-c:v", "libx264", "-preset", "medium", "-f", "null", "-"})}
}

// liveProcs lists the processes, zombies aside, whose command line
// contains marker.
func liveProcs(marker string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		stat, _ := os.ReadFile(d + "/stat")
		if _, rest, ok := bytes.Cut(stat, []byte(") ")); ok && bytes.HasPrefix(rest, []byte("Z")) {
			continue
		}
		found = append(found, filepath.Base(d)+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}

// waitProcs waits until the processes with marker number want (0: none,
// else at least want), and fails the test if they never do.
func waitProcs(t *testing.T, marker string, want int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := liveProcs(marker)
		if (want == 0 && len(got) == 0) || (want > 0 && len(got) >= want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes with %q: %d, want %d: %v", marker, len(got), want, got)
		}
	}
}

// uniqueSleep is a sleep duration no other process is likely to use, so
// that its command line finds the process.
func uniqueSleep() string {
	return fmt.Sprintf("%d.%09d", 86400+os.Getpid()%1000, time.Now().UnixNano()%1e9)
}

func TestSandboxCPUTimeLimit(t *testing.T) {
	n := sandboxNative(t, func(c *NativeConfig) { c.CPUTime = 1500 * time.Millisecond })
	requirePrlimit(t, n)
	in, m := sandboxClip(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := n.FFmpeg(ctx, endlessEncode(in, m))
	if ctx.Err() != nil {
		t.Fatalf("the encode ran until the test's deadline: the CPU-time limit did not stop it (err %v)", err)
	}
	if !pipeline.IsMediaError(err) || err.Error() != "ffmpeg exceeded its CPU-time limit of 2s" {
		t.Fatalf("err = %v, want the MediaError %q (1.5s rounds up to whole seconds)", err, "ffmpeg exceeded its CPU-time limit of 2s")
	}
}

func TestSandboxMemoryLimit(t *testing.T) {
	n := sandboxNative(t, func(c *NativeConfig) { c.MemoryLimit = 512 << 20 })
	if !n.Sandboxed() {
		t.Fatalf("no memory cap applied: %s", n.Sandbox())
	}
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb.png")
	mediatest.PNG(t, bomb, 8000, 8000)
	m, err := n.Probe(context.Background(), bomb)
	if err != nil {
		t.Fatal(err)
	}
	err = n.FFmpeg(context.Background(), Command{Input: bomb, Dir: dir, Args: slices.Concat(
		inputArgs(m), []string{"-vf", "scale=320:-2", "-frames:v", "1", Out("out.jpg")})})
	const want = "ffmpeg ran out of its memory limit of 512 MiB"
	if !pipeline.IsMediaError(err) || err.Error() != want {
		t.Fatalf("err = %v, want the MediaError %q", err, want)
	}
}

// TestSandboxKillsProcessGroup: what a child starts in its process group
// dies with it, whether the run times out or the child exits by itself.
func TestSandboxKillsProcessGroup(t *testing.T) {
	n := sandboxNative(t, nil)
	t.Run("timeout", func(t *testing.T) {
		mark := uniqueSleep()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := sandboxShell(ctx, n, "", "sleep "+mark+" & sleep "+mark+"; wait")
			done <- err
		}()
		waitProcs(t, mark, 2)
		cancel()
		if err := <-done; err == nil {
			t.Fatal("the cancelled run reported success")
		}
		waitProcs(t, mark, 0)
	})
	t.Run("exit", func(t *testing.T) {
		mark := uniqueSleep()
		// The background sleep outlives the shell unless the group is
		// killed after the run.
		if _, err := sandboxShell(context.Background(), n, "", "sleep "+mark+" & echo started"); err != nil {
			t.Fatal(err)
		}
		waitProcs(t, mark, 0)
	})
	t.Run("ffmpeg", func(t *testing.T) {
		in, m := sandboxClip(t, n)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.FFmpeg(ctx, endlessEncode(in, m)) }()
		waitProcs(t, in, 1)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		waitProcs(t, in, 0)
	})
}

// TestSandboxPrivateTemp: each run has a TMPDIR and HOME of its own, only
// its owner may enter, gone after the run; the environment holds nothing
// else of this process.
func TestSandboxPrivateTemp(t *testing.T) {
	n := sandboxNative(t, nil)
	t.Setenv("SLUICE_SECRET_FOR_TEST", "leak")
	script := `touch "$TMPDIR/scratch" && echo "$TMPDIR" && echo "$HOME" && stat -c %a "$TMPDIR" && pwd && env`
	var tmps []string
	for _, dir := range []string{"", t.TempDir()} {
		out, err := sandboxShell(context.Background(), n, dir, script)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) < 5 {
			t.Fatalf("output %q", out)
		}
		tmp, home, mode, pwd, env := lines[0], lines[1], lines[2], lines[3], lines[4:]
		if filepath.Dir(tmp) != n.cfg.TempDir || home != tmp || mode != "700" {
			t.Errorf("TMPDIR %s, HOME %s, mode %s: want a directory of mode 700 in %s, as both", tmp, home, mode, n.cfg.TempDir)
		}
		wd, _ := os.Getwd()
		if want := orElse(dir, wd); pwd != want {
			t.Errorf("working directory %s, want %s", pwd, want)
		}
		for _, kv := range env {
			name, _, _ := strings.Cut(kv, "=")
			if !slices.Contains([]string{"LC_ALL", "TMPDIR", "HOME", "PWD"}, name) {
				t.Errorf("child environment has %s", kv)
			}
		}
		if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after the run (%v)", tmp, err)
		}
		tmps = append(tmps, tmp)
	}
	if tmps[0] == tmps[1] {
		t.Errorf("two runs shared TMPDIR %s", tmps[0])
	}
}

// orElse is a, or b when a is empty.
func orElse(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestSandboxNetwork: a child cannot reach a listener on this machine's
// loopback, neither a shell opening a socket nor ffmpeg told to read a
// tcp:// input without a protocol whitelist; with one, ffmpeg refuses
// first. The same shell in the host's network namespace does connect,
// which shows the check can fail.
func TestSandboxNetwork(t *testing.T) {
	n := sandboxNative(t, nil)
	if n.sb.net.flags == 0 {
		if os.Geteuid() == 0 {
			t.Fatalf("running as root, yet no network namespace: %s", n.sb.net.why)
		}
		t.Skipf("not root and no user namespaces here (%s): nothing to test", n.sb.net.why)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to open a socket from a shell")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	connect := func(n *Native) error {
		var out bytes.Buffer
		_, err := n.run(context.Background(), "", bash, []string{"-c", "exec 3<>/dev/tcp/127.0.0.1/" + port}, nil, &out)
		return err
	}
	ctx := context.Background()
	url := "tcp://127.0.0.1:" + port
	if err := connect(n); err == nil {
		t.Error("a shell in the sandbox connected to the host's loopback")
	}
	if err := n.FFmpeg(ctx, Command{Dir: t.TempDir(), Args: []string{"-i", url, "-f", "null", "-"}}); err == nil {
		t.Error("ffmpeg read a tcp:// input")
	}
	err = n.FFmpeg(ctx, Command{Dir: t.TempDir(), Args: []string{"-protocol_whitelist", "file", "-i", url, "-f", "null", "-"}})
	if err == nil || !strings.Contains(fmt.Sprint(errors.Unwrap(err)), "not on whitelist") {
		t.Errorf("err = %v, want the protocol whitelist to refuse tcp", err)
	}
	if got := accepted.Load(); got != 0 {
		t.Fatalf("the listener accepted %d connections from the sandbox", got)
	}

	sb := *n.sb
	sb.net = netns{}
	host := &Native{ffmpeg: n.ffmpeg, cfg: n.cfg, log: n.log, sb: &sb}
	if err := connect(host); err != nil {
		t.Fatalf("without the namespace the shell could not connect either (%v): the check above proves nothing", err)
	}
	for deadline := time.Now().Add(10 * time.Second); accepted.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the listener never saw the connection from the host's network namespace")
		}
	}
}

// TestSandboxCgroupRun needs a writable cgroup v2 hierarchy but no
// controllers (so it runs on hybrid hosts too): a run's child starts in a
// cgroup of its own, and when the run ends, that cgroup is removed and
// everything in it killed, even a process that left the process group.
func TestSandboxCgroupRun(t *testing.T) {
	mnt, root, err := cgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup v2 here (%v): only the rlimit fallback applies", err)
	}
	parent := filepath.Join(mnt, fmt.Sprintf("sluice-test-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		if os.Geteuid() == 0 {
			t.Fatalf("running as root, yet cannot create a cgroup: %v", err)
		}
		t.Skipf("cannot create a cgroup in %s (%v): the child-cgroup path cannot run here", mnt, err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(parent) })
	cg := &cgroupParent{dir: parent}
	if needControllers(parent) == nil && enableControllers(parent) == nil {
		cg.memory, cg.pids = true, true
	}
	t.Logf("cgroup v2 at %s; memory and pids controllers: %v", mnt, cg.memory)

	n := sandboxNative(t, func(c *NativeConfig) { c.Cgroup = "off"; c.MemoryLimit = 300 << 20 })
	sb := *n.sb
	sb.cg = cg
	n.sb = &sb
	mark := uniqueSleep()
	out, err := sandboxShell(context.Background(), n, "",
		`sed -n 's/^0:://p' /proc/self/cgroup; d=`+mnt+`$(sed -n 's/^0:://p' /proc/self/cgroup); `+
			`cat $d/pids.max $d/memory.max 2>/dev/null; `+
			`setsid sh -c 'echo >"$TMPDIR/left"; exec sleep `+mark+`' >/dev/null 2>&1 & `+
			`while [ ! -s "$TMPDIR/left" ]; do sleep 0.01; done`)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	rel, _ := filepath.Rel(root, strings.TrimPrefix(parent, mnt))
	want := filepath.Join("/", rel, fmt.Sprintf("run-%d-1", os.Getpid()))
	if lines[0] != want {
		t.Errorf("the child ran in cgroup %s, want %s", lines[0], want)
	}
	if cg.memory {
		if got := strings.Join(lines[1:], " "); got != "1024 314572800" {
			t.Errorf("pids.max and memory.max: %q, want 1024 314572800", got)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, lines[0])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the run's cgroup is still there (%v)", err)
	}
	// setsid took the sleep out of the process group; cgroup.kill still
	// reaches it.
	waitProcs(t, mark, 0)
}

// TestSandboxCgroupLimits: where cgroup v2 has the memory and pids
// controllers, a configured cgroup gives each run memory.max, and a run
// past it is reported as out of memory. Elsewhere it checks what the
// engine falls back to, and says so.
func TestSandboxCgroupLimits(t *testing.T) {
	mnt, _, err := cgroup2Mount()
	if err == nil {
		err = needControllers(mnt)
	}
	if err != nil {
		n := sandboxNative(t, nil)
		if n.sb.cg != nil || !strings.HasPrefix(n.Sandbox(), "no cgroup (") {
			t.Fatalf("cgroups are unusable here (%v), yet the engine says %q", err, n.Sandbox())
		}
		if !n.Sandboxed() {
			t.Fatalf("without cgroups the rlimit memory cap must apply: %s", n.Sandbox())
		}
		cfg := DefaultNativeConfig()
		cfg.Cgroup = orElse(mnt, "/sys/fs/cgroup")
		if _, err := NewNative(cfg); err == nil {
			t.Fatalf("NewNative with the unusable cgroup %s succeeded", cfg.Cgroup)
		} else {
			t.Logf("explicit cgroup: %v", err)
		}
		t.Logf("this machine has no cgroup v2 with memory and pids (%v): checked the fallback and the explicit-setting error only", err)
		return
	}
	if os.Geteuid() != 0 {
		t.Skipf("cgroup v2 with memory and pids is here, but making cgroups below %s needs root", mnt)
	}
	if err := enableControllers(mnt); err != nil {
		t.Fatalf("cannot enable the memory and pids controllers below %s: %v", mnt, err)
	}
	parent := filepath.Join(mnt, fmt.Sprintf("sluice-test-limits-%d", os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatalf("running as root, yet cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(parent) })
	n := sandboxNative(t, func(c *NativeConfig) { c.Cgroup = parent; c.MemoryLimit = 128 << 20 })
	if n.sb.cg == nil || !strings.HasPrefix(n.Sandbox(), "cgroup v2 per run under "+parent) {
		t.Fatalf("sandbox %q, want cgroups under %s", n.Sandbox(), parent)
	}
	if n.sb.asLimit() {
		t.Error("the address-space rlimit applies alongside memory.max")
	}
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb.png")
	mediatest.PNG(t, bomb, 8000, 8000)
	err = n.FFmpeg(context.Background(), Command{Input: bomb, Dir: dir, Args: slices.Concat(
		[]string{"-protocol_whitelist", "file", "-f", "png_pipe", "-i", InputArg},
		[]string{"-vf", "scale=320:-2", "-frames:v", "1", Out("out.jpg")})})
	// The decode peaks at about 256 MiB resident.
	const want = "ffmpeg ran out of its memory limit of 128 MiB"
	if !pipeline.IsMediaError(err) || err.Error() != want {
		t.Fatalf("err = %v, want the MediaError %q", err, want)
	}
	if runs, _ := filepath.Glob(filepath.Join(parent, "run-*")); len(runs) != 0 {
		t.Errorf("run cgroups left behind: %v", runs)
	}
}

func TestNativeConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		cfg NativeConfig
		ok  bool
	}{
		{DefaultNativeConfig(), true},
		{NativeConfig{HWAccel: "auto", Cgroup: "/sys/fs/cgroup/sluice"}, true},
		{NativeConfig{HWAccel: "cuda"}, false},
		{NativeConfig{Cgroup: "sluice"}, false},
		{NativeConfig{CPUTime: -time.Second}, false},
	} {
		if err := tt.cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", tt.cfg, err, tt.ok)
		}
	}
}

func TestLimitStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{memLimitString(512 << 20), "512 MiB"},
		{memLimitString(2 << 30), "2 GiB"},
		{memLimitString(1000), "1000 bytes"},
		{cpuLimitString(2 * time.Hour), "2h"},
		{cpuLimitString(90 * time.Minute), "1h30m"},
		{cpuLimitString(time.Minute), "1m"},
		{cpuLimitString(2 * time.Second), "2s"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
