package media

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"codeberg.org/gruf/go-ffmpreg/embed"
	"codeberg.org/gruf/go-ffmpreg/wasm"
	"github.com/tetratelabs/wazero"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// WasmConfig configures the WebAssembly engine.
type WasmConfig struct {
	// CacheDir keeps wazero's compiled code between runs, so that only the
	// first start pays for compiling FFmpeg. Empty: compile in memory
	// every start.
	CacheDir string
	// MemoryLimit caps each run's linear memory, in bytes. Default 512 MiB.
	MemoryLimit int64
}

// Wasm runs FFmpeg 5.1 compiled to WASI (go-ffmpreg) on wazero, inside
// this process. A run sees only the input's directory, read-only, and its
// output directory; it has no network (WASI has no sockets), a memory cap,
// and ends when its context does.
type Wasm struct {
	cfg   WasmConfig
	ready chan struct{}
	rt    wazero.Runtime
	mod   wazero.CompiledModule
	err   error
	took  time.Duration
}

var _ Engine = (*Wasm)(nil)

// instances numbers module instances.
var instances atomic.Uint64

// NewWasm starts compiling FFmpeg in the background and returns at once;
// Ready reports when it is done. Runs wait for it.
func NewWasm(cfg WasmConfig) *Wasm {
	if cfg.MemoryLimit <= 0 {
		cfg.MemoryLimit = 512 << 20
	}
	w := &Wasm{cfg: cfg, ready: make(chan struct{})}
	go w.compile()
	return w
}

func (w *Wasm) compile() {
	defer close(w.ready)
	start := time.Now()
	ctx := context.Background()
	rc := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(w.cfg.MemoryLimit / 65536))
	if w.cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(w.cfg.CacheDir)
		if err != nil {
			w.err = fmt.Errorf("media: wasm compilation cache: %w", err)
			return
		}
		rc = rc.WithCompilationCache(cache)
	}
	rt, err := wasm.NewRuntime(ctx, rc)
	if err != nil {
		w.err = fmt.Errorf("media: wasm runtime: %w", err)
		return
	}
	w.mod, w.err = rt.CompileModule(ctx, embed.B())
	if w.err != nil {
		w.err = fmt.Errorf("media: compile FFmpeg: %w", w.err)
		return
	}
	w.rt = rt
	w.took = time.Since(start)
}

// Ready waits for compilation, or ctx, and reports its outcome.
func (w *Wasm) Ready(ctx context.Context) error {
	select {
	case <-w.ready:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("media: wasm engine still compiling: %w", ctx.Err())
	}
}

// CompileTime is how long getting the module ready took (from the cache,
// when there was one).
func (w *Wasm) CompileTime() time.Duration { <-w.ready; return w.took }

// Close releases the runtime.
func (w *Wasm) Close() error {
	<-w.ready
	if w.rt != nil {
		return w.rt.Close(context.Background())
	}
	return nil
}

// Name implements Engine.
func (*Wasm) Name() string { return "wasm" }

// Guest paths of the two mounts.
const (
	guestIn  = "/in"
	guestOut = "/out"
)

// Probe implements Engine.
func (w *Wasm) Probe(ctx context.Context, input string) (*pipeline.Media, error) {
	head, err := precheck(input)
	if err != nil {
		return nil, err
	}
	stdout := &boundedBuffer{max: 8 << 20}
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	code, err := w.run(ctx, "ffprobe", filepath.Dir(input), "", probeArgs(guestIn+"/"+filepath.Base(input)), stdout, stderr)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, probeFailure(stderr.String(), head, fmt.Errorf("ffprobe exited with %d", code))
	}
	if stdout.overflow {
		return nil, pipeline.Invalid("ffprobe output exceeds %d bytes", stdout.max)
	}
	return parseProbe(stdout.Bytes(), stderr.String())
}

// FFmpeg implements Engine.
func (w *Wasm) FFmpeg(ctx context.Context, cmd Command) error {
	inDir, guestInput := "", ""
	if cmd.Input != "" {
		inDir, guestInput = filepath.Dir(cmd.Input), guestIn+"/"+filepath.Base(cmd.Input)
	}
	args := append(append([]string(nil), globalArgs...), mapArgs(cmd.Args, guestInput, func(name string) string {
		return guestOut + "/" + name
	})...)
	stderr := &boundedBuffer{max: 16 << 10, keepTail: true}
	code, err := w.run(ctx, "ffmpeg", inDir, cmd.Dir, args, nil, stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		return ffmpegFailure(stderr.String(), fmt.Errorf("ffmpeg exited with %d", code))
	}
	return nil
}

// run instantiates the module as prog with the two mounts. A run that
// traps (out of memory, say) is the input's fault and becomes a
// MediaError; a run cut short by ctx returns ctx's error.
func (w *Wasm) run(ctx context.Context, prog, inDir, outDir string, args []string, stdout, stderr *boundedBuffer) (uint32, error) {
	if err := w.Ready(ctx); err != nil {
		return 0, err
	}
	fs := wazero.NewFSConfig()
	if inDir != "" {
		fs = fs.WithReadOnlyDirMount(inDir, guestIn)
	}
	if outDir != "" {
		fs = fs.WithDirMount(outDir, guestOut)
	}
	wargs := wasm.Args{
		Name:   prog,
		Args:   args,
		Stderr: stderr,
		Config: func(c wazero.ModuleConfig) wazero.ModuleConfig {
			// No environment, no clock tricks; the monotonic and wall
			// clocks stay the host's so that timings in logs are true.
			// Instances run side by side, and a runtime refuses two
			// modules of one name.
			name := fmt.Sprintf("%s-%d", prog, instances.Add(1))
			return c.WithName(name).WithFSConfig(fs).WithSysWalltime().WithSysNanotime().WithSysNanosleep()
		},
	}
	if stdout != nil {
		wargs.Stdout = stdout
	}
	code, err := wasm.Run(ctx, w.rt, w.mod, wargs)
	if ctx.Err() != nil {
		// wazero ends a module whose context is done with an exit code.
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, &pipeline.MediaError{Reason: prog + " (wasm): " + trapReason(err, stderr.String()), Err: err}
	}
	return code, nil
}

// trapReason says in one line why the module stopped abnormally.
func trapReason(err error, stderr string) string {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	if stderr != "" {
		return msg + " (" + lastLine(stderr) + ")"
	}
	return msg
}
