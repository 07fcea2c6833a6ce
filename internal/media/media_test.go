package media_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

var (
	wasmOnce sync.Once
	wasmEng  *media.Wasm
)

// engines returns the engine setups every media test runs under: native
// FFmpeg, and the WebAssembly build (one instance for the whole package).
func engines(t *testing.T) map[string]*media.Engines {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	n, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		t.Fatal(err)
	}
	wasmOnce.Do(func() { wasmEng = media.NewWasm(media.WasmConfig{CacheDir: mediatest.WasmCacheDir()}) })
	if err := wasmEng.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return map[string]*media.Engines{
		"native": {Native: n, Default: media.ModeNative},
		"wasm":   {Wasm: wasmEng, Default: media.ModeWasm},
	}
}

// run probes input and runs the named step, as the pipeline runner would.
func run(t *testing.T, e *media.Engines, input, step string) (*pipeline.Job, pipeline.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	res, err := newStep(t, e, "probe", nil).Run(ctx, job)
	if err != nil || step == "probe" {
		return job, res, err
	}
	job.Media = res.Media
	var with map[string]any
	if step == "thumbnail" {
		with = map[string]any{"width": 320}
	}
	s := newStep(t, e, step, with)
	if !s.Applies(job) {
		t.Fatalf("step %s does not apply to %s", step, input)
	}
	res, err = s.Run(ctx, job)
	return job, res, err
}

// newStep builds a step of the named type with parameters, as a pipeline
// file would.
func newStep(t testing.TB, e *media.Engines, typ string, with map[string]any) pipeline.Step {
	t.Helper()
	reg, err := pipeline.NewRegistry(media.Types(e, "")...)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := reg.Lookup(typ)
	if !ok {
		t.Fatalf("no step type %q", typ)
	}
	s, err := st.Build(with)
	if err != nil {
		t.Fatalf("step %s: %v", typ, err)
	}
	return s
}

// forEngines runs f under every engine and checks that all engines
// produced the same summary.
func forEngines(t *testing.T, f func(t *testing.T, e *media.Engines) string) {
	t.Helper()
	got := map[string]string{}
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) { got[name] = f(t, e) })
	}
	if got["native"] != got["wasm"] {
		t.Errorf("engines disagree:\nnative: %s\nwasm:   %s", got["native"], got["wasm"])
	}
}

func TestProbe(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name      string
		clip      mediatest.Clip
		container string
		w, h, rot int
		video     bool
		audio     string
	}{
		{"mp4 av", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true}, "mov", 640, 360, 0, true, "aac"},
		{"mp4 rotated", mediatest.Clip{Width: 640, Height: 360, Duration: 2, Video: true, Rotate: 90}, "mov", 360, 640, 90, true, ""},
		{"mkv", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true, AudioCodec: "flac", Ext: ".mkv"}, "matroska", 320, 240, 0, true, "flac"},
		{"mp3", mediatest.Clip{Duration: 2, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"}, "mp3", 0, 0, 0, false, "mp3"},
		{"wav", mediatest.Clip{Duration: 2, Audio: true, AudioCodec: "pcm_s16le", Ext: ".wav"}, "wav", 0, 0, 0, false, "pcm_s16le"},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "p"+string(rune('a'+i)), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				_, res, err := run(t, e, in, "probe")
				if err != nil {
					t.Fatal(err)
				}
				m := res.Media
				if m.Format != tt.container {
					t.Errorf("format = %q, want %q", m.Format, tt.container)
				}
				if math.Abs(m.Duration-tt.clip.Duration) > 0.1 {
					t.Errorf("duration = %v, want %v", m.Duration, tt.clip.Duration)
				}
				if m.Width != tt.w || m.Height != tt.h || m.Rotation != tt.rot {
					t.Errorf("display = %dx%d rot %d, want %dx%d rot %d", m.Width, m.Height, m.Rotation, tt.w, tt.h, tt.rot)
				}
				if got := m.Video() != nil; got != tt.video {
					t.Errorf("has video = %v, want %v", got, tt.video)
				}
				var codec string
				if a := m.Audio(); a != nil {
					codec = a.Codec
				}
				if codec != tt.audio {
					t.Errorf("audio codec = %q, want %q", codec, tt.audio)
				}
				return fmt.Sprintf("%s %.2fs %dx%d rot %d streams %s", m.Format, m.Duration, m.Width, m.Height, m.Rotation, layout(m))
			})
		})
	}
}

