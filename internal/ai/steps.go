package ai

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// The enrichment steps. Each asks the gateway for one task and writes
// what came back, with the provider and model that answered, as JSON (and
// for transcripts WebVTT and SRT too). Two endings are not failures:
//
//   - no provider configured for the task, or none available here (a
//     local tool not installed): the step ends skipped, with the reason;
//   - every provider failed or timed out, or a budget refused the call:
//     the step ends degraded (pipeline.DegradedError), the asset still
//     succeeds and says what is missing, and a reprocess of the step
//     fills it in later.

// Types returns the enrichment step types, calling g, with media work
// (audio extraction, frames) on e.
func Types(g *Gateway, e *media.Engines) []pipeline.StepType {
	frames := pipeline.Param{Name: "frames", Kind: pipeline.Int, Default: 4, Min: 1, Max: 16,
		Doc: "frames sent, spread over the video (one for a still)"}
	width := pipeline.Param{Name: "width", Kind: pipeline.Int, Default: 768, Min: 64, Max: 2048,
		Doc: "width of the frames sent, in pixels"}
	return []pipeline.StepType{
		{
			Name: "transcript", Heavy: true,
			Doc: "speech to text with timestamps: transcript.json, .vtt and .srt",
			Params: []pipeline.Param{
				{Name: "language", Kind: pipeline.String, Doc: "ISO 639-1 code; empty: detected"},
				{Name: "chunk", Kind: pipeline.Duration, Default: defaultChunk, Min: 30, Max: 3600,
					Doc: "longest piece sent in one request; long audio is cut at silences"},
				{Name: "overlap", Kind: pipeline.Duration, Default: defaultOverlap, Min: 0, Max: 30,
					Doc: "audio repeated across a cut that falls outside a silence"},
			},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &transcriptStep{g: g, e: e, language: p.String("language"),
					chunk: p.Duration("chunk").Seconds(), overlap: p.Duration("overlap").Seconds()}, nil
			},
		},
		{
			Name: "describe", Heavy: true,
			Doc:    "a short description of the video or image from a vision model, shown a frame of each of its longest scenes: describe.json",
			Params: []pipeline.Param{frames, width, {Name: "prompt", Kind: pipeline.String, Default: defaultDescribePrompt}},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &describeStep{framer: framer{e: e, n: p.Int("frames"), width: p.Int("width"), scenes: true}, g: g, prompt: p.String("prompt")}, nil
			},
		},
		{
			Name: "tags", Heavy: true,
			Doc:    "labels with confidence for the middle frame or the image: tags.json",
			Params: []pipeline.Param{width, {Name: "top", Kind: pipeline.Int, Default: 10, Min: 1, Max: 100}},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &tagsStep{framer: framer{e: e, n: 1, width: p.Int("width")}, g: g, top: p.Int("top")}, nil
			},
		},
		{
			Name: "moderation", Heavy: true,
			Doc: "flagged categories with scores, over frames of the video or the image: moderation.json",
			Params: []pipeline.Param{frames, width,
				{Name: "quarantine", Kind: pipeline.Bool, Default: false,
					Doc: "hold a flagged asset's outputs back from delivery until released (POST /v1/assets/{id}/release)"}},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &moderationStep{framer: framer{e: e, n: p.Int("frames"), width: p.Int("width")}, g: g, quarantine: p.Bool("quarantine")}, nil
			},
		},
		{
			Name: "ocr", Heavy: true,
			Doc: "text seen in the video (a frame of each of its longest scenes, with times) or in the image: ocr.json",
			Params: []pipeline.Param{
				{Name: "frames", Kind: pipeline.Int, Default: 8, Min: 1, Max: 64, Doc: "frames read, spread over the video"},
				{Name: "width", Kind: pipeline.Int, Default: 1280, Min: 64, Max: 4096},
				{Name: "languages", Kind: pipeline.Strings, Doc: "Tesseract language codes; default the provider's"},
			},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &ocrStep{framer: framer{e: e, n: p.Int("frames"), width: p.Int("width"), scenes: true}, g: g, languages: p.Strings("languages")}, nil
			},
		},
		{
			Name: "summary", Heavy: true,
			Doc: "a text model's summary of the transcript: summary.json (put it after transcript with needs)",
			Params: []pipeline.Param{
				{Name: "prompt", Kind: pipeline.String, Default: defaultSummaryPrompt},
				{Name: "max_tokens", Kind: pipeline.Int, Default: 300, Min: 16, Max: 4096},
			},
			New: func(p pipeline.Params) (pipeline.Step, error) {
				return &summaryStep{g: g, prompt: p.String("prompt"), maxTokens: p.Int("max_tokens")}, nil
			},
		},
	}
}

