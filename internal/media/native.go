package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// NativeConfig configures the native engine.
type NativeConfig struct {
	// FFmpeg and FFprobe are executable names or paths; looked up in PATH.
	FFmpeg  string
	FFprobe string
	// MemoryLimit caps each child's memory in bytes (0: no cap): memory.max
	// of its own cgroup when cgroup v2 is in use, else its address space
	// (RLIMIT_AS, applied with prlimit(1)).
	MemoryLimit int64
	// CPUTime caps each child's processor time, all threads together
	// (RLIMIT_CPU, applied with prlimit(1); 0: no cap). It is a backstop
	// behind the steps' wall-clock timeouts: the default, an hour per core
	// of this machine, is what a child using every core for an hour would
	// take, so it binds only where a pipeline grants a step more time than
	// that.
	CPUTime time.Duration
	// Threads passed to ffmpeg (0: ffmpeg's choice).
	Threads int
	// TempDir is where each child gets its own TMPDIR and HOME, removed
	// after the run ("": the system's temporary directory).
	TempDir string
	// Cgroup says where children get cgroups of their own. "" or "auto":
	// under this process's cgroup when cgroup v2 is mounted with the
	// memory and pids controllers and that cgroup may be split (a
	// delegated subtree, systemd's Delegate=yes, or a container where
	// Sluice runs alone), else silently rlimits only. "off": rlimits only.
	// A path: a cgroup v2 directory made for Sluice that holds no
	// processes (mkdir /sys/fs/cgroup/sluice as root); NewNative fails
	// when it cannot be used.
	Cgroup string
	// HWAccel picks the H.264 encoder of EncodeH264: "none" (the default:
	// libx264), "auto" (the first hardware encoder that works here), or
	// "nvenc", "vaapi", "qsv". A hardware encoder that is not available
	// falls back to libx264, as does any encode that fails on it.
	HWAccel string
	// HWDevice is the DRM render node for VAAPI ("": the first
	// /dev/dri/renderD*).
	HWDevice string
	// Log receives what the engine decided (sandbox, hardware) and
	// hardware encode failures (nil: slog.Default()).
	Log *slog.Logger
}

// DefaultNativeConfig works on a laptop.
func DefaultNativeConfig() NativeConfig {
	return NativeConfig{
		FFmpeg:      "ffmpeg",
		FFprobe:     "ffprobe",
		MemoryLimit: 2 << 30,
		CPUTime:     time.Duration(runtime.NumCPU()) * time.Hour,
		HWAccel:     HWNone,
	}
}

// Validate checks the settings that NewNative does not look up.
func (c NativeConfig) Validate() error {
	switch c.HWAccel {
	case "", HWNone, HWAuto, HWNVENC, HWVAAPI, HWQSV:
	default:
		return fmt.Errorf("media: hardware acceleration %q must be none, auto, nvenc, vaapi or qsv", c.HWAccel)
	}
	switch {
	case c.Cgroup == "", c.Cgroup == "auto", c.Cgroup == "off":
	case !filepath.IsAbs(c.Cgroup):
		return fmt.Errorf("media: cgroup %q must be auto, off or an absolute path", c.Cgroup)
	}
	if c.MemoryLimit < 0 || c.CPUTime < 0 || c.Threads < 0 {
		return errors.New("media: native memory limit, CPU time and threads must not be negative")
	}
	return nil
}

// Native runs the system's ffmpeg and ffprobe as child processes, each in
// the sandbox that NewNative found this machine supports (see Sandbox).
type Native struct {
	ffmpeg, ffprobe string
	cfg             NativeConfig
	log             *slog.Logger
	sb              *sandbox
	hw              hwState
}

var _ Engine = (*Native)(nil)

// ErrNotInstalled means ffmpeg or ffprobe was not found.
var ErrNotInstalled = errors.New("media: ffmpeg/ffprobe not installed")

