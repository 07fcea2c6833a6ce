package ai

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// Transcript outputs.
const (
	TranscriptJSON = "transcript.json"
	TranscriptVTT  = "transcript.vtt"
	TranscriptSRT  = "transcript.srt"
)

const (
	defaultChunk   = 10 * time.Minute // about 10 MB of 16 kHz mono FLAC: under 25 MB limits
	defaultOverlap = 2 * time.Second
	// transcriptRate is what speech models are trained on.
	transcriptRate = 16000
)

// transcriptStep sends the first audio track, 16 kHz mono, to a speech
// model. Audio longer than chunk is cut into pieces, each cut placed in
// the longest silence near where it is due so that no word is split;
// where no silence is near, the pieces overlap and the words of the
// overlap are taken from the piece that heard them whole. Segment times
// are on the asset's timeline.
type transcriptStep struct {
	g        *Gateway
	e        *media.Engines
	language string
	chunk    float64 // seconds
	overlap  float64 // seconds
}

func (*transcriptStep) Name() string { return "transcript" }
func (*transcriptStep) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Audio() != nil
}

// piece is one request's worth of audio: [Start, End) plus Overlap.
type piece struct{ Start, End, Overlap float64 }

func (s *transcriptStep) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	if !s.g.Configured(TaskTranscribe) {
		return pipeline.Result{}, ended(ctx, TaskTranscribe, ErrNotConfigured)
	}
	dur := job.Media.Duration
	var silences []media.Span
	if dur > s.chunk {
		var err error
		if silences, err = s.silences(ctx, job); err != nil {
			return pipeline.Result{}, err
		}
	}
	pieces := cutAtSilences(dur, s.chunk, s.overlap, silences)
	tmp, err := os.MkdirTemp(job.Dir, "audio-")
	if err != nil {
		return pipeline.Result{}, err
	}
	defer os.RemoveAll(tmp)

	var all Transcript
	var meta Meta
	prompt := ""
	for i, p := range pieces {
		name := fmt.Sprintf("piece-%03d.flac", i)
		length := p.End - p.Start + p.Overlap
		if err := media.ExtractAudio(ctx, s.e, job.Engine, job.Input, job.Media, tmp, name, transcriptRate, p.Start, length); err != nil {
			return pipeline.Result{}, err
		}
		data, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			return pipeline.Result{}, err
		}
		t, m, err := s.g.Transcribe(ctx, TranscribeRequest{
			Audio: data, Filename: name, Language: s.language, Prompt: prompt, Duration: length,
		}, call(job))
		if err != nil {
			return pipeline.Result{}, ended(ctx, TaskTranscribe, fmt.Errorf("piece %d of %d (%.0fs to %.0fs): %w", i+1, len(pieces), p.Start, p.End, err))
		}
		meta = m
		if all.Language == "" {
			all.Language = t.Language
		}
		all.Segments = stitch(all.Segments, t.Segments, p)
		prompt = lastWords(all.Segments, 200)
	}
	var text []string
	for _, seg := range all.Segments {
		text = append(text, seg.Text)
	}
	all.Text = strings.Join(text, " ")
	if all.Segments == nil {
		all.Segments = []Segment{}
	}
	jsonOut, err := writeJSON(job, TranscriptJSON, struct {
		answer
		Transcript
		Pieces int `json:"pieces"`
	}{answerOf(meta), all, len(pieces)})
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := os.WriteFile(filepath.Join(job.Dir, TranscriptVTT), []byte(webVTT(all.Segments)), 0o644); err != nil {
		return pipeline.Result{}, err
	}
	if err := os.WriteFile(filepath.Join(job.Dir, TranscriptSRT), []byte(srt(all.Segments)), 0o644); err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Outputs: []pipeline.Output{
		jsonOut,
		{Name: TranscriptVTT, ContentType: "text/vtt; charset=utf-8"},
		{Name: TranscriptSRT, ContentType: "application/x-subrip; charset=utf-8"},
	}}, nil
}

