package media

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// PreviewType is the "preview" step type.
func PreviewType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name:  "preview",
		Doc:   "a short silent loop of the clip, as animated WebP or GIF, for hover previews",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "format", Kind: pipeline.String, Default: "webp", Enum: []string{"webp", "gif"}, Doc: "animated WebP (smaller, better colour) or GIF (plays everywhere)"},
			{Name: "duration", Kind: pipeline.Duration, Default: 3 * time.Second, Min: 0.5, Max: 30, Doc: "length of the loop"},
			{Name: "width", Kind: pipeline.Int, Default: 320, Min: 16, Max: 1280, Doc: "width in pixels; the aspect ratio is kept, never upscaled"},
			{Name: "fps", Kind: pipeline.Int, Default: 10, Min: 1, Max: 30, Doc: "frames per second"},
			{Name: "start", Kind: pipeline.Duration, Min: 0, Max: 1e6, Doc: "where the loop starts (default: 10% into the clip); moved earlier when the clip ends sooner"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			start := PreviewAutoStart
			if p.Has("start") {
				start = p.Duration("start")
			}
			return &Preview{
				Engines:  e,
				Format:   p.String("format"),
				Duration: p.Duration("duration"),
				Width:    p.Int("width"),
				FPS:      p.Int("fps"),
				Start:    start,
			}, nil
		},
	}
}

// Preview writes a short animated loop of the clip, looping forever, for
// a catalogue page to play on hover: animated WebP (libwebp_anim, in the
// WebAssembly build and Debian's FFmpeg alike) or GIF, whose 256 colours
// come from a palette made for these very frames (palettegen and
// paletteuse) rather than a fixed one.
type Preview struct {
	Engines  *Engines
	Format   string        // "webp" (default) or "gif"
	Duration time.Duration // 0: 3s
	Width    int           // 0: 320
	FPS      int           // 0: 10
	// Start is where the loop begins, or PreviewAutoStart. Either way the loop
	// is moved earlier, as far as the clip's start, to end with the clip.
	Start time.Duration
}

// PreviewAutoStart starts a Preview 10% into the clip, past the titles and fade
// from black that open many videos.
const PreviewAutoStart time.Duration = -1

var _ pipeline.Step = (*Preview)(nil)

// Preview output names.
const (
	PreviewWebP = "preview.webp"
	PreviewGIF  = "preview.gif"
)

func (*Preview) Name() string { return "preview" }

func (*Preview) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Video() != nil && job.Media.Duration > 0
}

// window returns the start and length of the loop in a clip of the given
// duration, in seconds.
func (p *Preview) window(duration float64) (start, length float64) {
	length = min(cmp.Or(p.Duration, 3*time.Second).Seconds(), duration)
	start = 0.1 * duration
	if p.Start >= 0 {
		start = p.Start.Seconds()
	}
	return max(0, min(start, duration-length)), length
}

func (p *Preview) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	start, length := p.window(job.Media.Duration)
	fps := cmp.Or(p.FPS, 10)
	frames := max(1, int(math.Round(length*float64(fps))))
	chain := fmt.Sprintf("[0:v:0]fps=%d,scale=w='trunc(min(%d\\,iw*sar)/2)*2':h='trunc(ow/dar/2)*2',setsar=1", fps, cmp.Or(p.Width, 320))

	// Input seeking: decoding starts at the keyframe before start.
	args := []string{"-ss", strconv.FormatFloat(start, 'f', 3, 64), "-t", strconv.FormatFloat(length, 'f', 3, 64)}
	args = append(args, inputArgs(job.Media)...)
	name, contentType := PreviewWebP, "image/webp"
	if p.Format == "gif" {
		name, contentType = PreviewGIF, "image/gif"
		// stats_mode=diff and diff_mode=rectangle favour what moves and
		// re-dither only the changed area, which keeps the file small.
		args = append(args, "-filter_complex", chain+",split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=diff_mode=rectangle[v]",
			"-map", "[v]", "-c:v", "gif")
	} else {
		args = append(args, "-filter_complex", chain+"[v]",
			"-map", "[v]", "-c:v", "libwebp_anim", "-quality", "70")
	}
	args = append(args, "-frames:v", strconv.Itoa(frames), "-loop", "0", "-f", map[string]string{PreviewWebP: "webp", PreviewGIF: "gif"}[name], Out(name))

	e, err := p.Engines.Pick(job.Engine, true)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, noFrameDecoded(err, fmt.Sprintf("from %.3fs", start))
	}
	if err := nonEmpty(job.Dir, name); err != nil {
		return pipeline.Result{}, pipeline.Invalid("no video frame could be decoded from %.3fs", start)
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: name, ContentType: contentType}}}, nil
}
