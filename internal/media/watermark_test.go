package media_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// watermarkClip writes a 2 s 320x180 clip at 10 fps with AAC audio.
func watermarkClip(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "clip.mp4")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=s=320x180:r=10:d=2", "-f", "lavfi", "-i", "sine=d=2",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", out)
	return out
}

// watermarkAssets makes an assets directory holding logo.png, an opaque
// magenta 40x20 picture.
func watermarkAssets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=magenta:s=40x20",
		"-frames:v", "1", "-update", "1", filepath.Join(dir, "logo.png"))
	return dir
}

// runWatermark probes input and runs a watermark step.
func runWatermark(t *testing.T, e *media.Engines, assets, input string, with map[string]any) (*pipeline.Job, pipeline.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	res, err := (&media.Probe{Engines: e}).Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	s, err := media.WatermarkType(e, assets).Build(with)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Applies(job) {
		t.Fatal("the watermark step does not apply to a video")
	}
	res, err = s.Run(ctx, job)
	return job, res, err
}

// box is a rectangle of pixels: [x0, x1) x [y0, y1).
type box struct{ x0, y0, x1, y1 int }

func (b box) contains(x, y int) bool { return x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1 }

// grow widens b by n pixels on every side.
func (b box) grow(n int) box { return box{b.x0 - n, b.y0 - n, b.x1 + n, b.y1 + n} }

// meanDiff is the mean absolute difference of two RGB pictures of width
// w over the pixels where in says true.
func meanDiff(a, b []byte, w int, in func(x, y int) bool) float64 {
	var sum, n float64
	for i := 0; i+2 < len(a); i += 3 {
		x, y := (i/3)%w, (i/3)/w
		if !in(x, y) {
			continue
		}
		for c := range 3 {
			sum += math.Abs(float64(a[i+c]) - float64(b[i+c]))
		}
		n += 3
	}
	return sum / n
}

// checkWatermarkOutput checks what every watermarked output must be: the
// input's size and duration, H.264 and AAC, and the first frame changed
// inside mark (by minChange on average) and nowhere else. It returns the first frames of input and
// output and a summary.
func checkWatermarkOutput(t *testing.T, input, out string, mark box, minChange float64) (in, got []byte, summary string) {
	t.Helper()
	w, h, in := pixels(t, input)
	ow, oh, got := pixels(t, out)
	if ow != w || oh != h {
		t.Fatalf("output is %dx%d, want the input's %dx%d", ow, oh, w, h)
	}
	din, dout := mediatest.Duration(t, input), mediatest.Duration(t, out)
	if math.Abs(din-dout) > 0.1 {
		t.Errorf("output lasts %.3fs, want the input's %.3fs", dout, din)
	}
	streams := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", out)))
	if streams != "h264\naac" {
		t.Errorf("streams = %q, want h264 and aac", streams)
	}
	inside := meanDiff(in, got, w, mark.grow(-2).contains)
	// Around the mark, chroma subsampling and the encoder blur the edge.
	outside := meanDiff(in, got, w, func(x, y int) bool { return !mark.grow(8).contains(x, y) })
	if inside < minChange {
		t.Errorf("inside the watermark's place the picture changed by %.1f on average, want a visible change", inside)
	}
	if outside > 6 {
		t.Errorf("outside the watermark's place the picture changed by %.1f on average, want no more than re-encoding does", outside)
	}
	t.Logf("mean change inside %.1f, outside %.1f", inside, outside)
	return in, got, fmt.Sprintf("%dx%d %.1fs %q", ow, oh, dout, streams)
}