// silences finds pauses of at least 0.3 s in the audio, where cuts go.
func (s *transcriptStep) silences(ctx context.Context, job *pipeline.Job) ([]media.Span, error) {
	a := &media.Analyze{Engines: s.e, Detect: []string{media.DetectSilence}, SilenceNoise: -35, SilenceDuration: 300 * time.Millisecond}
	an, err := a.Measure(ctx, job)
	return an.Silence, err
}

// cutAtSilences splits [0, dur) into pieces of at most chunk seconds
// (plus overlap). Each cut goes in the middle of the longest silence in
// the last fifth of the piece; with none there, the cut falls at the
// limit and the piece overlaps the next by overlap seconds.
func cutAtSilences(dur, chunk, overlap float64, silences []media.Span) []piece {
	if dur <= chunk || chunk <= 0 {
		return []piece{{Start: 0, End: dur}}
	}
	var out []piece
	start := 0.0
	for dur-start > chunk {
		limit := start + chunk - overlap
		from := start + chunk*0.8
		best, bestLen := -1.0, 0.0
		for _, sp := range silences {
			mid := (sp.Start + sp.End) / 2
			if mid > from && mid < limit && sp.End-sp.Start > bestLen {
				best, bestLen = mid, sp.End-sp.Start
			}
		}
		if best > 0 {
			out = append(out, piece{Start: start, End: best})
			start = best
			continue
		}
		out = append(out, piece{Start: start, End: limit, Overlap: overlap})
		start = limit
	}
	return append(out, piece{Start: start, End: dur})
}

// stitch appends a piece's segments, moved onto the asset's timeline, to
// those so far. Segments that start in the piece's overlap belong to the
// next piece, which heard them from their start; a segment that starts
// before the previous one ended was heard already and is dropped.
func stitch(so, segs []Segment, p piece) []Segment {
	for _, s := range segs {
		s.Start += p.Start
		s.End += p.Start
		if p.Overlap > 0 && s.Start >= p.End {
			continue
		}
		if n := len(so); n > 0 && s.Start < so[n-1].End-0.25 {
			continue
		}
		s.Text = strings.TrimSpace(s.Text)
		if s.Text == "" {
			continue
		}
		so = append(so, s)
	}
	return so
}

// lastWords is the end of the transcript so far, as a prompt for the next
// piece: at most n bytes, starting at a word.
func lastWords(segs []Segment, n int) string {
	var parts []string
	total := 0
	for i := len(segs) - 1; i >= 0 && total < n; i-- {
		parts = append([]string{segs[i].Text}, parts...)
		total += len(segs[i].Text) + 1
	}
	s := strings.Join(parts, " ")
	if len(s) > n {
		s = s[len(s)-n:]
		if i := strings.IndexByte(s, ' '); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

func webVTT(segs []Segment) string {
	var b strings.Builder
	b.WriteString("WEBVTT\n")
	for _, s := range segs {
		fmt.Fprintf(&b, "\n%s --> %s\n%s\n", clock(s.Start, '.'), clock(s.End, '.'), cueText(s.Text))
	}
	return b.String()
}

func srt(segs []Segment) string {
	var b strings.Builder
	for i, s := range segs {
		fmt.Fprintf(&b, "%d\n%s --> %s\n%s\n\n", i+1, clock(s.Start, ','), clock(s.End, ','), cueText(s.Text))
	}
	return b.String()
}

// cueText keeps a cue's text from ending the cue early: no blank lines,
// and no "-->".
func cueText(s string) string {
	s = strings.ReplaceAll(s, "-->", "->")
	return strings.Join(strings.Fields(s), " ")
}

// clock formats seconds as HH:MM:SS.mmm (sep '.') or HH:MM:SS,mmm (',').
func clock(sec float64, sep byte) string {
	ms := int64(math.Round(max(sec, 0) * 1000))
	return fmt.Sprintf("%02d:%02d:%02d%c%03d", ms/3600000, ms/60000%60, ms/1000%60, sep, ms%1000)
}
