package media_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// runStepIn probes input and runs a step of type st with parameters, in a
// fresh job directory named dir, as the pipeline runner would.
func runStepIn(t *testing.T, e *media.Engines, input, dir string, st pipeline.StepType, with map[string]any) (*pipeline.Job, pipeline.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: filepath.Join(t.TempDir(), dir)}
	if err := os.Mkdir(job.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := newStep(t, e, "probe", nil).Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	s, err := st.Build(with)
	if err != nil {
		t.Fatalf("step %s: %v", st.Name, err)
	}
	if !s.Applies(job) {
		t.Fatalf("step %s does not apply to %s", st.Name, input)
	}
	if res, err = s.Run(ctx, job); err != nil {
		t.Fatal(err)
	}
	return job, res
}

// filesIn lists the files in dir.
func filesIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWaveform(t *testing.T) {
	// Two seconds of a 440 Hz tone at half of full scale, then two of
	// digital silence.
	in := filepath.Join(t.TempDir(), "half.wav")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi",
		"-i", "aevalsrc=0.5*sin(2*PI*440*t)*lt(t\\,2):s=44100:d=4", "-c:a", "pcm_s16le", in)
	blue := color.NRGBA{R: 0x3b, G: 0x82, B: 0xf6, A: 0xff}
	tests := []struct {
		name   string
		with   map[string]any
		length int // pairs
		spp    int
		bits   int
		w, h   int
		colour color.NRGBA
	}{
		{"defaults", nil, 1000, 32, 8, 1000, 200, blue},
		{"100 points, 16 bits", map[string]any{"points": 100, "bits": 16, "width": 300, "height": 61}, 100, 320, 16, 300, 61, blue},
		{"per second", map[string]any{"per_second": 20, "width": 64, "height": 32, "colour": "#ff000080"}, 80, 400, 8, 64, 32, color.NRGBA{R: 0xff, A: 0x80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runStepIn(t, e, in, "out", media.WaveformType(e), tt.with)
				want := []string{media.WaveformJSON, media.WaveformPNG}
				var got []string
				for _, o := range res.Outputs {
					got = append(got, o.Name)
				}
				if !slices.Equal(got, want) {
					t.Errorf("outputs = %v, want %v", got, want)
				}
				if files := filesIn(t, job.Dir); !slices.Equal(files, want) {
					t.Errorf("files left = %v, want %v (the raw samples removed)", files, want)
				}

				data, err := os.ReadFile(filepath.Join(job.Dir, media.WaveformJSON))
				if err != nil {
					t.Fatal(err)
				}
				var p media.Peaks
				if err := json.Unmarshal(data, &p); err != nil {
					t.Fatal(err)
				}
				if p.Version != 2 || p.Channels != 1 || p.SampleRate != media.WaveformRate || p.Bits != tt.bits {
					t.Errorf("header = version %d channels %d rate %d bits %d, want 2 1 %d %d", p.Version, p.Channels, p.SampleRate, p.Bits, media.WaveformRate, tt.bits)
				}
				if p.Length != tt.length || len(p.Data) != 2*p.Length {
					t.Fatalf("length = %d with %d values, want %d pairs", p.Length, len(p.Data), tt.length)
				}
				if p.SamplesPerPixel != tt.spp {
					t.Errorf("samples_per_pixel = %d, want %d", p.SamplesPerPixel, tt.spp)
				}
				if d := float64(p.Length*p.SamplesPerPixel) / float64(p.SampleRate); math.Abs(d-4) > 0.1 {
					t.Errorf("pairs cover %.3fs, want 4", d)
				}
				// The tone's pairs reach about half of full scale, the
				// silence's stay at zero; the fifth around the edge, where
				// resampling smears, is left out.
				half := float64(int(1)<<(tt.bits-1)) / 2
				for i := range p.Length {
					lo, hi := float64(p.Data[2*i]), float64(p.Data[2*i+1])
					switch f := float64(i) / float64(p.Length); {
					case f < 0.4 && (math.Abs(lo+half) > 0.05*half || math.Abs(hi-half) > 0.05*half):
						t.Fatalf("pair %d = [%v, %v] in the tone, want about ±%v", i, lo, hi, half)
					case f > 0.6 && (math.Abs(lo) > 0.01*half || math.Abs(hi) > 0.01*half):
						t.Fatalf("pair %d = [%v, %v] in the silence, want about 0", i, lo, hi)
					}
				}

				png := filepath.Join(job.Dir, media.WaveformPNG)
				if w, h := mediatest.Dimensions(t, png); w != tt.w || h != tt.h {
					t.Errorf("png = %dx%d, want %dx%d", w, h, tt.w, tt.h)
				}
				colour := tt.colour
				img := readPNG(t, png)
				mid := (tt.h - 1) / 2
				tone, silence := tt.w/5, 4*tt.w/5
				// The tone fills rows half-way to the edges, the silence
				// only the centre line.
				for _, c := range []struct {
					x, y int
					want color.NRGBA
				}{
					{tone, mid, colour}, {tone, mid - mid*2/5, colour}, {tone, mid + mid*2/5, colour},
					{tone, mid / 4, color.NRGBA{}}, {tone, tt.h - 1 - mid/4, color.NRGBA{}},
					{silence, mid, colour}, {silence, mid - 2, color.NRGBA{}}, {silence, mid + 2, color.NRGBA{}},
				} {
					if got := color.NRGBAModel.Convert(img.At(c.x, c.y)); got != c.want {
						t.Errorf("pixel (%d, %d) = %v, want %v", c.x, c.y, got, c.want)
					}
				}
				return fmt.Sprintf("%d pairs of %d, data %v..., png %dx%d", p.Length, p.SamplesPerPixel, p.Data[:6], tt.w, tt.h)
			})
		})
	}
}

func readPNG(t *testing.T, path string) interface {
	At(x, y int) color.Color
} {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestWaveformParams(t *testing.T) {
	st := media.WaveformType(&media.Engines{})
	for _, tt := range []struct {
		with  map[string]any
		param string
	}{
		{map[string]any{"bits": 12}, "bits"},
		{map[string]any{"colour": "blue"}, "colour"},
		{map[string]any{"colour": "#12345"}, "colour"},
		{map[string]any{"per_second": 1000}, "per_second"},
		{map[string]any{"points": 0}, "points"},
		{map[string]any{"width": 100000}, "width"},
	} {
		_, err := st.Build(tt.with)
		var pe *pipeline.ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param {
			t.Errorf("Build(%v) = %v, want an error about %s", tt.with, err, tt.param)
		}
	}
	if _, err := st.Build(map[string]any{"bits": 16, "colour": "00ff00", "per_second": 8}); err != nil {
		t.Errorf("valid parameters: %v", err)
	}
}

func TestWaveformNoAudio(t *testing.T) {
	in := mediatest.Generate(t, t.TempDir(), "silent", mediatest.Clip{Duration: 1, Video: true})
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			job := &pipeline.Job{Input: in, Dir: t.TempDir()}
			res, err := newStep(t, e, "probe", nil).Run(context.Background(), job)
			if err != nil {
				t.Fatal(err)
			}
			job.Media = res.Media
			s, err := media.WaveformType(e).Build(nil)
			if err != nil {
				t.Fatal(err)
			}
			if s.Applies(job) {
				t.Error("waveform applies to a clip without audio")
			}
		})
	}
}