// layout describes the streams of m: type, codec and shape, in order.
func layout(m *pipeline.Media) string {
	var parts []string
	for _, s := range m.Streams {
		parts = append(parts, fmt.Sprintf("%s/%s(%s)/%dx%d/%dHz/%dch", s.Type, s.Codec, s.Profile, s.Width, s.Height, s.SampleRate, s.Channels))
	}
	return strings.Join(parts, ",")
}

func TestThumbnail(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		clip mediatest.Clip
		w, h int
	}{
		{"720p at 2s", mediatest.Clip{Width: 1280, Height: 720, Duration: 4, Video: true}, 320, 180},
		{"short clip, middle", mediatest.Clip{Width: 640, Height: 480, Duration: 1, Video: true}, 320, 240},
		{"rotated portrait", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Rotate: 90}, 320, 568},
		{"small, not upscaled", mediatest.Clip{Width: 160, Height: 120, Duration: 3, Video: true}, 160, 120},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "t"+string(rune('a'+i)), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res, err := run(t, e, in, "thumbnail")
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Outputs) != 1 || res.Outputs[0].Name != media.ThumbnailName {
					t.Fatalf("outputs = %+v, want one %s", res.Outputs, media.ThumbnailName)
				}
				w, h := mediatest.Dimensions(t, filepath.Join(job.Dir, media.ThumbnailName))
				if w != tt.w || h != tt.h {
					t.Errorf("thumbnail = %dx%d, want %dx%d", w, h, tt.w, tt.h)
				}
				return fmt.Sprintf("%dx%d", w, h)
			})
		})
	}
}

func TestAudio(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		clip mediatest.Clip
	}{
		{"aac copied", mediatest.Clip{Duration: 3, Video: true, Audio: true}},
		{"mp3 encoded", mediatest.Clip{Duration: 2.5, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"}},
		{"flac in mkv encoded", mediatest.Clip{Duration: 2, Video: true, Audio: true, AudioCodec: "flac", Ext: ".mkv"}},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "a"+string(rune('a'+i)), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, _, err := run(t, e, in, "audio")
				if err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(job.Dir, media.AudioName)
				d := mediatest.Duration(t, out)
				if math.Abs(d-tt.clip.Duration) > 0.1 {
					t.Errorf("audio duration = %.3f, want %.3f ± 0.1", d, tt.clip.Duration)
				}
				streams := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type,sample_rate,channels", "-of", "csv=p=0", out)))
				if !strings.HasPrefix(streams, "aac,audio,") || strings.Contains(streams, "\n") {
					t.Errorf("audio streams = %q, want one aac audio stream", streams)
				}
				return fmt.Sprintf("%.1fs %s", d, streams)
			})
		})
	}
}

// TestBadInput runs each broken or hostile file through probe and the
// frame-decoding step under both engines: each must fail with a one-line
// MediaError whose reason says what is wrong.
func TestBadInput(t *testing.T) {
	bads := mediatest.BadInputs(t, t.TempDir())
	for name, e := range engines(t) {
		for _, bad := range bads {
			t.Run(name+"/"+bad.Name, func(t *testing.T) {
				_, _, err := run(t, e, bad.Path, "thumbnail")
				if err == nil {
					t.Fatal("got no error, want one")
				}
				if !pipeline.IsMediaError(err) {
					t.Fatalf("error %v (%T) is not a MediaError", err, err)
				}
				if msg := err.Error(); !strings.Contains(msg, bad.Reason) || strings.Contains(msg, "\n") {
					t.Errorf("error = %q, want one line containing %q", msg, bad.Reason)
				}
			})
		}
	}
}

