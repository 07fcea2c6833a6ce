package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// NativeConfig configures the native engine.
type NativeConfig struct {
	// FFmpeg and FFprobe are executable names or paths; looked up in PATH.
	FFmpeg  string
	FFprobe string
	// MemoryLimit caps each child's address space in bytes (0: no cap).
	// Applied with prlimit(1) when it is installed.
	MemoryLimit int64
	// Threads passed to ffmpeg (0: ffmpeg's choice).
	Threads int
}

// DefaultNativeConfig works on a laptop.
func DefaultNativeConfig() NativeConfig {
	return NativeConfig{FFmpeg: "ffmpeg", FFprobe: "ffprobe", MemoryLimit: 2 << 30}
}

// Native runs the system's ffmpeg and ffprobe as child processes.
type Native struct {
	ffmpeg, ffprobe string
	prlimit         string // "" when unavailable or not wanted
	cfg             NativeConfig
}

var _ Engine = (*Native)(nil)

// ErrNotInstalled means ffmpeg or ffprobe was not found.
var ErrNotInstalled = errors.New("media: ffmpeg/ffprobe not installed")

// NewNative finds the binaries; it fails with ErrNotInstalled when either
// is missing.
func NewNative(cfg NativeConfig) (*Native, error) {
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
	n := &Native{ffmpeg: ff, ffprobe: fp, cfg: cfg}
	if cfg.MemoryLimit > 0 {
		n.prlimit, _ = exec.LookPath("prlimit")
	}
	return n, nil
}

// Sandboxed reports whether resource limits are applied to children.
func (n *Native) Sandboxed() bool { return n.prlimit != "" }

// Probe implements Engine.
func (n *Native) Probe(ctx context.Context, input string) (*pipeline.Media, error) {
	head, err := precheck(input)
	if err != nil {
		return nil, err
	}
	stdout := &boundedBuffer{max: 8 << 20}
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	err = n.run(ctx, "", n.ffprobe, probeArgs(input), stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
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
	err := n.run(ctx, cmd.Dir, n.ffmpeg, full, nil, stderr)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return ffmpegFailure(stderr.String(), err)
	}
	return err
}

// run starts bin in its own process group, in dir, with no environment and
// no stdin, and kills the whole group when ctx ends.
func (n *Native) run(ctx context.Context, dir, bin string, args []string, stdout, stderr *boundedBuffer) error {
	name := bin
	if n.prlimit != "" {
		args = append([]string{
			"--as=" + strconv.FormatInt(n.cfg.MemoryLimit, 10),
			"--core=0",
			"--", bin,
		}, args...)
		name = n.prlimit
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = []string{"LC_ALL=C"}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		// Negative pid: the whole process group, in case FFmpeg forked.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd.Run()
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