// TestWatermarkImage: the logo lands in the chosen corner, scaled to a
// fraction of the video's width, at the chosen opacity; the rest of the
// picture, its size, duration and audio are the input's.
func TestWatermarkImage(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	assets := watermarkAssets(t)
	clip := watermarkClip(t, t.TempDir())
	tests := []struct {
		name    string
		with    map[string]any
		mark    box // the logo: 80x40 at 0.25 of 320 wide
		opacity float64
	}{
		{"top-right opaque", map[string]any{"image": "logo.png", "position": "top-right", "margin": 10, "scale": 0.25, "opacity": 1.0},
			box{230, 10, 310, 50}, 1},
		{"bottom-left half", map[string]any{"image": "logo.png", "position": "bottom-left", "margin": 0, "scale": 0.25, "opacity": 0.5},
			box{0, 140, 80, 180}, 0.5},
		{"center", map[string]any{"image": "logo.png", "position": "center", "scale": 0.25, "opacity": 1.0},
			box{120, 70, 200, 110}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res, err := runWatermark(t, e, assets, clip, tt.with)
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Outputs) != 1 || res.Outputs[0].Name != media.WatermarkName || res.Outputs[0].ContentType != "video/mp4" {
					t.Fatalf("outputs = %+v, want one %s", res.Outputs, media.WatermarkName)
				}
				in, got, summary := checkWatermarkOutput(t, clip, filepath.Join(job.Dir, media.WatermarkName), tt.mark, 40)
				// Within the mark: magenta blended with the picture.
				const w = 320
				var worst float64
				for y := tt.mark.y0 + 3; y < tt.mark.y1-3; y++ {
					for x := tt.mark.x0 + 3; x < tt.mark.x1-3; x++ {
						i := 3 * (y*w + x)
						for c, m := range []float64{255, 0, 255} {
							want := tt.opacity*m + (1-tt.opacity)*float64(in[i+c])
							worst = max(worst, math.Abs(float64(got[i+c])-want))
						}
					}
				}
				if worst > 40 {
					t.Errorf("inside the mark a pixel is %.0f off magenta at opacity %v over the picture", worst, tt.opacity)
				}
				entries, _ := os.ReadDir(job.Dir)
				if len(entries) != 1 {
					t.Errorf("job directory holds %d files, want only the output", len(entries))
				}
				return summary
			})
		})
	}
}

// TestWatermarkText: text is drawn, natively, in the chosen corner; the
// WebAssembly build has no drawtext, which a wasm-only setup says when
// the pipeline loads, and a step pinned to wasm when it runs.
func TestWatermarkText(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	clip := watermarkClip(t, t.TempDir())
	with := map[string]any{"text": "SLUICE 100% {x}: 'a,b'", "position": "top-left", "margin": 8, "font_size": 24, "colour": "#ffff00", "opacity": 1.0}
	es := engines(t)
	job, _, err := runWatermark(t, es["native"], "", clip, with)
	if err != nil {
		t.Fatal(err)
	}
	// One line of 24-pixel text at the top left, drawn as written
	// (neither % nor filter syntax is interpreted), inside this box.
	out := filepath.Join(job.Dir, media.WatermarkName)
	checkWatermarkOutput(t, clip, out, box{8, 8, 300, 36}, 15)

	_, err = media.WatermarkType(es["wasm"], "").Build(with)
	if err == nil || !strings.Contains(err.Error(), "text: ") || !strings.Contains(err.Error(), "no drawtext filter") {
		t.Errorf("text watermark with the WebAssembly engine only: err = %v, want it refused for lack of drawtext", err)
	}
	both := &media.Engines{Native: es["native"].Native, Wasm: es["wasm"].Wasm, Default: media.ModeAuto}
	s, err := media.WatermarkType(both, "").Build(with)
	if err != nil {
		t.Fatal(err)
	}
	job = &pipeline.Job{Input: clip, Dir: t.TempDir(), Engine: media.ModeWasm}
	job.Media, err = es["native"].Native.Probe(context.Background(), clip)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(context.Background(), job); !errors.Is(err, media.ErrNoEngine) || !strings.Contains(err.Error(), "drawtext") {
		t.Errorf("text watermark pinned to wasm: err = %v, want ErrNoEngine naming drawtext", err)
	}
}