const (
	defaultDescribePrompt = "Describe what this video shows in two or three sentences. The images are frames from it, in order."
	defaultSummaryPrompt  = "Summarize this transcript in a short paragraph."
)

// ended turns a gateway error into how the step ends: skipped when no
// provider could take the task here, degraded when they all failed.
func ended(ctx context.Context, t Task, err error) error {
	switch {
	case ctx.Err() != nil:
		// The job was interrupted (shutdown, a lost lease), not the
		// providers' fault: leave it for the next delivery.
		return ctx.Err()
	case errors.Is(err, ErrNotConfigured):
		return pipeline.Skip("no provider is configured for %s (see the AI configuration in the README)", t)
	case onlyUnavailable(err):
		return pipeline.Skip("no provider for %s is available here: %v", t, err)
	}
	return pipeline.Degrade(fmt.Errorf("%s: %w", t, err))
}

// onlyUnavailable reports whether every provider tried was unavailable.
func onlyUnavailable(err error) bool {
	if !errors.Is(err, ErrUnavailable) {
		return false
	}
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) {
		for _, e := range multi.Unwrap() {
			if !errors.Is(e, ErrUnavailable) {
				return false
			}
		}
	}
	return true
}

// answer is what every enrichment output records besides its result.
type answer struct {
	Provider string `json:"provider"`
	Model    string `json:"model,omitempty"`
	Cached   bool   `json:"cached,omitempty"`
}

func answerOf(m Meta) answer { return answer{Provider: m.Provider, Model: m.Model, Cached: m.Cached} }

// writeJSON writes v to job.Dir/name and returns it as an output.
func writeJSON(job *pipeline.Job, name string, v any) (pipeline.Output, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return pipeline.Output{}, err
	}
	if err := os.WriteFile(filepath.Join(job.Dir, name), append(data, '\n'), 0o644); err != nil {
		return pipeline.Output{}, err
	}
	return pipeline.Output{Name: name, ContentType: "application/json"}, nil
}

func call(job *pipeline.Job) Call { return Call{AssetID: job.AssetID, Key: job.Owner} }

// framer renders frames of a job's input to send to a model: for a
// video, n of them, one in each of the n longest scenes when scenes is
// set (scene changes found by the analyze step's detector; with fewer
// scenes than n, the longest are split), else spread evenly; for a
// still, its one picture.
type framer struct {
	e      *media.Engines
	n      int
	width  int
	scenes bool
}

type frame struct {
	At    float64
	Image Image
}

func hasPicture(job *pipeline.Job) bool { return job.Media != nil && job.Media.Video() != nil }

func (f framer) frames(ctx context.Context, job *pipeline.Job) ([]frame, error) {
	dir, err := os.MkdirTemp(job.Dir, "frames-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var at []float64
	switch {
	case job.Media.Duration <= 0:
		at = []float64{0}
	case f.scenes && f.n > 1:
		cuts, err := sceneChanges(ctx, f.e, job)
		if err != nil {
			return nil, err
		}
		at = pickInScenes(job.Media.Duration, cuts, f.n)
	default:
		for i := range f.n {
			at = append(at, job.Media.Duration*(float64(i)+0.5)/float64(f.n))
		}
	}
	var out []frame
	for i, t := range at {
		name := fmt.Sprintf("f%03d.jpg", i)
		err := media.RenderFrame(ctx, f.e, job.Input, job.Media, dir, name,
			media.FrameOptions{Format: media.FormatJPEG, At: t, Width: f.width, Engine: job.Engine})
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out = append(out, frame{At: t, Image: Image{Data: data, ContentType: "image/jpeg"}})
	}
	return out, nil
}

// sceneChanges runs the analyze step's scene detector over the job.
func sceneChanges(ctx context.Context, e *media.Engines, job *pipeline.Job) ([]float64, error) {
	an, err := (&media.Analyze{Engines: e, Detect: []string{media.DetectScenes}, SceneThreshold: 0.3}).Measure(ctx, job)
	var cuts []float64
	for _, sc := range an.Scenes {
		cuts = append(cuts, sc.Time)
	}
	return cuts, err
}

// pickInScenes returns n times in [0, dur): the middles of the n longest
// stretches between cuts, in time order. Stretches are split in half,
// longest first, until there are at least n.
func pickInScenes(dur float64, cuts []float64, n int) []float64 {
	type span struct{ start, end float64 }
	var spans []span
	prev := 0.0
	for _, c := range cuts {
		if c > prev && c < dur {
			spans = append(spans, span{prev, c})
			prev = c
		}
	}
	spans = append(spans, span{prev, dur})
	longest := func(a, b span) int { return cmpFloat(b.end-b.start, a.end-a.start) }
	for len(spans) < n {
		slices.SortStableFunc(spans, longest)
		s := spans[0]
		mid := (s.start + s.end) / 2
		spans = append(spans[1:], span{s.start, mid}, span{mid, s.end})
	}
	slices.SortStableFunc(spans, longest)
	spans = spans[:n]
	at := make([]float64, n)
	for i, s := range spans {
		at[i] = (s.start + s.end) / 2
	}
	slices.Sort(at)
	return at
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func images(fs []frame) []Image {
	out := make([]Image, len(fs))
	for i, f := range fs {
		out[i] = f.Image
	}
	return out
}

func times(fs []frame) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = f.At
	}
	return out
}

