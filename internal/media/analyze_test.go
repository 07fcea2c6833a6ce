package media_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// oddDir is a job directory whose name needs escaping inside a filter
// graph, so that the metadata files' paths are put there correctly.
const oddDir = "it's [odd]; a,b: c\\d"

// analyze runs the analyze step on input and returns analysis.json, raw
// and decoded, checking that it is the step's only file.
func analyze(t *testing.T, e *media.Engines, input string, with map[string]any) (media.Analysis, map[string]any) {
	t.Helper()
	job, res := runStepIn(t, e, input, oddDir, media.AnalyzeType(e), with)
	if len(res.Outputs) != 1 || res.Outputs[0].Name != media.AnalysisName || res.Outputs[0].ContentType != "application/json" {
		t.Errorf("outputs = %+v, want one %s", res.Outputs, media.AnalysisName)
	}
	if files := filesIn(t, job.Dir); !slices.Equal(files, []string{media.AnalysisName}) {
		t.Errorf("files left = %v, want only %s (scratch files removed)", files, media.AnalysisName)
	}
	data, err := os.ReadFile(filepath.Join(job.Dir, media.AnalysisName))
	if err != nil {
		t.Fatal(err)
	}
	var a media.Analysis
	var raw map[string]any
	if err := json.Unmarshal(data, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	return a, raw
}

// keys lists the top-level keys of a JSON object.
func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// nativeR128 is what FFmpeg's ebur128 filter reports for input in its
// log: integrated loudness, loudness range and true peak.
func nativeR128(t *testing.T, input string) (i, lra, peak float64) {
	t.Helper()
	out := string(mediatest.Run(t, "ffmpeg", "-hide_banner", "-nostats", "-i", input, "-af", "ebur128=peak=true", "-f", "null", "-"))
	_, summary, ok := strings.Cut(out, "Summary:")
	if !ok {
		t.Fatalf("no ebur128 summary in:\n%s", out)
	}
	get := func(label string) float64 {
		m := regexp.MustCompile(`(?m)^\s*` + label + `:\s+(-?[0-9.]+|-inf)`).FindStringSubmatch(summary)
		if m == nil {
			t.Fatalf("no %s in ebur128 summary:\n%s", label, summary)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	return get("I"), get("LRA"), get("Peak")
}

func TestAnalyzeLoudness(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		src  string
		want float64 // LUFS, by EBU Tech 3341
	}{
		// A 1 kHz sine at 0 dBFS in one channel measures -3.01 LUFS.
		{"-6 dBFS stereo 1 kHz", "aevalsrc=0.5*sin(2*PI*1000*t)|0.5*sin(2*PI*1000*t):s=48000:d=5", -6.02},
		{"-20 dBFS mono 1 kHz", "aevalsrc=0.1*sin(2*PI*1000*t):s=44100:d=5", -23.01},
		// Loud, then 20 dB quieter: a loudness range, and a true peak
		// from the loud part.
		{"loud then quiet", "aevalsrc=(0.5-0.45*gte(t\\,4))*sin(2*PI*1000*t)|(0.5-0.45*gte(t\\,4))*sin(2*PI*1000*t):s=48000:d=8", math.NaN()},
	}
	for i, tt := range tests {
		in := filepath.Join(dir, fmt.Sprintf("l%d.wav", i))
		mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", tt.src, "-c:a", "pcm_s16le", in)
		wantI, wantLRA, wantPeak := nativeR128(t, in)
		if !math.IsNaN(tt.want) && math.Abs(wantI-tt.want) > 0.1 {
			t.Fatalf("%s: ffmpeg measures %.1f LUFS, want %.2f: the clip is wrong", tt.name, wantI, tt.want)
		}
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				a, raw := analyze(t, e, in, nil)
				// An audio-only input: no video parts.
				if got, want := keys(raw), []string{"duration", "loudness", "silence"}; !slices.Equal(got, want) {
					t.Errorf("keys = %v, want %v", got, want)
				}
				l := a.Loudness
				if l == nil || l.TruePeakDBTP == nil {
					t.Fatalf("loudness = %+v, want all of it", l)
				}
				// FFmpeg's summary has one decimal.
				if math.Abs(l.IntegratedLUFS-wantI) > 0.051 || math.Abs(l.RangeLU-wantLRA) > 0.051 || math.Abs(*l.TruePeakDBTP-wantPeak) > 0.051 {
					t.Errorf("loudness = %.3f LUFS, %.3f LU, %.3f dBTP; ffmpeg says %.1f, %.1f, %.1f",
						l.IntegratedLUFS, l.RangeLU, *l.TruePeakDBTP, wantI, wantLRA, wantPeak)
				}
				if len(a.Silence) != 0 {
					t.Errorf("silence = %+v, want none", a.Silence)
				}
				return fmt.Sprintf("%.1f LUFS %.1f LU %.1f dBTP", l.IntegratedLUFS, l.RangeLU, *l.TruePeakDBTP)
			})
		})
	}
}