// TestTimeout: a run that would never end is stopped by its context, in
// either engine, and reported promptly.
func TestTimeout(t *testing.T) {
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			eng, _ := e.Pick("", false)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			// An endless lavfi source would run forever without the timeout.
			err := eng.FFmpeg(ctx, media.Command{Dir: t.TempDir(), Args: []string{"-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"}})
			if err == nil {
				t.Fatal("endless ffmpeg returned no error")
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want the deadline", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("ffmpeg ran %s after its deadline", took)
			}
		})
	}
}

// TestMemoryCapContainsBomb decodes a picture within the pixel limit whose
// frame still needs 512 MB, under engines capped below that: the run fails
// fast as a MediaError instead of taking the memory.
func TestMemoryCapContainsBomb(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	bomb := filepath.Join(t.TempDir(), "bomb.png")
	mediatest.PNG(t, bomb, 8000, 8000)
	native, err := media.NewNative(media.NativeConfig{MemoryLimit: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !native.Sandboxed() {
		t.Fatal("prlimit is not installed: the native memory cap cannot be tested (apt-get install util-linux)")
	}
	wasm := media.NewWasm(media.WasmConfig{CacheDir: mediatest.WasmCacheDir(), MemoryLimit: 256 << 20})
	defer wasm.Close()
	for name, e := range map[string]*media.Engines{
		"native": {Native: native, Default: media.ModeNative},
		"wasm":   {Wasm: wasm, Default: media.ModeWasm},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, _, err := run(t, e, bomb, "thumbnail")
			if !pipeline.IsMediaError(err) {
				t.Fatalf("err = %v, want a MediaError", err)
			}
			if msg := err.Error(); !strings.Contains(strings.ToLower(msg), "memory") && !strings.Contains(msg, "allocate") {
				t.Errorf("err = %q, want it to say memory ran out", msg)
			}
			t.Logf("%s: %v after %s", name, err, time.Since(start))
		})
	}
}

// TestStepTimeoutOnSlowInput: a real file that takes longer to decode than
// the step may run is stopped by the runner's timeout in either engine and
// reported as the step's failure.
func TestStepTimeoutOnSlowInput(t *testing.T) {
	in := mediatest.Generate(t, t.TempDir(), "uhd", mediatest.Clip{Width: 3840, Height: 2160, Duration: 3, Video: true})
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			reg, err := pipeline.NewRegistry(media.Types(e, "")...)
			if err != nil {
				t.Fatal(err)
			}
			set := pipeline.NewSet(reg)
			if err := set.Load("test.yaml", []byte(`pipelines:
  - name: t
    steps:
      - uses: probe
      - uses: thumbnail
        timeout: 30ms
`)); err != nil {
				t.Fatal(err)
			}
			r := &pipeline.Runner{Timeout: time.Minute}
			start := time.Now()
			_, err = r.Run(context.Background(), &pipeline.Job{Input: in, Dir: t.TempDir()}, set.Get("t"), pipeline.StageAll, nopTracker{})
			if !pipeline.IsMediaError(err) || !strings.Contains(err.Error(), "thumbnail: timed out after 30ms") {
				t.Fatalf("err = %v, want the thumbnail step timed out", err)
			}
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

type nopTracker struct{}

func (nopTracker) Prior(string) (pipeline.Outcome, bool)         { return "", false }
func (nopTracker) Started(context.Context, string) error         { return nil }
func (nopTracker) Skipped(context.Context, string, string) error { return nil }
func (nopTracker) Finished(context.Context, string, pipeline.Result, error, time.Duration) error {
	return nil
}
