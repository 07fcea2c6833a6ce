package media_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// TestMain lets the test binary run one media job as a child process
// (BenchmarkEdgeRecipe measures its time and peak memory from outside).
func TestMain(m *testing.M) {
	if spec := os.Getenv("SLUICE_MEDIA_BENCH_JOB"); spec != "" {
		if err := benchJob(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchMedia makes (once per machine) the files the benchmarks use.
func benchMedia(b *testing.B) (short, long string) {
	dir := filepath.Join(os.TempDir(), "sluice-bench-media")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	short = filepath.Join(dir, "720p-10s.mp4")
	long = filepath.Join(dir, "360p-10min.mp4")
	if _, err := os.Stat(short); err != nil {
		mediatest.Run(b, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=10",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
			"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", short+".tmp.mp4")
		_ = os.Rename(short+".tmp.mp4", short)
	}
	if _, err := os.Stat(long); err != nil {
		mediatest.Run(b, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=600",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=600",
			"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", long+".tmp.mp4")
		_ = os.Rename(long+".tmp.mp4", long)
	}
	return short, long
}

// BenchmarkEngines times each operation on native FFmpeg and on the
// WebAssembly engine, alternating, in one run, and reports the medians
// and their ratio.
func BenchmarkEngines(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	short, long := benchMedia(b)
	native, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		b.Fatal(err)
	}
	wasm := media.NewWasm(media.WasmConfig{CacheDir: mediatest.WasmCacheDir()})
	defer wasm.Close()
	if err := wasm.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	probe := func(e media.Engine, in string) *pipeline.Media {
		m, err := e.Probe(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	mShort, mLong := probe(native, short), probe(native, long)
	thumb := func(in string, m *pipeline.Media, at float64) func(*media.Engines, string) error {
		return func(e *media.Engines, dir string) error {
			_, err := (&media.Thumbnail{Engines: e, Width: 640, At: at}).Run(ctx, &pipeline.Job{Input: in, Dir: dir, Media: m})
			return err
		}
	}
	ops := []struct {
		name string
		run  func(e *media.Engines, dir string) error
	}{
		{"probe", func(e *media.Engines, dir string) error {
			_, err := (&media.Probe{Engines: e}).Run(ctx, &pipeline.Job{Input: short, Dir: dir})
			return err
		}},
		{"thumbnail-2s-720p", thumb(short, mShort, 2)},
		{"thumbnail-90pct-10min", thumb(long, mLong, 540)},
		{"audio-copy-10min", func(e *media.Engines, dir string) error {
			_, err := (&media.Audio{Engines: e}).Run(ctx, &pipeline.Job{Input: long, Dir: dir, Media: mLong})
			return err
		}},
		{"x264-encode-4s-360p", func(e *media.Engines, dir string) error {
			eng, err := e.Pick("", false)
			if err != nil {
				return err
			}
			return eng.FFmpeg(ctx, media.Command{Input: short, Dir: dir, Args: []string{
				"-t", "4", "-i", media.InputArg, "-an", "-vf", "scale=-2:360",
				"-c:v", "libx264", "-preset", "veryfast", media.Out("out.mp4")}})
		}},
	}
	engines := map[string]*media.Engines{
		"native": {Native: native, Default: media.ModeNative},
		"wasm":   {Wasm: wasm, Default: media.ModeWasm},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			times := map[string][]float64{}
			for range b.N {
				for _, name := range []string{"native", "wasm"} {
					dir := b.TempDir()
					start := time.Now()
					if err := op.run(engines[name], dir); err != nil {
						b.Fatalf("%s: %v", name, err)
					}
					times[name] = append(times[name], float64(time.Since(start).Microseconds())/1000)
				}
			}
			n, w := medianOf(times["native"]), medianOf(times["wasm"])
			b.ReportMetric(n, "native-ms")
			b.ReportMetric(w, "wasm-ms")
			b.ReportMetric(w/n, "wasm/native")
		})
	}
}

// BenchmarkWasmColdStart compares getting the WebAssembly engine ready
// with an empty compilation cache (a first start) and with a warm one.
func BenchmarkWasmColdStart(b *testing.B) {
	var cold, warm []float64
	for range b.N {
		dir := b.TempDir()
		for _, list := range []*[]float64{&cold, &warm} {
			start := time.Now()
			w := media.NewWasm(media.WasmConfig{CacheDir: dir})
			if err := w.Ready(context.Background()); err != nil {
				b.Fatal(err)
			}
			*list = append(*list, float64(time.Since(start).Milliseconds()))
			w.Close()
		}
	}
	c, w := medianOf(cold), medianOf(warm)
	b.ReportMetric(c, "no-cache-ms")
	b.ReportMetric(w, "cached-ms")
	b.ReportMetric(c/w, "speedup")
}

// BenchmarkEdgeRecipe runs the edge recipe's media step (ffmpeg.wasm in
// Node, the whole file in its in-memory file system, output seeking) and
// Sluice's on the same job: a thumbnail at 5:00 of a 10-minute file plus
// its audio track. Each runs as a fresh child process, timed from outside,
// with its peak RSS from the kernel.
func BenchmarkEdgeRecipe(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	_, long := benchMedia(b)
	script, err := filepath.Abs("../../bench/ffmpegwasm/run.mjs")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@ffmpeg", "core")); err != nil {
		b.Fatal("@ffmpeg/core is not installed: run `npm ci` in bench/ffmpegwasm (scripts/bench.sh does)")
	}
	if _, err := exec.LookPath("node"); err != nil {
		b.Fatal("node is not installed: apt-get install nodejs")
	}
	// Warm the compilation cache so that Sluice's figure is a normal start,
	// in a child: a child's peak RSS starts from its parent's at fork, so
	// this process must stay small.
	warm := exec.Command(os.Args[0], "-test.run=^$")
	warm.Env = append(os.Environ(), "SLUICE_MEDIA_BENCH_JOB=wasm|"+long+"|300|"+b.TempDir())
	if out, err := warm.CombinedOutput(); err != nil {
		b.Fatalf("warm-up: %v\n%s", err, out)
	}
	results := map[string][2][]float64{}
	for range b.N {
		for _, name := range []string{"ffmpeg.wasm-node", "sluice-wasm", "sluice-native"} {
			var cmd *exec.Cmd
			out := b.TempDir()
			switch name {
			case "ffmpeg.wasm-node":
				cmd = exec.Command("node", script, long, "300", out)
			default:
				cmd = exec.Command(os.Args[0], "-test.run=^$")
				mode := map[string]string{"sluice-wasm": "wasm", "sluice-native": "native"}[name]
				cmd.Env = append(os.Environ(), "SLUICE_MEDIA_BENCH_JOB="+mode+"|"+long+"|300|"+out)
			}
			start := time.Now()
			if outp, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%s: %v\n%s", name, err, outp)
			}
			took := float64(time.Since(start).Milliseconds())
			rss := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
			if w, h := mediatest.Dimensions(b, filepath.Join(out, "thumb.jpg")); w == 0 || h == 0 {
				b.Fatalf("%s: no thumbnail", name)
			}
			r := results[name]
			r[0], r[1] = append(r[0], took), append(r[1], rss)
			results[name] = r
		}
	}
	for name, r := range results {
		b.ReportMetric(medianOf(r[0]), name+"-ms")
		b.ReportMetric(medianOf(r[1]), name+"-peak-rss-MiB")
	}
	b.ReportMetric(medianOf(results["ffmpeg.wasm-node"][0])/medianOf(results["sluice-wasm"][0]), "node/sluice-wasm-speedup")
}

