package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Types returns the media step types, running on the given engines,
// ready to register. assetsDir holds the files pipelines may name
// (watermark images, fonts); "" for none.
func Types(e *Engines, assetsDir string) []pipeline.StepType {
	return []pipeline.StepType{
		ProbeType(e),
		ThumbnailType(e),
		AudioType(e),
		WaveformType(e),
		AnalyzeType(e),
		HLSType(e),
		MP4Type(e),
		StoryboardType(e),
		PreviewType(e),
		ImageType(e),
		WatermarkType(e, assetsDir),
		CustomType(e),
	}
}

// ProbeType is the "probe" step type.
func ProbeType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "probe",
		Doc:  "ffprobe the input: duration, container, streams; rejects what is not media",
		New:  func(pipeline.Params) (pipeline.Step, error) { return &Probe{Engines: e}, nil },
	}
}

// ThumbnailType is the "thumbnail" step type.
func ThumbnailType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "thumbnail",
		Doc:  "a JPEG of one frame, input-seeked, rotation honoured, never upscaled",
		Params: []pipeline.Param{
			{Name: "width", Kind: pipeline.Int, Default: 640, Min: 16, Max: 7680, Doc: "width in pixels; the aspect ratio is kept"},
			{Name: "at", Kind: pipeline.Float, Default: 2.0, Min: 0, Max: 1e6, Doc: "seconds into the clip (the middle of shorter clips)"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			return &Thumbnail{Engines: e, Width: p.Int("width"), At: p.Float("at")}, nil
		},
	}
}

// AudioType is the "audio" step type.
func AudioType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "audio",
		Doc:  "the first audio track as M4A: stream copy when AAC, else an AAC encode",
		Params: []pipeline.Param{
			{Name: "bitrate", Kind: pipeline.String, Default: "160k", Doc: "AAC bitrate when re-encoding"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			br := p.String("bitrate")
			if !validBitrate(br) {
				return nil, &pipeline.ParamError{Param: "bitrate", Msg: fmt.Sprintf("%q is not a bitrate such as 128k", br)}
			}
			return &Audio{Engines: e, Bitrate: br}, nil
		},
	}
}

// validBitrate accepts what FFmpeg's -b:a does in practice: digits with
// an optional k or M.
func validBitrate(s string) bool {
	s = strings.TrimRight(s, "kM")
	if s == "" || len(s) > 7 {
		return false
	}
	_, err := strconv.Atoi(s)
	return err == nil
}

// Probe records what the input is. Every pipeline starts with it: later
// steps use its findings, and it rejects what is not media.
type Probe struct{ Engines *Engines }

var _ pipeline.Step = (*Probe)(nil)

func (*Probe) Name() string                   { return "probe" }
func (*Probe) Applies(job *pipeline.Job) bool { return true }

func (p *Probe) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	e, err := p.Engines.Pick(job.Engine, false)
	if err != nil {
		return pipeline.Result{}, err
	}
	m, err := e.Probe(ctx, job.Input)
	if err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Media: m}, nil
}

// Thumbnail writes a JPEG of one frame, seeking on the input (fast: it
// decodes from the nearest keyframe only), rotated as the video says it
// should be displayed, scaled to a width with the display aspect kept.
type Thumbnail struct {
	Engines *Engines
	Width   int
	At      float64
}

var _ pipeline.Step = (*Thumbnail)(nil)

// ThumbnailName is the output's name.
const ThumbnailName = "thumbnail.jpg"

func (*Thumbnail) Name() string { return "thumbnail" }

func (*Thumbnail) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Video() != nil
}

// seekTime is At, or the middle of clips not longer than At.
func (t *Thumbnail) seekTime(duration float64) float64 {
	if at := t.at(); duration > at {
		return at
	}
	return duration / 2
}

func (t *Thumbnail) at() float64 {
	if t.At <= 0 {
		return 2
	}
	return t.At
}

func (t *Thumbnail) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	at := t.seekTime(job.Media.Duration)
	return t.render(ctx, job, inputArgs(job.Media), at)
}

// Prestart renders at At while the probe runs. Without a probe result
// the demuxer cannot be pinned, so the input is opened under the same
// demuxer whitelist the probe uses.
func (t *Thumbnail) Prestart(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	return t.render(ctx, job, whitelistedInputArgs(), t.at())
}

// Keep accepts the early thumbnail when the probe confirms the clip is
// longer than At, which is where the early run seeked to.
func (t *Thumbnail) Keep(job *pipeline.Job, early pipeline.Result) bool {
	return job.Media != nil && job.Media.Duration > t.at()
}

var _ pipeline.Prestarter = (*Thumbnail)(nil)

func (t *Thumbnail) render(ctx context.Context, job *pipeline.Job, input []string, at float64) (pipeline.Result, error) {
	width := t.Width
	if width <= 0 {
		width = 640
	}
	// Never upscale; keep the display aspect ratio (dar accounts for
	// non-square pixels); even dimensions for chroma subsampling.
	scale := fmt.Sprintf("scale=w='trunc(min(%d\\,iw*sar)/2)*2':h='trunc(ow/dar/2)*2',setsar=1", width)
	args := []string{"-ss", strconv.FormatFloat(at, 'f', 3, 64)}
	args = append(args, input...)
	args = append(args,
		"-map", "0:v:0", "-an", "-sn", "-dn",
		"-frames:v", "1", "-vf", scale,
		"-q:v", "3", "-f", "image2", "-update", "1",
		Out(ThumbnailName),
	)
	e, err := t.Engines.Pick(job.Engine, false)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		var me *pipeline.MediaError
		if errors.As(err, &me) {
			return pipeline.Result{}, &pipeline.MediaError{
				Reason: fmt.Sprintf("no video frame could be decoded at %.3fs (%s)", at, me.Reason), Err: err}
		}
		return pipeline.Result{}, err
	}
	if err := nonEmpty(job.Dir, ThumbnailName); err != nil {
		return pipeline.Result{}, pipeline.Invalid("no video frame could be decoded at %.3fs", at)
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: ThumbnailName, ContentType: "image/jpeg"}}}, nil
}

// Audio extracts the first audio track as an M4A file: a stream copy when
// it is AAC already, an AAC encode otherwise.
type Audio struct {
	Engines *Engines
	Bitrate string
}

var _ pipeline.Step = (*Audio)(nil)

// AudioName is the output's name.
const AudioName = "audio.m4a"

func (*Audio) Name() string { return "audio" }

func (*Audio) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Audio() != nil
}

func (a *Audio) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	codec := []string{"-c:a", "copy"}
	encode := job.Media.Audio().Codec != "aac"
	if encode {
		br := a.Bitrate
		if br == "" {
			br = "160k"
		}
		codec = []string{"-c:a", "aac", "-b:a", br}
	}
	args := inputArgs(job.Media)
	args = append(args, "-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1")
	args = append(args, codec...)
	args = append(args, "-movflags", "+faststart", "-f", "mp4", Out(AudioName))
	e, err := a.Engines.Pick(job.Engine, encode)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, err
	}
	if err := nonEmpty(job.Dir, AudioName); err != nil {
		return pipeline.Result{}, pipeline.Invalid("no audio could be decoded")
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: AudioName, ContentType: "audio/mp4"}}}, nil
}

func nonEmpty(dir, name string) error {
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%s is empty", name)
	}
	return nil
}
