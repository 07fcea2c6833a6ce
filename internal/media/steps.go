package media

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Steps returns the media steps, running on the given engines, ready to
// register.
func Steps(e *Engines, cfg StepsConfig) []pipeline.Step {
	return []pipeline.Step{
		&Probe{Engines: e},
		&Thumbnail{Engines: e, Width: cfg.ThumbnailWidth, At: cfg.ThumbnailAt},
		&Audio{Engines: e, Bitrate: cfg.AudioBitrate},
	}
}

// StepsConfig holds the parameters of the default media steps.
type StepsConfig struct {
	ThumbnailWidth int     // pixels; default 640
	ThumbnailAt    float64 // seconds; default 2
	AudioBitrate   string  // AAC bitrate when re-encoding; default "160k"
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