// NewNative finds the binaries; it fails with ErrNotInstalled when either
// is missing. It works out once which sandbox mechanisms this machine
// allows and, when HWAccel asks for it, which hardware encoder works.
func NewNative(cfg NativeConfig) (*Native, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FFmpeg == "" {
		cfg.FFmpeg = "ffmpeg"
	}
	if cfg.FFprobe == "" {
		cfg.FFprobe = "ffprobe"
	}
	ff, err := exec.LookPath(cfg.FFmpeg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	fp, err := exec.LookPath(cfg.FFprobe)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	n := &Native{ffmpeg: ff, ffprobe: fp, cfg: cfg, log: cfg.Log}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.sb, err = newSandbox(cfg, ff); err != nil {
		return nil, err
	}
	n.log.Debug("native ffmpeg sandbox", "sandbox", n.Sandbox())
	n.detectHW(context.Background())
	return n, nil
}

// Sandboxed reports whether children run under a memory cap.
func (n *Native) Sandboxed() bool { return n.sb.memoryCapped() }

// Sandbox describes how children are fenced on this machine, in one line
// for logs and /readyz: cgroup or rlimits, network namespace, temp dir.
func (n *Native) Sandbox() string { return n.sb.String() }

// Probe implements Engine.
func (n *Native) Probe(ctx context.Context, input string) (*pipeline.Media, error) {
	head, err := precheck(input)
	if err != nil {
		return nil, err
	}
	stdout := &boundedBuffer{max: 8 << 20}
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	info, err := n.run(ctx, "", n.ffprobe, probeArgs(input), stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if lerr := n.limitFailure("ffprobe", info, stderr.String(), err); lerr != nil {
				return nil, lerr
			}
			return nil, probeFailure(stderr.String(), head, err)
		}
		return nil, err
	}
	if stdout.overflow {
		return nil, pipeline.Invalid("ffprobe output exceeds %d bytes", stdout.max)
	}
	return parseProbe(stdout.Bytes(), stderr.String())
}

// Name implements Engine.
func (*Native) Name() string { return "native" }

// FFmpeg implements Engine.
func (n *Native) FFmpeg(ctx context.Context, cmd Command) error {
	full := append([]string(nil), globalArgs...)
	if n.cfg.Threads > 0 {
		full = append(full, "-threads", strconv.Itoa(n.cfg.Threads))
	}
	full = append(full, mapArgs(cmd.Args, cmd.Input, func(name string) string {
		return filepath.Join(cmd.Dir, name)
	})...)
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	info, err := n.run(ctx, cmd.Dir, n.ffmpeg, full, nil, stderr)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if lerr := n.limitFailure("ffmpeg", info, stderr.String(), err); lerr != nil {
			return lerr
		}
		return ffmpegFailure(stderr.String(), err)
	}
	return err
}

// runInfo is what a finished child left to explain its failure.
type runInfo struct {
	cpu time.Duration // user and system time, all threads
	oom bool          // its cgroup's OOM killer struck
}

// limitFailure explains a failed run that hit one of the sandbox's
// limits, as a MediaError (running it again would hit it again); nil when
// the failure was something else.
func (n *Native) limitFailure(tool string, info runInfo, stderr string, err error) error {
	cause := fmt.Errorf("%w\n%s", err, stderr)
	switch {
	case info.oom, n.sb.asLimit() && allocFailed(stderr):
		return &pipeline.MediaError{Reason: fmt.Sprintf("%s ran out of its memory limit of %s", tool, memLimitString(n.cfg.MemoryLimit)), Err: cause}
	case n.sb.cpuLimit() > 0 && info.cpu >= n.sb.cpuLimit():
		// Past the soft limit the kernel sends SIGXCPU, on which ffmpeg
		// exits quietly (status 255), then SIGKILL at the hard limit.
		return &pipeline.MediaError{Reason: fmt.Sprintf("%s exceeded its CPU-time limit of %s", tool, cpuLimitString(n.sb.cpuLimit())), Err: cause}
	}
	return nil
}

// allocFailed reports whether stderr shows an allocation refused, which
// under an address-space cap is the cap.
func allocFailed(stderr string) bool {
	for _, s := range []string{"Cannot allocate memory", "malloc of size", "Out of memory", "out of memory"} {
		if strings.Contains(stderr, s) {
			return true
		}
	}
	return false
}

// memLimitString writes n in the largest binary unit that divides it.
func memLimitString(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// cpuLimitString is d.String() without zero trailing units: 2h, not 2h0m0s.
func cpuLimitString(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// boundedBuffer keeps at most max bytes: the first max (capped) or the
// last max (tail).
type boundedBuffer struct {
	bytes.Buffer
	max      int
	keepTail bool
	overflow bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if !b.keepTail {
		if room := b.max - b.Len(); len(p) > room {
			p = p[:max(room, 0)]
			b.overflow = true
		}
		b.Buffer.Write(p)
		return n, nil
	}
	b.Buffer.Write(p)
	if over := b.Len() - b.max; over > 0 {
		rest := append([]byte(nil), b.Bytes()[over:]...)
		b.Reset()
		b.Buffer.Write(rest)
		b.overflow = true
	}
	return n, nil
}