// TestWatermarkParams: what a pipeline may not ask of the step is
// refused when it loads, naming the parameter and the problem.
func TestWatermarkParams(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	assets := watermarkAssets(t)
	outside := filepath.Join(t.TempDir(), "secret.png")
	if err := os.WriteFile(outside, []byte("\x89PNG\r\n\x1a\nsecret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(assets, "link.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(assets, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(assets, "dir.png"), 0o755); err != nil {
		t.Fatal(err)
	}
	es := engines(t)
	tests := []struct {
		assets string
		with   map[string]any
		want   string
	}{
		{assets, map[string]any{}, "image: give an image (or a text)"},
		{assets, map[string]any{"image": "logo.png", "text": "hi"}, "text: give an image or a text, not both"},
		{"", map[string]any{"image": "logo.png"}, "image: no assets directory is configured"},
		{assets, map[string]any{"image": outside}, "is an absolute path"},
		{assets, map[string]any{"image": "../" + filepath.Base(outside)}, `contains ".."`},
		{assets, map[string]any{"image": "a/../logo.png"}, `contains ".."`},
		{assets, map[string]any{"image": "./logo.png"}, "is not a clean relative path"},
		{assets, map[string]any{"image": "link.png"}, "image: link.png: path escapes from parent"},
		{assets, map[string]any{"image": "missing.png"}, "image: missing.png: no such file or directory"},
		{assets, map[string]any{"image": "dir.png"}, "dir.png is not a regular file"},
		{assets, map[string]any{"image": "notes.txt"}, "notes.txt is not a PNG, JPEG or WebP file"},
		{assets, map[string]any{"image": "logo.png", "position": "middle"}, `position: "middle" is not one of`},
		{assets, map[string]any{"image": "logo.png", "opacity": 1.5}, "opacity: 1.5 is out of range"},
		{assets, map[string]any{"text": "two\nlines"}, "text: contains a control character"},
		{assets, map[string]any{"text": "  "}, "text: is blank"},
		{assets, map[string]any{"text": "hi", "colour": "yellow"}, `colour: "yellow" is not a colour`},
		{assets, map[string]any{"text": "hi", "font": "logo.png"}, "font: logo.png is not a TrueType or OpenType font"},
		{assets, map[string]any{"text": "hi", "font": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"}, "font: \"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf\" is an absolute path"},
	}
	for _, tt := range tests {
		_, err := media.WatermarkType(es["native"], tt.assets).Build(tt.with)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Build(%v) = %v, want an error containing %q", tt.with, err, tt.want)
		}
		var pe *pipeline.ParamError
		if err != nil && !errors.As(err, &pe) {
			t.Errorf("Build(%v): %T is not a ParamError", tt.with, err)
		}
	}
}

// TestWatermarkRotated: on a video shot in portrait (stored landscape,
// with a rotation), the picture is turned upright first, so that the
// watermark is where a viewer sees "top-right".
func TestWatermarkRotated(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	assets := watermarkAssets(t)
	clip := mediatest.Generate(t, t.TempDir(), "r", mediatest.Clip{Width: 320, Height: 180, Duration: 1, Video: true, Rotate: 90})
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		job, _, err := runWatermark(t, e, assets, clip, map[string]any{"image": "logo.png", "position": "top-right", "margin": 10, "scale": 0.25, "opacity": 1.0})
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(job.Dir, media.WatermarkName)
		eng, err := e.Pick("", false)
		if err != nil {
			t.Fatal(err)
		}
		m, err := eng.Probe(context.Background(), out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Width != 180 || m.Height != 320 || m.Rotation != 0 {
			t.Fatalf("output shows %dx%d rotated %d, want 180x320 upright", m.Width, m.Height, m.Rotation)
		}
		w, _, rgb := pixels(t, out)
		// The logo is 45 pixels wide: 125..170 across, from 10 down.
		at := func(x, y int) []byte { return rgb[3*(y*w+x):] }
		if p := at(148, 18); p[0] < 200 || p[1] > 60 || p[2] < 200 {
			t.Errorf("top right of the upright picture is %v, want magenta", p[:3])
		}
		if p := at(30, 18); p[0] > 200 && p[1] < 60 && p[2] > 200 {
			t.Errorf("top left of the upright picture is magenta, want the video")
		}
		return fmt.Sprintf("%dx%d", m.Width, m.Height)
	})
}
