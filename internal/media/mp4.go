package media

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// MP4Type is the "mp4" step type.
func MP4Type(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name:  "mp4",
		Doc:   "a web MP4 (H.264 yuv420p, AAC, faststart) at a size, never upscaled",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "height", Kind: pipeline.Int, Default: 720, Min: 64, Max: 4320,
				Doc: "size as the short side of the picture (720: 1280x720, or 720x1280 for portrait video); a smaller source keeps its size"},
			{Name: "crf", Kind: pipeline.Int, Default: 23, Min: 15, Max: 35, Doc: "x264 constant rate factor (lower is better quality)"},
			{Name: "preset", Kind: pipeline.String, Default: "veryfast", Enum: x264Presets, Doc: "x264 speed preset"},
			{Name: "max_bitrate", Kind: pipeline.Int, Default: 0, Min: 0, Max: 100000,
				Doc: "video bitrate cap in kbit/s (0: 2800 at 720p, scaled with picture area)"},
			{Name: "audio_bitrate", Kind: pipeline.String, Default: "128k", Doc: "AAC bitrate"},
			{Name: "name", Kind: pipeline.String, Default: MP4Name,
				Doc: "output name, a relative path ending in .mp4; give two mp4 steps in one pipeline their own ids, which prefix their outputs, or their own names"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			m := &MP4{
				Engines:      e,
				Height:       p.Int("height"),
				CRF:          p.Int("crf"),
				Preset:       p.String("preset"),
				MaxBitrate:   p.Int("max_bitrate"),
				AudioBitrate: p.String("audio_bitrate"),
				Output:       p.String("name"),
			}
			if !validBitrate(m.AudioBitrate) {
				return nil, &pipeline.ParamError{Param: "audio_bitrate", Msg: fmt.Sprintf("%q is not a bitrate such as 128k", m.AudioBitrate)}
			}
			if m.MaxBitrate != 0 && m.MaxBitrate < 100 {
				return nil, &pipeline.ParamError{Param: "max_bitrate", Msg: fmt.Sprintf("%d kbit/s is too low for video (at least 100, or 0 for the default)", m.MaxBitrate)}
			}
			if !validOutputName(m.Output, ".mp4") {
				return nil, &pipeline.ParamError{Param: "name", Msg: fmt.Sprintf("%q is not a relative path ending in .mp4, such as web/720p.mp4", m.Output)}
			}
			return m, nil
		},
	}
}

// MP4Name is the mp4 step's output name unless the pipeline gives one.
const MP4Name = "video.mp4"

// MP4 encodes a web rendition: H.264 (yuv420p, which every browser
// decodes) and AAC in an MP4 whose index precedes its media data
// (faststart), so that playback starts before the download ends. It keeps
// the display aspect ratio, bakes rotation into the picture and never
// upscales.
type MP4 struct {
	Engines *Engines
	// Height is the size as the short side of the picture (default 720).
	Height       int
	CRF          int    // default 23
	Preset       string // x264 preset, default veryfast
	MaxBitrate   int    // kbit/s; 0 derives a cap from the picture size
	AudioBitrate string // default 128k
	Output       string // output name, default MP4Name
}

var _ pipeline.Step = (*MP4)(nil)

func (*MP4) Name() string { return "mp4" }

// Applies to moving video: a still image is not a video.
func (*MP4) Applies(job *pipeline.Job) bool { return isMovingVideo(job.Media) }

func (s *MP4) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	m := job.Media
	v := m.Video()
	short := min(m.Width, m.Height)
	if short < 2 {
		return pipeline.Result{}, pipeline.Invalid("the video has no usable dimensions (%dx%d)", m.Width, m.Height)
	}
	height := s.Height
	if height <= 0 {
		height = 720
	}
	size := evenFloor(min(height, short))
	kbps := s.MaxBitrate
	if kbps <= 0 {
		kbps = maxRate(size, v.FrameRate)
	}
	name := s.Output
	if name == "" {
		name = MP4Name
	}

	if err := os.MkdirAll(filepath.Join(job.Dir, filepath.Dir(filepath.FromSlash(name))), 0o755); err != nil {
		return pipeline.Result{}, err
	}
	audio := m.Audio()
	build := func(enc H264) Command {
		args := slices.Concat(enc.Input, inputArgs(m))
		args = append(args, "-map", fmt.Sprintf("0:%d", v.Index))
		if audio != nil {
			args = append(args, "-map", fmt.Sprintf("0:%d", audio.Index))
		}
		args = append(args, "-map_metadata", "-1", "-map_chapters", "-1",
			"-vf", enc.VF(scaleTo(size, m.Height > m.Width)))
		args = append(args, enc.Codec...)
		if audio != nil {
			args = append(args, aacArgs(s.AudioBitrate, audio)...)
		}
		args = append(args, "-movflags", "+faststart", "-f", "mp4", Out(name))
		return Command{Input: job.Input, Dir: job.Dir, Args: args}
	}
	o := h264Options(s.Preset, s.CRF)
	o.MaxRate, o.BufSize = strconv.Itoa(kbps)+"k", strconv.Itoa(2*kbps)+"k"
	if err := s.Engines.EncodeH264(ctx, job.Engine, o, build); err != nil {
		return pipeline.Result{}, err
	}
	if err := nonEmpty(job.Dir, name); err != nil {
		return pipeline.Result{}, pipeline.Invalid("no video could be encoded")
	}
	return pipeline.Result{Outputs: []pipeline.Output{{Name: name, ContentType: "video/mp4"}}}, nil
}

// validOutputName accepts a clean, relative, slash-separated path with
// the given extension, inside the step's directory, of plain characters.
func validOutputName(name, ext string) bool {
	if !strings.HasSuffix(name, ext) || len(name) <= len(ext) || len(name) > 200 ||
		path.Clean(name) != name || strings.HasPrefix(name, "/") || strings.HasPrefix(path.Base(name), ".") {
		return false
	}
	// Plain characters only: FFmpeg reads some (':', '%') as syntax.
	return strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") == "" &&
		!strings.Contains(name, "..")
}