// benchJob is the child side of BenchmarkEdgeRecipe: "engine|input|seconds|outdir".
// The WebAssembly engine runs with its memory capped at 128 MB.
func benchJob(spec string) error {
	parts := strings.SplitN(spec, "|", 4)
	if len(parts) != 4 {
		return fmt.Errorf("bad job spec %q", spec)
	}
	mode, in, secs, out := parts[0], parts[1], parts[2], parts[3]
	at, err := strconv.ParseFloat(secs, 64)
	if err != nil {
		return err
	}
	e := &media.Engines{Default: mode}
	if mode == media.ModeNative {
		if e.Native, err = media.NewNative(media.DefaultNativeConfig()); err != nil {
			return err
		}
	} else {
		// The edge platform's ceiling: the job must fit in 128 MB.
		e.Wasm = media.NewWasm(media.WasmConfig{CacheDir: mediatest.WasmCacheDir(), MemoryLimit: 128 << 20})
	}
	ctx := context.Background()
	job := &pipeline.Job{Input: in, Dir: out}
	res, err := (&media.Probe{Engines: e}).Run(ctx, job)
	if err != nil {
		return err
	}
	job.Media = res.Media
	if _, err := (&media.Thumbnail{Engines: e, Width: 640, At: at}).Run(ctx, job); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(out, media.ThumbnailName), filepath.Join(out, "thumb.jpg")); err != nil {
		return err
	}
	_, err = (&media.Audio{Engines: e}).Run(ctx, job)
	return err
}

func medianOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
