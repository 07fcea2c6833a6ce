package media

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// Picture formats RenderFrame writes, named by their file extensions.
const (
	FormatJPEG = "jpg"
	FormatPNG  = "png"
	FormatWebP = "webp"
	FormatGIF  = "gif"
)

// Ways a picture is fitted into a Width x Height box.
const (
	// FitClip scales to fit inside the box, keeping the aspect ratio,
	// without padding: one side may come out shorter than the box.
	FitClip = "clip"
	// FitCrop scales to cover the box, keeping the aspect ratio, and cuts
	// off what sticks out, centred: exactly Width x Height.
	FitCrop = "crop"
	// FitScale stretches to exactly Width x Height.
	FitScale = "scale"
	// FitFill fits inside the box as FitClip does and pads the rest with
	// black: exactly Width x Height.
	FitFill = "fill"
)

// FrameOptions describe a picture taken from a video: one frame, or a
// short animation when Duration is above zero.
//
// Nothing is ever upscaled except by FitScale: FitClip and FitFill keep
// the frame at most its own size, and FitCrop, for a box larger than the
// frame, crops the largest region of the box's aspect ratio the frame
// holds (so the result is smaller than the box, with its shape).
type FrameOptions struct {
	Format string  // FormatJPEG, FormatPNG, FormatWebP or FormatGIF
	At     float64 // seconds into the clip
	// Width and Height are the box. Either may be 0 under FitClip, which
	// leaves that side free; the other fits modes need both.
	Width, Height int
	Fit           string  // "" means FitClip
	Duration      float64 // seconds of animation (WebP or GIF only); 0 for one frame
	FPS           int     // frames per second of an animation
	// Engine is the engine mode ("" for the engines' default). One frame
	// is light work; an animation is an encode.
	Engine string
}

// Animated reports whether the options describe an animation.
func (o FrameOptions) Animated() bool { return o.Duration > 0 }

// Frames is the most frames an animation has (1 for a still).
func (o FrameOptions) Frames() int {
	if !o.Animated() {
		return 1
	}
	return int(math.Ceil(o.Duration*float64(o.FPS) - 1e-9))
}

// ContentType is the MIME type of the format.
func (o FrameOptions) ContentType() string { return frameTypes[o.Format] }

var frameTypes = map[string]string{
	FormatJPEG: "image/jpeg",
	FormatPNG:  "image/png",
	FormatWebP: "image/webp",
	FormatGIF:  "image/gif",
}

// Validate checks the options for consistency; it does not bound them,
// which is the caller's business.
func (o FrameOptions) Validate() error {
	if frameTypes[o.Format] == "" {
		return fmt.Errorf("media: unknown picture format %q", o.Format)
	}
	if !(o.At >= 0) || math.IsInf(o.At, 0) {
		return fmt.Errorf("media: frame time %v", o.At)
	}
	if o.Width < 0 || o.Height < 0 || (o.Width == 0 && o.Height == 0) {
		return fmt.Errorf("media: frame box %dx%d", o.Width, o.Height)
	}
	switch o.Fit {
	case "", FitClip:
	case FitCrop, FitScale, FitFill:
		if o.Width == 0 || o.Height == 0 {
			return fmt.Errorf("media: fit %s needs both width and height", o.Fit)
		}
	default:
		return fmt.Errorf("media: unknown fit %q", o.Fit)
	}
	if o.Animated() {
		if o.Format != FormatGIF && o.Format != FormatWebP {
			return fmt.Errorf("media: %s cannot be animated", o.Format)
		}
		if math.IsInf(o.Duration, 0) || o.FPS <= 0 {
			return fmt.Errorf("media: animation of %vs at %d fps", o.Duration, o.FPS)
		}
	} else if o.Duration < 0 || math.IsNaN(o.Duration) {
		return fmt.Errorf("media: animation duration %v", o.Duration)
	}
	return nil
}