// describeStep: frames to a vision model.
type describeStep struct {
	framer
	g      *Gateway
	prompt string
}

func (*describeStep) Name() string                   { return "describe" }
func (*describeStep) Applies(job *pipeline.Job) bool { return hasPicture(job) }

func (s *describeStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskDescribe) {
		return pipeline.Result{}, ended(ctx, TaskDescribe, ErrNotConfigured)
	}
	fs, err := s.frames(ctx, job)
	if err != nil {
		return pipeline.Result{}, err
	}
	d, meta, err := s.g.Describe(ctx, DescribeRequest{Images: images(fs), Prompt: s.prompt}, call(job))
	if err != nil {
		return pipeline.Result{}, ended(ctx, TaskDescribe, err)
	}
	out, err := writeJSON(job, "describe.json", struct {
		answer
		Text   string    `json:"text"`
		Frames []float64 `json:"frames"`
	}{answerOf(meta), strings.TrimSpace(d.Text), times(fs)})
	return pipeline.Result{Outputs: []pipeline.Output{out}}, err
}

// tagsStep: one frame to a classifier.
type tagsStep struct {
	framer
	g   *Gateway
	top int
}

func (*tagsStep) Name() string                   { return "tags" }
func (*tagsStep) Applies(job *pipeline.Job) bool { return hasPicture(job) }

func (s *tagsStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskTag) {
		return pipeline.Result{}, ended(ctx, TaskTag, ErrNotConfigured)
	}
	fs, err := s.frames(ctx, job)
	if err != nil {
		return pipeline.Result{}, err
	}
	labels, meta, err := s.g.Tag(ctx, TagRequest{Image: fs[0].Image, TopK: s.top}, call(job))
	if err != nil {
		return pipeline.Result{}, ended(ctx, TaskTag, err)
	}
	if len(labels) > s.top {
		labels = labels[:s.top]
	}
	out, err := writeJSON(job, "tags.json", struct {
		answer
		Labels []Label `json:"labels"`
		Frame  float64 `json:"frame"`
	}{answerOf(meta), labels, fs[0].At})
	return pipeline.Result{Outputs: []pipeline.Output{out}}, err
}

// moderationStep: frames to a moderation model, one verdict per frame
// and the worst of them for the asset.
type moderationStep struct {
	framer
	g          *Gateway
	quarantine bool
}

func (*moderationStep) Name() string                   { return "moderation" }
func (*moderationStep) Applies(job *pipeline.Job) bool { return hasPicture(job) }

func (s *moderationStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskModerate) {
		return pipeline.Result{}, ended(ctx, TaskModerate, ErrNotConfigured)
	}
	fs, err := s.frames(ctx, job)
	if err != nil {
		return pipeline.Result{}, err
	}
	type verdict struct {
		At float64 `json:"time"`
		Moderation
	}
	total := Moderation{Categories: map[string]float64{}}
	var perFrame []verdict
	var meta Meta
	for _, f := range fs {
		m, mt, err := s.g.Moderate(ctx, ModerateRequest{Images: []Image{f.Image}}, call(job))
		if err != nil {
			return pipeline.Result{}, ended(ctx, TaskModerate, err)
		}
		meta = mt
		perFrame = append(perFrame, verdict{f.At, m})
		total.Flagged = total.Flagged || m.Flagged
		for c, v := range m.Categories {
			total.Categories[c] = max(total.Categories[c], v)
		}
	}
	out, err := writeJSON(job, "moderation.json", struct {
		answer
		Moderation
		Frames []verdict `json:"frames"`
	}{answerOf(meta), total, perFrame})
	res := pipeline.Result{Outputs: []pipeline.Output{out}}
	if total.Flagged && s.quarantine {
		res.Quarantine = "flagged by moderation (" + flaggedSummary(total.Categories) + ")"
	}
	return res, err
}