// TestAnalyzeAV analyses a clip with a known structure: video of
// testsrc2, colour bars, black and testsrc2 again, a second each (hard
// cuts at 1, 2 and 3 s, black from 2 to 3 s); audio of a tone muted from
// 1 to 2 s.
func TestAnalyzeAV(t *testing.T) {
	in := filepath.Join(t.TempDir(), "av.mkv")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1",
		"-f", "lavfi", "-i", "smptebars=size=320x180:rate=25:duration=1",
		"-f", "lavfi", "-i", "color=black:size=320x180:rate=25:duration=1",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
		"-filter_complex", "[0][1][2][3]concat=n=4:v=1:a=0,format=yuv420p[v];[4]volume=enable='between(t,1,2)':volume=0[a]",
		"-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "flac", in)
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.05 }
	tests := []struct {
		name    string
		with    map[string]any
		keys    []string
		silence int
		scenes  []float64
		black   int
	}{
		{"everything", map[string]any{"silence_duration": "0.5s", "black_duration": 0.5},
			[]string{"black", "duration", "loudness", "scenes", "silence"}, 1, []float64{1, 2, 3}, 1},
		{"defaults: too short to report", nil,
			[]string{"black", "duration", "loudness", "scenes", "silence"}, 0, []float64{1, 2, 3}, 0},
		{"scenes only, high threshold", map[string]any{"detect": "scenes", "scene_threshold": 0.9},
			[]string{"duration", "scenes"}, 0, []float64{3}, 0},
		{"silence and black", map[string]any{"detect": []any{"silence", "black"}, "silence_duration": 0.5, "black_duration": 0.5},
			[]string{"black", "duration", "silence"}, 1, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				a, raw := analyze(t, e, in, tt.with)
				if got := keys(raw); !slices.Equal(got, tt.keys) {
					t.Errorf("keys = %v, want %v", got, tt.keys)
				}
				if !near(a.Duration, 4) {
					t.Errorf("duration = %v, want 4", a.Duration)
				}
				if len(a.Silence) != tt.silence {
					t.Errorf("silence = %+v, want %d spans", a.Silence, tt.silence)
				} else if tt.silence == 1 {
					if s := a.Silence[0]; !near(s.Start, 1) || !near(s.End, 2) || !near(s.Duration, 1) {
						t.Errorf("silence = %+v, want 1s to 2s", s)
					}
				}
				if len(a.Black) != tt.black {
					t.Errorf("black = %+v, want %d spans", a.Black, tt.black)
				} else if tt.black == 1 {
					if s := a.Black[0]; !near(s.Start, 2) || !near(s.End, 3) || !near(s.Duration, 1) {
						t.Errorf("black = %+v, want 2s to 3s", s)
					}
				}
				var times []float64
				for _, s := range a.Scenes {
					times = append(times, s.Time)
					if s.Score <= 0.4 || s.Score > 1 {
						t.Errorf("scene at %v scores %v, want above the threshold", s.Time, s.Score)
					}
				}
				if !slices.EqualFunc(times, tt.scenes, near) {
					t.Errorf("scene changes at %v, want %v", times, tt.scenes)
				}
				if l := a.Loudness; slices.Contains(tt.keys, "loudness") && (l == nil || l.IntegratedLUFS > -10 || l.IntegratedLUFS < -30) {
					t.Errorf("loudness = %+v, want a tone's", l)
				}
				return summary(a)
			})
		})
	}
}