// RenderFrame writes the picture o describes, taken from the video at
// input (probed as m), to dir/name. A sandboxed engine sees only input's
// directory and dir. Input that yields no frame at o.At is a
// *pipeline.MediaError.
func RenderFrame(ctx context.Context, e *Engines, input string, m *pipeline.Media, dir, name string, o FrameOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if m == nil || m.Video() == nil {
		return pipeline.Invalid("the input has no video")
	}
	args := []string{"-ss", strconv.FormatFloat(o.At, 'f', 3, 64)}
	if o.Animated() {
		args = append(args, "-t", strconv.FormatFloat(o.Duration, 'f', 3, 64))
	}
	args = append(args, inputArgs(m)...)
	args = append(args, "-map", "0:v:0", "-an", "-sn", "-dn", "-map_metadata", "-1",
		"-frames:v", strconv.Itoa(o.Frames()), "-vf", frameFilter(o))
	args = append(args, frameCodec(o)...)
	args = append(args, Out(name))
	eng, err := e.Pick(o.Engine, o.Animated())
	if err != nil {
		return err
	}
	if err := eng.FFmpeg(ctx, Command{Input: input, Dir: dir, Args: args}); err != nil {
		var me *pipeline.MediaError
		if errors.As(err, &me) {
			return &pipeline.MediaError{
				Reason: fmt.Sprintf("no picture could be rendered at %.3fs (%s)", o.At, me.Reason), Err: err}
		}
		return err
	}
	if err := nonEmpty(dir, name); err != nil {
		return pipeline.Invalid("no video frame could be decoded at %.3fs", o.At)
	}
	return nil
}

// frameFilter is the -vf graph: frame rate, geometry, then what the
// encoder wants. Geometry works on the display size, iw*sar x ih, after
// FFmpeg's automatic rotation, and ends in square-pixel RGB so that crop
// and pad keep odd sizes exact (they round to chroma subsampling in YUV).
func frameFilter(o FrameOptions) string {
	var f []string
	if o.Animated() {
		f = append(f, "fps="+strconv.Itoa(o.FPS))
	}
	f = append(f, geometry(o)...)
	switch {
	case o.Format == FormatGIF:
		// One palette for the whole animation, from the pixels that
		// change; dithering in ordered blocks keeps frame diffs small.
		f = append(f, "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle")
	case o.Format == FormatJPEG:
		f = append(f, "format=yuvj420p")
	case o.Format == FormatWebP:
		f = append(f, "format=yuv420p")
	}
	return strings.Join(f, ",")
}

// geometry scales (and crops or pads) to the box.
func geometry(o FrameOptions) []string {
	W, H := strconv.Itoa(o.Width), strconv.Itoa(o.Height)
	const square = "setsar=1,format=rgb24"
	// Display width and height of the input.
	const dw, dh = "(iw*sar)", "ih"
	switch o.Fit {
	case FitScale:
		return []string{fmt.Sprintf("scale=w=%s:h=%s", W, H), square}
	case FitCrop:
		// Cover the box, never upscaling, then cut the box (or, when the
		// frame is smaller, the largest region of the box's shape) from
		// the middle.
		f := fmt.Sprintf("min(1\\,max(%s/%s\\,%s/%s))", W, dw, H, dh)
		return []string{
			fmt.Sprintf("scale=w='max(1\\,ceil(%s*%s))':h='max(1\\,ceil(%s*%s))'", dw, f, dh, f),
			square,
			fmt.Sprintf("crop=w='max(1\\,floor(min(%s\\,min(iw\\,ih*%s/%s))))':h='max(1\\,min(%s\\,min(ih\\,round(ow*%s/%s))))'",
				W, W, H, H, H, W),
		}
	}
	// Clip, and Fill before its padding: fit inside the box and inside
	// the frame itself. A missing side is unbounded.
	if o.Width == 0 {
		W = strconv.Itoa(math.MaxInt32)
	}
	if o.Height == 0 {
		H = strconv.Itoa(math.MaxInt32)
	}
	g := []string{
		fmt.Sprintf("scale=w='max(1\\,round(min(min(%s\\,%s)\\,%s*dar)))':h='max(1\\,min(%s\\,round(ow/dar)))'", W, dw, H, H),
		square,
	}
	if o.Fit == FitFill {
		g = append(g, fmt.Sprintf("pad=w=%s:h=%s:x='(ow-iw)/2':y='(oh-ih)/2':color=black", W, H))
	}
	return g
}

// frameCodec are the encoder and muxer arguments of the format.
func frameCodec(o FrameOptions) []string {
	switch {
	case o.Format == FormatJPEG:
		return []string{"-c:v", "mjpeg", "-q:v", "3", "-f", "image2", "-update", "1"}
	case o.Format == FormatPNG:
		return []string{"-c:v", "png", "-f", "image2", "-update", "1"}
	case o.Format == FormatGIF:
		return []string{"-c:v", "gif", "-loop", "0", "-f", "gif"}
	case o.Animated(): // WebP
		return []string{"-c:v", "libwebp_anim", "-quality", "75", "-loop", "0", "-f", "webp"}
	}
	return []string{"-c:v", "libwebp", "-quality", "80", "-f", "webp"}
}
