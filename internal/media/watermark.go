package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/color"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// WatermarkType is the "watermark" step type. Overlay images and fonts
// are read from assetsDir, and from nowhere else: a pipeline names them
// by paths relative to it ("" allows text watermarks in the default font
// only).
func WatermarkType(e *Engines, assetsDir string) pipeline.StepType {
	return pipeline.StepType{
		Name:  "watermark",
		Doc:   "the video with an image or a text laid over it in a corner or the centre, as MP4 (H.264, AAC, faststart)",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "image", Kind: pipeline.String, Doc: "a PNG, JPEG or WebP file, as a path relative to the assets directory"},
			{Name: "text", Kind: pipeline.String, Doc: "text to draw instead of an image (needs native FFmpeg: the WebAssembly build cannot draw text)"},
			{Name: "font", Kind: pipeline.String, Doc: "TrueType or OpenType font for text, relative to the assets directory (default: DejaVu Sans, from fonts-dejavu-core)"},
			{Name: "font_size", Kind: pipeline.Int, Default: 0, Min: 0, Max: 1000, Doc: "text height in pixels (0: a twentieth of the video's height)"},
			{Name: "colour", Kind: pipeline.String, Default: "#ffffff", Doc: "text colour as #rrggbb or #rrggbbaa"},
			{Name: "position", Kind: pipeline.String, Default: "bottom-right", Enum: watermarkPositions, Doc: "where the watermark goes"},
			{Name: "margin", Kind: pipeline.Int, Default: 16, Min: 0, Max: 4096, Doc: "pixels between the watermark and the edges"},
			{Name: "opacity", Kind: pipeline.Float, Default: 0.8, Min: 0, Max: 1, Doc: "0 (invisible) to 1 (opaque)"},
			{Name: "scale", Kind: pipeline.Float, Default: 0.15, Min: 0.01, Max: 1, Doc: "image width as a fraction of the video's width"},
			{Name: "crf", Kind: pipeline.Int, Default: 20, Min: 15, Max: 35, Doc: "x264 constant rate factor (lower is better quality)"},
			{Name: "preset", Kind: pipeline.String, Default: "veryfast", Enum: x264Presets, Doc: "x264 speed preset"},
			{Name: "audio_bitrate", Kind: pipeline.String, Default: "128k", Doc: "AAC bitrate when the audio is not AAC already (AAC is copied)"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			w := &Watermark{
				Engines:      e,
				Text:         p.String("text"),
				FontSize:     p.Int("font_size"),
				Position:     p.String("position"),
				Margin:       p.Int("margin"),
				Opacity:      p.Float("opacity"),
				Scale:        p.Float("scale"),
				CRF:          p.Int("crf"),
				Preset:       p.String("preset"),
				AudioBitrate: p.String("audio_bitrate"),
			}
			image := p.String("image")
			switch {
			case image != "" && w.Text != "":
				return nil, &pipeline.ParamError{Param: "text", Msg: "give an image or a text, not both"}
			case image == "" && w.Text == "":
				return nil, &pipeline.ParamError{Param: "image", Msg: "give an image (or a text) to lay over the video"}
			}
			if !validBitrate(w.AudioBitrate) {
				return nil, &pipeline.ParamError{Param: "audio_bitrate", Msg: fmt.Sprintf("%q is not a bitrate such as 128k", w.AudioBitrate)}
			}
			if image != "" {
				data, err := readAsset(assetsDir, image, maxOverlaySize)
				if err != nil {
					return nil, &pipeline.ParamError{Param: "image", Msg: err.Error()}
				}
				if w.ImageFormat = pictureDemuxer(data); w.ImageFormat == "" {
					return nil, &pipeline.ParamError{Param: "image", Msg: fmt.Sprintf("%s is not a PNG, JPEG or WebP file", image)}
				}
				w.Image = data
				return w, nil
			}
			if err := checkText(w.Text); err != nil {
				return nil, &pipeline.ParamError{Param: "text", Msg: err.Error()}
			}
			if e.Native == nil {
				return nil, &pipeline.ParamError{Param: "text", Msg: errNoDrawtext.Error()}
			}
			c, err := parseColour(p.String("colour"))
			if err != nil {
				return nil, &pipeline.ParamError{Param: "colour", Msg: err.Error()}
			}
			w.Colour = c
			if font := p.String("font"); font != "" {
				w.Font, err = readAsset(assetsDir, font, maxFontSize)
				if err == nil && !isFont(w.Font) {
					err = fmt.Errorf("%s is not a TrueType or OpenType font", font)
				}
			} else {
				w.Font, err = defaultFont()
			}
			if err != nil {
				return nil, &pipeline.ParamError{Param: "font", Msg: err.Error()}
			}
			return w, nil
		},
	}
}

