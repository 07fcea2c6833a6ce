package media

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// AnalysisName is the analyze step's output.
const AnalysisName = "analysis.json"

// What the analyze step can detect.
const (
	DetectLoudness = "loudness"
	DetectSilence  = "silence"
	DetectScenes   = "scenes"
	DetectBlack    = "black"
)

// AnalyzeType is the "analyze" step type.
func AnalyzeType(e *Engines) pipeline.StepType {
	all := []string{DetectLoudness, DetectSilence, DetectScenes, DetectBlack}
	return pipeline.StepType{
		Name:  "analyze",
		Doc:   "loudness (EBU R128), silences, scene changes and black segments as analysis.json, in one decode",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "detect", Kind: pipeline.Strings, Default: all, Enum: all, Doc: "what to look for; audio parts need audio, video parts video"},
			{Name: "silence_noise", Kind: pipeline.Float, Default: -60.0, Min: -120, Max: 0, Doc: "level in dBFS below which audio counts as silence"},
			{Name: "silence_duration", Kind: pipeline.Duration, Default: 2 * time.Second, Min: 0.01, Max: 86400, Doc: "shortest silence reported"},
			{Name: "scene_threshold", Kind: pipeline.Float, Default: 0.4, Min: 0.01, Max: 1, Doc: "scene score (0 to 1) above which a frame starts a new scene"},
			{Name: "scene_fps", Kind: pipeline.Int, Default: 10, Min: 1, Max: 120, Doc: "frames a second compared for scene changes (at most the video's rate)"},
			{Name: "black_duration", Kind: pipeline.Duration, Default: 2 * time.Second, Min: 0, Max: 86400, Doc: "shortest black segment reported"},
			{Name: "black_picture", Kind: pipeline.Float, Default: 0.98, Min: 0, Max: 1, Doc: "share of black pixels that makes a frame black"},
			{Name: "black_pixel", Kind: pipeline.Float, Default: 0.10, Min: 0, Max: 1, Doc: "luma (0 to 1 of its range) below which a pixel is black"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			return &Analyze{
				Engines:         e,
				Detect:          p.Strings("detect"),
				SilenceNoise:    p.Float("silence_noise"),
				SilenceDuration: p.Duration("silence_duration"),
				SceneThreshold:  p.Float("scene_threshold"),
				SceneFPS:        p.Int("scene_fps"),
				BlackDuration:   p.Duration("black_duration"),
				BlackPicture:    p.Float("black_picture"),
				BlackPixel:      p.Float("black_pixel"),
			}, nil
		},
	}
}

// Analyze measures the input in one FFmpeg run, both tracks decoded
// together: EBU R128 loudness (ebur128) and silences (silencedetect) of
// the first audio track, scene changes (select on the scene score) and
// black segments (blackdetect) of the first video track.
//
// These filters report to FFmpeg's log, which the WebAssembly engine does
// not capture, but each also sets frame metadata; (a)metadata filters
// print that to scratch files, read here and removed. Scene scores are
// computed on a downscaled stream of at most SceneFPS frames a second:
// the score is a mean over pixels, so a small picture scores a cut the
// same, at a fraction of the cost.
type Analyze struct {
	Engines *Engines
	// Detect lists what to look for (Detect* constants); empty: all.
	Detect []string
	// SilenceNoise (dBFS) and SilenceDuration configure silencedetect.
	SilenceNoise    float64
	SilenceDuration time.Duration
	// SceneThreshold is the scene score (0 to 1) that starts a scene.
	SceneThreshold float64
	SceneFPS       int
	// BlackDuration is the shortest black segment reported; BlackPicture
	// and BlackPixel are blackdetect's pic_th and pix_th.
	BlackDuration            time.Duration
	BlackPicture, BlackPixel float64
}

var _ pipeline.Step = (*Analyze)(nil)

// Analysis is analysis.json. A part that was not looked for, or that
// needs a track the input lacks, is absent; one looked for and not found
// is an empty list. Times are seconds on the input's timeline.
type Analysis struct {
	Duration float64   `json:"duration"`
	Loudness *Loudness `json:"loudness,omitempty"`
	Silence  []Span    `json:"silence,omitzero"`
	Scenes   []Scene   `json:"scenes,omitzero"`
	Black    []Span    `json:"black,omitzero"`
}

// Loudness is the EBU R128 measurement of the whole first audio track.
type Loudness struct {
	// IntegratedLUFS is -70 (the absolute gate) when nothing is loud
	// enough to measure.
	IntegratedLUFS float64 `json:"integrated_lufs"`
	RangeLU        float64 `json:"range_lu"`
	// TruePeakDBTP is null for digital silence.
	TruePeakDBTP *float64 `json:"true_peak_dbtp"`
}

// Span is a stretch of silence or black.
type Span struct {
	Start    float64 `json:"start"`
	End      float64 `json:"end"`
	Duration float64 `json:"duration"`
}