// flaggedSummary lists the highest-scoring categories, for a reason.
func flaggedSummary(cats map[string]float64) string {
	names := make([]string, 0, len(cats))
	for c := range cats {
		names = append(names, c)
	}
	sort.Slice(names, func(i, j int) bool { return cats[names[i]] > cats[names[j]] })
	var parts []string
	for _, c := range names[:min(3, len(names))] {
		parts = append(parts, fmt.Sprintf("%s %.2f", c, cats[c]))
	}
	return strings.Join(parts, ", ")
}

// ocrStep: text in frames, with the time of each frame; consecutive
// frames showing the same text are reported once.
type ocrStep struct {
	framer
	g         *Gateway
	languages []string
}

func (*ocrStep) Name() string                   { return "ocr" }
func (*ocrStep) Applies(job *pipeline.Job) bool { return hasPicture(job) }

func (s *ocrStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskOCR) {
		return pipeline.Result{}, ended(ctx, TaskOCR, ErrNotConfigured)
	}
	fs, err := s.frames(ctx, job)
	if err != nil {
		return pipeline.Result{}, err
	}
	type seen struct {
		At    float64   `json:"time"`
		Text  string    `json:"text"`
		Lines []OCRLine `json:"lines,omitempty"`
	}
	var found []seen
	var texts []string
	var meta Meta
	for _, f := range fs {
		r, mt, err := s.g.OCR(ctx, OCRRequest{Image: f.Image, Languages: s.languages}, call(job))
		if err != nil {
			return pipeline.Result{}, ended(ctx, TaskOCR, err)
		}
		meta = mt
		text := strings.TrimSpace(r.Text)
		if text == "" || len(found) > 0 && found[len(found)-1].Text == text {
			continue
		}
		found = append(found, seen{f.At, text, r.Lines})
		texts = append(texts, text)
	}
	if found == nil {
		found = []seen{}
	}
	out, err := writeJSON(job, "ocr.json", struct {
		answer
		Text   string `json:"text"`
		Frames []seen `json:"frames"`
	}{answerOf(meta), strings.Join(texts, "\n"), found})
	return pipeline.Result{Outputs: []pipeline.Output{out}}, err
}

// summaryStep: the transcript's text to a text model.
type summaryStep struct {
	g         *Gateway
	prompt    string
	maxTokens int
}

func (*summaryStep) Name() string { return "summary" }
func (*summaryStep) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Audio() != nil
}

func (s *summaryStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskSummarize) {
		return pipeline.Result{}, ended(ctx, TaskSummarize, ErrNotConfigured)
	}
	if job.ReadOutput == nil {
		return pipeline.Result{}, errors.New("summary: no stored outputs to read the transcript from")
	}
	data, err := job.ReadOutput(ctx, TranscriptJSON)
	if err != nil {
		return pipeline.Result{}, pipeline.Skip("no transcript to summarize (%v)", err)
	}
	var t struct{ Text string }
	if err := json.Unmarshal(data, &t); err != nil {
		return pipeline.Result{}, fmt.Errorf("summary: read transcript: %w", err)
	}
	if strings.TrimSpace(t.Text) == "" {
		return pipeline.Result{}, pipeline.Skip("the transcript is empty")
	}
	sum, meta, err := s.g.Summarize(ctx, SummarizeRequest{Text: t.Text, Prompt: s.prompt, MaxTokens: s.maxTokens}, call(job))
	if err != nil {
		return pipeline.Result{}, ended(ctx, TaskSummarize, err)
	}
	out, err := writeJSON(job, "summary.json", struct {
		answer
		Text string `json:"text"`
	}{answerOf(meta), strings.TrimSpace(sum.Text)})
	return pipeline.Result{Outputs: []pipeline.Output{out}}, err
}