var watermarkPositions = []string{"top-left", "top-right", "bottom-left", "bottom-right", "center"}

// Bounds on what a watermark step holds in memory.
const (
	maxOverlaySize = 16 << 20
	maxFontSize    = 32 << 20
	maxTextLength  = 256
)

// errNoDrawtext says why text watermarks need native FFmpeg.
var errNoDrawtext = fmt.Errorf("%w: text watermarks need native FFmpeg (apt-get install ffmpeg); the WebAssembly build has no drawtext filter", ErrNoEngine)

// DefaultFonts are where the font for text watermarks is looked for when
// a pipeline names none: DejaVu Sans, as Debian and Ubuntu (package
// fonts-dejavu-core, which FFmpeg's packages pull in), Fedora and Arch
// install it.
var DefaultFonts = []string{
	"/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
	"/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
	"/usr/share/fonts/TTF/DejaVuSans.ttf",
	"/usr/share/fonts/dejavu/DejaVuSans.ttf",
}

// Watermark lays an image, or a line of text, over the video and encodes
// the result as an MP4 (H.264 yuv420p; AAC audio copied, or encoded when
// it is another codec; faststart). The picture keeps its size, and its
// rotation is baked in, so that "top-right" is where a viewer sees it.
//
// The engines see only the input's directory and the job's, so the
// overlay image, font and text are written into the job's directory for
// the run and removed after it; they were read when the pipeline was
// loaded, from the assets directory alone, so a pipeline cannot make the
// step read any other file.
type Watermark struct {
	Engines *Engines
	// Image is the overlay picture, ImageFormat its demuxer (png_pipe,
	// jpeg_pipe or webp_pipe). Empty for a text watermark.
	Image       []byte
	ImageFormat string
	// Text is drawn in Font (TrueType or OpenType data) at FontSize
	// pixels (0: a twentieth of the video's height) in Colour.
	Text     string
	Font     []byte
	FontSize int
	Colour   color.NRGBA
	// Position is top-left, top-right, bottom-left, bottom-right or
	// center; Margin the pixels between the watermark and the edges.
	Position string
	Margin   int
	Opacity  float64 // 0..1
	// Scale is the image's width as a fraction of the video's.
	Scale        float64
	CRF          int
	Preset       string
	AudioBitrate string
}

var _ pipeline.Step = (*Watermark)(nil)

// WatermarkName is the output's name.
const WatermarkName = "watermark.mp4"

// Names of the files the step puts beside its output for the run.
const (
	watermarkImage = ".watermark-image"
	watermarkFont  = ".watermark-font"
	watermarkText  = ".watermark-text"
)

func (*Watermark) Name() string { return "watermark" }

// Applies to moving video.
func (*Watermark) Applies(job *pipeline.Job) bool { return isMovingVideo(job.Media) }