// Scene is a scene change: the first frame of a new scene.
type Scene struct {
	Time  float64 `json:"time"`
	Score float64 `json:"score"`
}

func (*Analyze) Name() string { return "analyze" }

func (a *Analyze) Applies(job *pipeline.Job) bool {
	return job.Media != nil && (a.audio(job.Media) != nil || a.video(job.Media) != nil)
}

func (a *Analyze) wants(part string) bool {
	return len(a.Detect) == 0 || slices.Contains(a.Detect, part)
}

// audio is the track to analyse for the audio parts asked for, or nil.
func (a *Analyze) audio(m *pipeline.Media) *pipeline.Stream {
	if a.wants(DetectLoudness) || a.wants(DetectSilence) {
		return m.Audio()
	}
	return nil
}

// video is the track to analyse for the video parts asked for, or nil.
func (a *Analyze) video(m *pipeline.Media) *pipeline.Stream {
	if a.wants(DetectScenes) || a.wants(DetectBlack) {
		return m.Video()
	}
	return nil
}

// Scratch files the metadata filters print to.
const (
	silenceLog  = "analyze-silence.txt"
	loudnessLog = "analyze-loudness.txt"
	blackLog    = "analyze-black.txt"
	scenesLog   = "analyze-scenes.txt"
)

func (a *Analyze) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	e, err := a.Engines.Pick(job.Engine, true)
	if err != nil {
		return pipeline.Result{}, err
	}
	for _, name := range []string{silenceLog, loudnessLog, blackLog, scenesLog} {
		defer os.Remove(filepath.Join(job.Dir, name))
	}
	m := job.Media
	as, vs := a.audio(m), a.video(m)
	var chains, maps []string
	if as != nil {
		chain := []string{}
		if a.wants(DetectSilence) {
			chain = append(chain,
				fmt.Sprintf("silencedetect=n=%gdB:d=%g", a.SilenceNoise, a.SilenceDuration.Seconds()),
				"ametadata=mode=print:file="+FilterOut(silenceLog),
				// ebur128 regroups the samples, which would copy
				// the marks onto more frames.
				"ametadata=mode=delete")
		}
		if a.wants(DetectLoudness) {
			chain = append(chain,
				"ebur128=peak=true:metadata=1",
				"ametadata=mode=print:file="+FilterOut(loudnessLog))
		}
		chains = append(chains, fmt.Sprintf("[0:%d]%s[a]", as.Index, strings.Join(chain, ",")))
		maps = append(maps, "-map", "[a]")
	}
	if vs != nil {
		chain := []string{}
		if a.wants(DetectBlack) {
			// blackdetect marks where black starts and ends whatever its
			// length; the shortest kept is applied when reading.
			chain = append(chain,
				fmt.Sprintf("blackdetect=pic_th=%g:pix_th=%g", a.BlackPicture, a.BlackPixel),
				"metadata=mode=print:file="+FilterOut(blackLog),
				"metadata=mode=delete")
		}
		if a.wants(DetectScenes) {
			if fps := a.sceneFPS(); vs.FrameRate == 0 || vs.FrameRate > float64(fps) {
				chain = append(chain, fmt.Sprintf("fps=%d", fps))
			}
			chain = append(chain,
				"scale=w=160:h=90:flags=bilinear",
				fmt.Sprintf("select='gt(scene,%g)'", a.SceneThreshold),
				"metadata=mode=print:file="+FilterOut(scenesLog))
		}
		chains = append(chains, fmt.Sprintf("[0:%d]%s[v]", vs.Index, strings.Join(chain, ",")))
		maps = append(maps, "-map", "[v]")
	}
	if len(chains) == 0 {
		return pipeline.Result{}, pipeline.Invalid("nothing to analyse: no track for %s", strings.Join(a.Detect, ", "))
	}
	args := inputArgs(m)
	args = append(args, "-filter_complex", strings.Join(chains, ";"))
	args = append(args, maps...)
	args = append(args, "-f", "null", "-")
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, err
	}

	res := Analysis{Duration: round3(m.Duration)}
	if as != nil && a.wants(DetectSilence) {
		if res.Silence, err = readSpans(filepath.Join(job.Dir, silenceLog), "lavfi.silence_start", "lavfi.silence_end", 0, streamEnd(m, as)); err != nil {
			return pipeline.Result{}, err
		}
	}
	if as != nil && a.wants(DetectLoudness) {
		if res.Loudness, err = readLoudness(filepath.Join(job.Dir, loudnessLog)); err != nil {
			return pipeline.Result{}, err
		}
	}
	if vs != nil && a.wants(DetectBlack) {
		if res.Black, err = readSpans(filepath.Join(job.Dir, blackLog), "lavfi.black_start", "lavfi.black_end", a.BlackDuration.Seconds(), streamEnd(m, vs)); err != nil {
			return pipeline.Result{}, err
		}
	}
	if vs != nil && a.wants(DetectScenes) {
		if res.Scenes, err = readScenes(filepath.Join(job.Dir, scenesLog)); err != nil {
			return pipeline.Result{}, err
		}
	}
	if err := writeJSON(filepath.Join(job.Dir, AnalysisName), res); err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: AnalysisName, ContentType: "application/json"}}}, nil
}