// summary is what both engines must agree on, rounded to what the
// engines' float arithmetic leaves alone.
func summary(a media.Analysis) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.2fs", a.Duration)
	if l := a.Loudness; l != nil {
		fmt.Fprintf(&b, " loudness %.1f/%.1f", l.IntegratedLUFS, l.RangeLU)
	}
	for _, s := range a.Silence {
		fmt.Fprintf(&b, " silence %.2f-%.2f", s.Start, s.End)
	}
	for _, s := range a.Black {
		fmt.Fprintf(&b, " black %.2f-%.2f", s.Start, s.End)
	}
	for _, s := range a.Scenes {
		fmt.Fprintf(&b, " scene %.2f (%.1f)", s.Time, s.Score)
	}
	return b.String()
}

// TestAnalyzeTrailing: silence and black that last to the end of the
// input end with it.
func TestAnalyzeTrailing(t *testing.T) {
	in := filepath.Join(t.TempDir(), "fade.mkv")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=3",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
		"-vf", "drawbox=c=black:t=fill:enable='gte(t,2)'", "-af", "volume=enable='gte(t,2)':volume=0",
		"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "flac", in)
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		a, _ := analyze(t, e, in, map[string]any{"detect": []any{"silence", "black"}, "silence_duration": 0.5, "black_duration": 0.5})
		if len(a.Silence) != 1 || math.Abs(a.Silence[0].Start-2) > 0.05 || math.Abs(a.Silence[0].End-3) > 0.05 {
			t.Errorf("silence = %+v, want 2s to the end at 3s", a.Silence)
		}
		if len(a.Black) != 1 || math.Abs(a.Black[0].Start-2) > 0.05 || math.Abs(a.Black[0].End-3) > 0.05 {
			t.Errorf("black = %+v, want 2s to the end at 3s", a.Black)
		}
		return summary(a)
	})
}

// TestAnalyzeSilentVideo: without audio, only the video parts.
func TestAnalyzeSilentVideo(t *testing.T) {
	in := mediatest.Generate(t, t.TempDir(), "silent", mediatest.Clip{Width: 160, Height: 90, Duration: 2, Video: true})
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		a, raw := analyze(t, e, in, nil)
		if got, want := keys(raw), []string{"black", "duration", "scenes"}; !slices.Equal(got, want) {
			t.Errorf("keys = %v, want %v", got, want)
		}
		if len(a.Scenes) != 0 || len(a.Black) != 0 {
			t.Errorf("scenes %+v, black %+v in testsrc2, want none", a.Scenes, a.Black)
		}
		return summary(a)
	})
}

// TestAnalyzeApplies: the step applies only where a track has a part
// to analyse.
func TestAnalyzeApplies(t *testing.T) {
	audio := &pipeline.Media{Streams: []pipeline.Stream{{Type: "audio"}}}
	video := &pipeline.Media{Streams: []pipeline.Stream{{Type: "video"}}}
	cover := &pipeline.Media{Streams: []pipeline.Stream{{Type: "video", AttachedPicture: true}}}
	for _, tt := range []struct {
		detect any
		media  *pipeline.Media
		want   bool
	}{
		{nil, audio, true},
		{nil, video, true},
		{nil, cover, false},
		{nil, nil, false},
		{"scenes", audio, false},
		{[]any{"black", "scenes"}, video, true},
		{[]any{"loudness", "silence"}, video, false},
		{"silence", audio, true},
	} {
		var with map[string]any
		if tt.detect != nil {
			with = map[string]any{"detect": tt.detect}
		}
		s, err := media.AnalyzeType(&media.Engines{}).Build(with)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Applies(&pipeline.Job{Media: tt.media}); got != tt.want {
			t.Errorf("detect %v on %+v: applies = %v, want %v", tt.detect, tt.media, got, tt.want)
		}
	}
	_, err := media.AnalyzeType(&media.Engines{}).Build(map[string]any{"detect": "faces"})
	var pe *pipeline.ParamError
	if !errors.As(err, &pe) || pe.Param != "detect" {
		t.Errorf("detect faces: err = %v, want a ParamError about detect", err)
	}
}