func (w *Watermark) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	m := job.Media
	v := m.Video()
	if m.Width < 2 || m.Height < 2 {
		return pipeline.Result{}, pipeline.Invalid("the video has no usable dimensions (%dx%d)", m.Width, m.Height)
	}
	eng, err := w.Engines.Pick(job.Engine, true)
	if err != nil {
		return pipeline.Result{}, err
	}
	if w.Image == nil && eng.Name() == ModeWasm {
		return pipeline.Result{}, errNoDrawtext
	}

	files := map[string][]byte{}
	var overlay, extraInput string
	if w.Image != nil {
		files[watermarkImage] = w.Image
		width := max(1, int(math.Round(w.Scale*float64(m.Width))))
		x, y := w.place("W", "H", "w", "h")
		overlay = fmt.Sprintf("[1:v]format=rgba,scale=%d:-1:flags=lanczos,colorchannelmixer=aa=%s[wm];[0:%d][wm]overlay=x=%s:y=%s",
			width, formatFloat(w.Opacity), v.Index, x, y)
		extraInput = w.ImageFormat
	} else {
		files[watermarkFont], files[watermarkText] = w.Font, []byte(w.Text)
		size := w.FontSize
		if size <= 0 {
			size = max(8, m.Height/20)
		}
		c := w.Colour
		c.A = uint8(math.Round(float64(c.A) * w.Opacity))
		x, y := w.place("w", "h", "tw", "th")
		// The text comes from a file, drawn as it is (expansion=none),
		// so that nothing in it is read as filter syntax or as %{...}.
		overlay = fmt.Sprintf("[0:%d]drawtext=fontfile=%s:textfile=%s:expansion=none:fontsize=%d:fontcolor=0x%02x%02x%02x%02x:x=%s:y=%s",
			v.Index, FilterOut(watermarkFont), FilterOut(watermarkText), size, c.R, c.G, c.B, c.A, x, y)
	}
	for name, data := range files {
		path := filepath.Join(job.Dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return pipeline.Result{}, err
		}
		defer os.Remove(path)
	}

	audio := m.Audio()
	build := func(h H264) Command {
		args := slices.Concat(h.Input, inputArgs(m))
		if extraInput != "" {
			args = append(args, "-protocol_whitelist", "file", "-max_pixels", maxPixels, "-f", extraInput, "-i", Out(watermarkImage))
		}
		args = append(args, "-filter_complex", overlay+","+h.Format+"[v]", "-map", "[v]")
		if audio != nil {
			args = append(args, "-map", fmt.Sprintf("0:%d", audio.Index))
		}
		args = append(args, "-map_metadata", "-1", "-map_chapters", "-1")
		args = append(args, h.Codec...)
		if audio != nil {
			if audio.Codec == "aac" {
				args = append(args, "-c:a", "copy")
			} else {
				args = append(args, aacArgs(w.AudioBitrate, audio)...)
			}
		}
		return Command{Input: job.Input, Dir: job.Dir, Args: append(args, "-movflags", "+faststart", "-f", "mp4", Out(WatermarkName))}
	}
	if err := w.Engines.EncodeH264(ctx, job.Engine, H264Options{CRF: w.CRF, Preset: w.Preset}, build); err != nil {
		return pipeline.Result{}, err
	}
	if err := nonEmpty(job.Dir, WatermarkName); err != nil {
		return pipeline.Result{}, pipeline.Invalid("no video could be encoded")
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: WatermarkName, ContentType: "video/mp4"}}}, nil
}

// place returns the x and y expressions of the watermark's top left
// corner, given the names the filter uses for the frame's and the
// watermark's sizes.
func (w *Watermark) place(frameW, frameH, markW, markH string) (x, y string) {
	m := strconv.Itoa(w.Margin)
	left, top := m, m
	right := frameW + "-" + markW + "-" + m
	bottom := frameH + "-" + markH + "-" + m
	switch w.Position {
	case "top-left":
		return left, top
	case "top-right":
		return right, top
	case "bottom-left":
		return left, bottom
	case "center":
		return "(" + frameW + "-" + markW + ")/2", "(" + frameH + "-" + markH + ")/2"
	}
	return right, bottom
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// readAsset reads the file at name, a slash-separated path relative to
// dir, through an os.Root: neither "..", nor an absolute path, nor a
// symbolic link can lead it out of dir.
func readAsset(dir, name string, limit int64) ([]byte, error) {
	switch {
	case dir == "":
		return nil, errors.New("no assets directory is configured to read it from")
	case strings.HasPrefix(name, "/") || filepath.IsAbs(name):
		return nil, fmt.Errorf("%q is an absolute path; give a path relative to the assets directory", name)
	case slices.Contains(strings.Split(name, "/"), ".."):
		return nil, fmt.Errorf("%q contains \"..\"; give a path inside the assets directory", name)
	case !fs.ValidPath(name):
		return nil, fmt.Errorf("%q is not a clean relative path such as logos/logo.png", name)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("assets directory: %w", err)
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, limit>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, limit>>20)
	}
	return data, nil
}

// unwrapPath drops the *fs.PathError wrapper, whose path would repeat
// the name.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// pictureDemuxer names the demuxer of a PNG, JPEG or WebP file, or "".
func pictureDemuxer(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")):
		return "png_pipe"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "jpeg_pipe"
	case len(b) >= 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp_pipe"
	}
	return ""
}

// isFont reports whether b starts as a TrueType, OpenType or TrueType
// collection file does.
func isFont(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	switch string(b[:4]) {
	case "\x00\x01\x00\x00", "OTTO", "true", "ttcf":
		return true
	}
	return false
}

// defaultFont reads the first of DefaultFonts that exists.
func defaultFont() ([]byte, error) {
	for _, p := range DefaultFonts {
		b, err := os.ReadFile(p)
		if err == nil && isFont(b) {
			return b, nil
		}
	}
	return nil, errors.New("no font for text watermarks: install fonts-dejavu-core (apt-get install fonts-dejavu-core) or name a font file in the assets directory")
}

// checkText accepts one line of printable text.
func checkText(s string) error {
	switch {
	case strings.TrimSpace(s) == "":
		return errors.New("is blank")
	case len(s) > maxTextLength:
		return fmt.Errorf("is longer than %d bytes", maxTextLength)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("contains a control character (one line of text only)")
	}
	return nil
}