func (a *Analyze) sceneFPS() int {
	if a.SceneFPS <= 0 {
		return 10
	}
	return a.SceneFPS
}

// streamEnd is where a span still open at the end of stream s ends.
func streamEnd(m *pipeline.Media, s *pipeline.Stream) float64 {
	if s.Duration > 0 {
		return s.Duration
	}
	return m.Duration
}

// readMetadata calls f for each key=value line that a metadata filter
// printed to path, with the time of the frame the line belongs to.
func readMetadata(path string, f func(t float64, key, value string) error) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("media: analysis: %w", err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	t := math.NaN()
	for sc.Scan() {
		line := sc.Text()
		// A frame's header: "frame:12   pts:6144    pts_time:0.128";
		// the time is NaN for a frame without one ("NOPTS").
		if strings.HasPrefix(line, "frame:") {
			_, ts, _ := strings.Cut(line, "pts_time:")
			if t, err = strconv.ParseFloat(strings.TrimSpace(ts), 64); err != nil {
				t = math.NaN()
			}
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return fmt.Errorf("media: analysis: bad line %q in %s", line, filepath.Base(path))
		}
		if err := f(t, key, value); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("media: analysis: read %s: %w", filepath.Base(path), err)
	}
	return nil
}

// readSpans pairs start and end marks into spans at least minDur long;
// one still open at the end of the stream ends at end.
func readSpans(path, startKey, endKey string, minDur, end float64) ([]Span, error) {
	spans := []Span{}
	start, open := 0.0, false
	add := func(to float64) {
		if open && to-start >= minDur {
			spans = append(spans, Span{Start: round3(start), End: round3(to), Duration: round3(to - start)})
		}
		open = false
	}
	err := readMetadata(path, func(_ float64, key, value string) error {
		if key != startKey && key != endKey {
			return nil
		}
		v, err := metadataFloat(key, value)
		if err != nil {
			return err
		}
		if key == startKey {
			start, open = v, true
		} else {
			add(v)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	add(max(end, start))
	return spans, nil
}

// readLoudness takes ebur128's last report, which covers the whole track.
func readLoudness(path string) (*Loudness, error) {
	var l *Loudness
	err := readMetadata(path, func(_ float64, key, value string) error {
		switch key {
		case "lavfi.r128.I", "lavfi.r128.LRA", "lavfi.r128.true_peak":
		default:
			return nil
		}
		v, err := metadataFloat(key, value)
		if err != nil {
			return err
		}
		if l == nil {
			l = &Loudness{}
		}
		switch key {
		case "lavfi.r128.I":
			l.IntegratedLUFS = round3(v)
		case "lavfi.r128.LRA":
			l.RangeLU = round3(v)
		default:
			// A linear amplitude, 1 being full scale.
			l.TruePeakDBTP = nil
			if v > 0 {
				db := round3(20 * math.Log10(v))
				l.TruePeakDBTP = &db
			}
		}
		return nil
	})
	return l, err
}

// metadataFloat reads a finite number.
func metadataFloat(key, value string) (float64, error) {
	v, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("media: analysis: bad %s=%q", key, value)
	}
	return v, nil
}

// readScenes lists the frames select let through, with their scores.
func readScenes(path string) ([]Scene, error) {
	scenes := []Scene{}
	err := readMetadata(path, func(t float64, key, value string) error {
		if key != "lavfi.scene_score" || math.IsNaN(t) {
			return nil
		}
		v, err := metadataFloat(key, value)
		if err != nil {
			return err
		}
		scenes = append(scenes, Scene{Time: round3(t), Score: round3(v)})
		return nil
	})
	return scenes, err
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// Measure runs the analysis for a caller that wants the figures rather
// than the output file (the AI steps: silences to cut speech at, scenes
// to pick frames from), in a scratch directory under job.Dir.
func (a *Analyze) Measure(ctx context.Context, job *pipeline.Job) (Analysis, error) {
	dir, err := os.MkdirTemp(job.Dir, "analyze-")
	if err != nil {
		return Analysis{}, err
	}
	defer os.RemoveAll(dir)
	view := *job
	view.Dir = dir
	if _, err := a.Run(ctx, &view); err != nil {
		return Analysis{}, err
	}
	data, err := os.ReadFile(filepath.Join(dir, AnalysisName))
	if err != nil {
		return Analysis{}, err
	}
	var an Analysis
	err = json.Unmarshal(data, &an)
	return an, err
}
