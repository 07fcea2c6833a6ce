package media

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// HLSType is the "hls" step type.
func HLSType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name:  "hls",
		Doc:   "an adaptive HLS ladder (H.264/AAC, fMP4 or TS segments) from one decode, never upscaled",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "heights", Kind: pipeline.Ints, Default: slices.Clone(DefaultHeights), Min: 64, Max: 4320, MaxItems: 8,
				Doc: "rung sizes as the short side of the picture (720: 1280x720, or 720x1280 for portrait video); rungs larger than the source are dropped"},
			{Name: "max_bitrates", Kind: pipeline.Ints, Min: 100, Max: 100000, MaxItems: 8,
				Doc: "each rung's bitrate cap in kbit/s, one per entry of heights (default: 2800 at 720p, scaled with picture area)"},
			{Name: "segment_duration", Kind: pipeline.Duration, Default: 4 * time.Second, Min: 1, Max: 60,
				Doc: "target segment length; keyframes are placed on its multiples in every rung"},
			{Name: "segment_type", Kind: pipeline.String, Default: SegmentFMP4, Enum: []string{SegmentFMP4, SegmentMPEGTS},
				Doc: "fragmented MP4 (init.mp4 plus .m4s) or MPEG-TS (.ts) segments"},
			{Name: "preset", Kind: pipeline.String, Default: "veryfast", Enum: x264Presets, Doc: "x264 speed preset"},
			{Name: "crf", Kind: pipeline.Int, Default: 23, Min: 15, Max: 35, Doc: "x264 constant rate factor (lower is better quality), capped by each rung's maximum bitrate"},
			{Name: "audio_bitrate", Kind: pipeline.String, Default: "128k", Doc: "AAC bitrate of the audio in each rung"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			h := &HLS{
				Engines:         e,
				Heights:         p.Ints("heights"),
				MaxBitrates:     p.Ints("max_bitrates"),
				SegmentDuration: p.Duration("segment_duration"),
				SegmentType:     p.String("segment_type"),
				Preset:          p.String("preset"),
				CRF:             p.Int("crf"),
				AudioBitrate:    p.String("audio_bitrate"),
			}
			if h.MaxBitrates != nil && len(h.MaxBitrates) != len(h.Heights) {
				return nil, &pipeline.ParamError{Param: "max_bitrates",
					Msg: fmt.Sprintf("has %d entries for %d heights; give one per height", len(h.MaxBitrates), len(h.Heights))}
			}
			if !validBitrate(h.AudioBitrate) {
				return nil, &pipeline.ParamError{Param: "audio_bitrate", Msg: fmt.Sprintf("%q is not a bitrate such as 128k", h.AudioBitrate)}
			}
			return h, nil
		},
	}
}

// DefaultHeights is the hls step's ladder unless the pipeline gives one.
var DefaultHeights = []int{1080, 720, 480, 360}

// Segment types of the hls step.
const (
	SegmentFMP4   = "fmp4"
	SegmentMPEGTS = "mpegts"
)

// HLS output names: the master playlist, and under HLSDir/<rung>/ (rung
// names such as "720p") HLSIndex, HLSInit (fMP4 only) and the segments.
const (
	HLSDir    = "hls"
	HLSMaster = "hls/master.m3u8"
	HLSIndex  = "index.m3u8"
	HLSInit   = "init.mp4"
)

// x264Presets are the presets the video steps accept (placebo is left
// out: it costs many times veryslow for no visible gain).
var x264Presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}

// HLS encodes an adaptive bitrate ladder for HTTP Live Streaming in one
// FFmpeg run: the source is decoded once and a split filter feeds one
// scaler and H.264 encoder per rung, so an N-rung ladder costs one decode,
// not N. Rungs never upscale. Keyframes fall on every multiple of the
// segment duration in every rung, so segments line up across rungs and a
// player can switch at any segment boundary.
//
// Audio is AAC, muxed into each rung rather than offered as a separate
// rendition group: every variant then plays on its own in hls.js, Safari,
// smart TVs and FFmpeg alike, and FFmpeg 5.1, given an audio group, also
// lists the audio playlist as a variant of its own, which players may
// pick as a video level. The cost is one cheap AAC encode and ~128 kbit/s
// of storage per rung.
type HLS struct {
	Engines *Engines
	// Heights are the rung sizes, as the short side of the picture
	// (default DefaultHeights).
	Heights []int
	// MaxBitrates caps each rung in kbit/s, one per entry of Heights;
	// nil derives caps from the picture size.
	MaxBitrates     []int
	SegmentDuration time.Duration // default 4s
	SegmentType     string        // SegmentFMP4 (default) or SegmentMPEGTS
	Preset          string        // x264 preset, default veryfast
	CRF             int           // default 23
	AudioBitrate    string        // default 128k
}

var _ pipeline.Step = (*HLS)(nil)

func (*HLS) Name() string { return "hls" }

// Applies to moving video: a still image has nothing to stream.
func (*HLS) Applies(job *pipeline.Job) bool { return isMovingVideo(job.Media) }

// rung is one variant of the ladder.
type rung struct {
	name    string // directory and variant name, "720p"
	size    int    // short side in pixels, even
	maxKbps int
}

// ladder picks the rungs for a source whose short side is short: the
// configured sizes not larger than the source, largest first, or one rung
// at the source's size when the source is smaller than all of them.
func (h *HLS) ladder(short int, fps float64) []rung {
	heights := h.Heights
	if len(heights) == 0 {
		heights = DefaultHeights
	}
	caps := map[int]int{}
	for i, size := range heights {
		if i < len(h.MaxBitrates) {
			caps[evenFloor(size)] = h.MaxBitrates[i]
		}
	}
	var sizes []int
	for _, size := range heights {
		if size = evenFloor(size); size <= short && !slices.Contains(sizes, size) {
			sizes = append(sizes, size)
		}
	}
	if len(sizes) == 0 {
		sizes = []int{evenFloor(short)}
	}
	slices.Sort(sizes)
	slices.Reverse(sizes)
	rungs := make([]rung, len(sizes))
	for i, size := range sizes {
		kbps, ok := caps[size]
		if !ok {
			kbps = maxRate(size, fps)
		}
		rungs[i] = rung{name: strconv.Itoa(size) + "p", size: size, maxKbps: kbps}
	}
	return rungs
}

func (h *HLS) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	m := job.Media
	v := m.Video()
	short := min(m.Width, m.Height)
	if short < 2 {
		return pipeline.Result{}, pipeline.Invalid("the video has no usable dimensions (%dx%d)", m.Width, m.Height)
	}
	segType := h.SegmentType
	if segType == "" {
		segType = SegmentFMP4
	}
	segDur := h.SegmentDuration
	if segDur <= 0 {
		segDur = 4 * time.Second
	}
	rungs := h.ladder(short, v.FrameRate)
	audio := m.Audio()

	for _, r := range rungs {
		if err := os.MkdirAll(filepath.Join(job.Dir, HLSDir, r.name), 0o755); err != nil {
			return pipeline.Result{}, err
		}
	}
	// The encoder (libx264, or a hardware one when configured, with
	// libx264 as the fallback) decides the end of each rung's filter
	// chain and the codec options, so the command is built per encoder.
	build := func(enc H264) Command {
		// One graph takes each input stream, decoded once, to every rung.
		// Rungs run largest first, and each is scaled from the one above
		// it rather than from the source (a cascade: every scaler after
		// the first reads a smaller picture):
		// [0:v]scale=r0[c0];[c0]split[p0][n0];[p0]format[v0];[n0]scale=r1[c1];..
		var graph strings.Builder
		portrait := m.Height > m.Width
		fmt.Fprintf(&graph, "[0:%d]%s[c0]", v.Index, scaleTo(rungs[0].size, portrait))
		for i := range rungs {
			last := i == len(rungs)-1
			if last {
				fmt.Fprintf(&graph, ";[c%d]%s[v%d]", i, enc.VF(""), i)
				break
			}
			fmt.Fprintf(&graph, ";[c%d]split=2[p%d][n%d];[p%d]%s[v%d]", i, i, i, i, enc.VF(""), i)
			fmt.Fprintf(&graph, ";[n%d]%s[c%d]", i, scaleTo(rungs[i+1].size, portrait), i+1)
		}
		if audio != nil {
			fmt.Fprintf(&graph, ";[0:%d]asplit=%d", audio.Index, len(rungs))
			for i := range rungs {
				fmt.Fprintf(&graph, "[a%d]", i)
			}
		}
		args := slices.Concat(enc.Input, inputArgs(m), []string{"-filter_complex", graph.String()})
		for i := range rungs {
			args = append(args, "-map", fmt.Sprintf("[v%d]", i))
		}
		if audio != nil {
			for i := range rungs {
				args = append(args, "-map", fmt.Sprintf("[a%d]", i))
			}
		}
		args = append(args, "-map_metadata", "-1", "-map_chapters", "-1")
		args = append(args, enc.Codec...)
		args = append(args, keyframeArgs(v.FrameRate, segDur)...)
		// A one-second buffer keeps each segment's bitrate near its cap,
		// which FFmpeg declares (plus 10%) as the variant's peak BANDWIDTH.
		for i, r := range rungs {
			args = append(args,
				fmt.Sprintf("-maxrate:v:%d", i), fmt.Sprintf("%dk", r.maxKbps),
				fmt.Sprintf("-bufsize:v:%d", i), fmt.Sprintf("%dk", r.maxKbps))
		}
		if audio != nil {
			args = append(args, aacArgs(h.AudioBitrate, audio)...)
		}
		variants := make([]string, len(rungs))
		for i, r := range rungs {
			variants[i] = fmt.Sprintf("v:%d", i)
			if audio != nil {
				variants[i] += fmt.Sprintf(",a:%d", i)
			}
			variants[i] += ",name:" + r.name
		}
		ext := ".m4s"
		if segType == SegmentMPEGTS {
			ext = ".ts"
		}
		args = append(args,
			"-f", "hls",
			"-hls_time", strconv.FormatFloat(segDur.Seconds(), 'f', -1, 64),
			"-hls_playlist_type", "vod",
			"-hls_flags", "independent_segments",
			"-hls_segment_type", segType,
		)
		if segType == SegmentFMP4 {
			args = append(args, "-hls_fmp4_init_filename", HLSInit)
		}
		args = append(args,
			"-hls_segment_filename", Out(HLSDir+"/%v/seg_%04d"+ext),
			"-master_pl_name", path.Base(HLSMaster),
			"-var_stream_map", strings.Join(variants, " "),
			Out(HLSDir+"/%v/"+HLSIndex),
		)
		return Command{Input: job.Input, Dir: job.Dir, Args: args}
	}
	if err := h.Engines.EncodeH264(ctx, job.Engine, h264Options(h.Preset, h.CRF), build); err != nil {
		return pipeline.Result{}, err
	}

	hlsDir := filepath.Join(job.Dir, HLSDir)
	for _, r := range rungs {
		if err := tidyRung(filepath.Join(hlsDir, r.name)); err != nil {
			return pipeline.Result{}, err
		}
	}
	if err := ensureCodecs(hlsDir, audio != nil); err != nil {
		return pipeline.Result{}, err
	}
	outs, err := hlsOutputs(job.Dir)
	if err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Outputs: outs}, nil
}

// tidyRung checks that a rung's playlist lists segments and gives its
// fMP4 initialization segment the plain name init.mp4 (FFmpeg numbers it
// init_<n>.mp4 when there are several variants).
func tidyRung(dir string) error {
	index := filepath.Join(dir, HLSIndex)
	data, err := os.ReadFile(index)
	if err != nil {
		return pipeline.Invalid("no video could be encoded (%s)", filepath.Base(dir))
	}
	mapURI, segs := playlistURIs(data)
	if len(segs) == 0 {
		return pipeline.Invalid("no video could be encoded (%s has no segments)", filepath.Base(dir))
	}
	if mapURI == "" || mapURI == HLSInit {
		return nil
	}
	if path.Base(mapURI) != mapURI {
		return fmt.Errorf("media: unexpected initialization segment %q in %s", mapURI, index)
	}
	if err := os.Rename(filepath.Join(dir, mapURI), filepath.Join(dir, HLSInit)); err != nil {
		return err
	}
	data = bytes.Replace(data, []byte(`#EXT-X-MAP:URI="`+mapURI+`"`), []byte(`#EXT-X-MAP:URI="`+HLSInit+`"`), 1)
	return os.WriteFile(index, data, 0o644)
}

// playlistURIs returns the EXT-X-MAP URI of a media playlist ("" when
// none) and its segment URIs in order.
func playlistURIs(data []byte) (mapURI string, segments []string) {
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			mapURI = attr(line, "URI")
		case line != "" && !strings.HasPrefix(line, "#"):
			segments = append(segments, line)
		}
	}
	return mapURI, segments
}

// attr returns the value of an attribute of a playlist tag line, unquoted.
func attr(line, name string) string {
	_, list, _ := strings.Cut(line, ":")
	for list != "" {
		var k, v string
		k, list, _ = strings.Cut(list, "=")
		if strings.HasPrefix(list, `"`) {
			v, list, _ = strings.Cut(list[1:], `"`)
			list = strings.TrimPrefix(list, ",")
		} else {
			v, list, _ = strings.Cut(list, ",")
		}
		if k == name {
			return v
		}
	}
	return ""
}

// ensureCodecs adds a CODECS attribute to each variant of the master
// playlist in dir that lacks one. FFmpeg writes it when it can read the
// encoder's parameter sets, which it can for x264; players need it to
// choose among variants, so a missing one is filled in from the H.264
// profile and level in the variant's first media file.
func ensureCodecs(dir string, audio bool) error {
	master := filepath.Join(dir, path.Base(HLSMaster))
	data, err := os.ReadFile(master)
	if err != nil {
		return pipeline.Invalid("no master playlist was written")
	}
	lines := strings.Split(string(data), "\n")
	changed := false
	for i, line := range lines {
		if !strings.HasPrefix(line, "#EXT-X-STREAM-INF:") || attr(line, "CODECS") != "" {
			continue
		}
		var uri string
		for _, next := range lines[i+1:] {
			if next = strings.TrimSpace(next); next != "" && !strings.HasPrefix(next, "#") {
				uri = next
				break
			}
		}
		if uri == "" || path.IsAbs(uri) || strings.Contains(uri, "..") {
			return fmt.Errorf("media: master playlist variant %q", uri)
		}
		codecs, err := variantCodecs(filepath.Join(dir, filepath.FromSlash(uri)))
		if err != nil {
			return err
		}
		if audio {
			codecs += ",mp4a.40.2" // AAC-LC, FFmpeg's aac encoder
		}
		lines[i] = strings.TrimRight(line, "\r") + `,CODECS="` + codecs + `"`
		changed = true
	}
	if !changed {
		return nil
	}
	return os.WriteFile(master, []byte(strings.Join(lines, "\n")), 0o644)
}

// variantCodecs returns the RFC 6381 codec string ("avc1.64001f") of the
// H.264 stream of the media playlist at index, read from its
// initialization segment or, for TS, its first segment.
func variantCodecs(index string) (string, error) {
	data, err := os.ReadFile(index)
	if err != nil {
		return "", err
	}
	mapURI, segs := playlistURIs(data)
	first := mapURI
	if first == "" && len(segs) > 0 {
		first = segs[0]
	}
	if first == "" || path.Base(first) != first {
		return "", fmt.Errorf("media: no media file to read codecs from in %s", index)
	}
	f, err := os.Open(filepath.Join(filepath.Dir(index), first))
	if err != nil {
		return "", err
	}
	defer f.Close()
	// The parameter sets come first: in the moov of an initialization
	// segment, before the first picture of a TS segment.
	head, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "", err
	}
	if c, ok := avcCodec(head); ok {
		return c, nil
	}
	return "", fmt.Errorf("media: no H.264 parameter set in %s", f.Name())
}

// avcCodec finds the profile, constraint flags and level of an H.264
// stream in b: in an avcC box (MP4), or in the first sequence parameter
// set NAL unit (Annex B, as in MPEG-TS).
func avcCodec(b []byte) (string, bool) {
	format := func(p []byte) string { return fmt.Sprintf("avc1.%02x%02x%02x", p[0], p[1], p[2]) }
	if i := bytes.Index(b, []byte("avcC")); i >= 0 && i+8 <= len(b) {
		// configurationVersion, then profile, compatibility, level.
		return format(b[i+5 : i+8]), true
	}
	for i := 0; i+6 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && b[i+3]&0x1f == 7 {
			return format(b[i+4 : i+7]), true
		}
	}
	return "", false
}

// hlsOutputs lists every file under dir/hls, the master playlist first.
func hlsOutputs(dir string) ([]pipeline.Output, error) {
	outs := []pipeline.Output{{Name: HLSMaster, ContentType: hlsContentType(HLSMaster)}}
	root := os.DirFS(dir)
	err := fs.WalkDir(root, HLSDir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || name == HLSMaster {
			return err
		}
		outs = append(outs, pipeline.Output{Name: name, ContentType: hlsContentType(name)})
		return nil
	})
	return outs, err
}

// hlsContentType is the media type of an HLS file by its extension.
func hlsContentType(name string) string {
	switch path.Ext(name) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".mp4":
		return "video/mp4"
	case ".m4s":
		return "video/iso.segment"
	case ".ts":
		return "video/mp2t"
	}
	return "application/octet-stream"
}

// isMovingVideo reports whether m has video that moves: single-image
// inputs (the *_pipe demuxers) are stills.
func isMovingVideo(m *pipeline.Media) bool {
	return m != nil && m.Video() != nil && !strings.HasSuffix(m.Format, "_pipe")
}

// evenFloor rounds n down to an even number, as 4:2:0 chroma needs.
func evenFloor(n int) int { return n &^ 1 }

// scaleTo is the filter that scales a picture so that its short side is
// size, with the display aspect ratio kept (dar accounts for non-square
// pixels and for rotation, which FFmpeg applies before the graph) and
// even dimensions, to square-pixel 4:2:0.
func scaleTo(size int, portrait bool) string {
	wh := fmt.Sprintf("w='2*round(%d*dar/2)':h=%d", size, size)
	if portrait {
		wh = fmt.Sprintf("w=%d:h='2*round(%d/dar/2)'", size, size)
	}
	return "scale=" + wh + ",setsar=1,format=yuv420p"
}

// maxRate is the default bitrate cap, in kbit/s, of a picture whose short
// side is size: 2800 at 720p, growing with the picture's area to the
// power 0.75 (larger pictures compress better), and half again above 30
// frames per second.
func maxRate(size int, fps float64) int {
	kbps := 2800 * math.Pow(float64(size)/720, 1.5)
	if fps > 31 {
		kbps *= 1.5
	}
	return max(int(math.Round(kbps/10))*10, 100)
}

// keyframeArgs force a keyframe on each multiple of gop, and none at
// scene cuts, so that segments start on one and line up across rungs.
// They apply to every H.264 encoder, hardware ones included.
func keyframeArgs(fps float64, gop time.Duration) []string {
	secs := strconv.FormatFloat(gop.Seconds(), 'f', -1, 64)
	args := []string{"-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*" + secs + ")"}
	if fps > 0 && fps <= 240 {
		args = append(args, "-g", strconv.Itoa(max(1, int(math.Round(fps*gop.Seconds())))))
	}
	return args
}

// h264Options are a step's encoder settings, libx264 defaults filled in.
func h264Options(preset string, crf int) H264Options {
	if preset == "" {
		preset = "veryfast"
	}
	if crf <= 0 {
		crf = 23
	}
	return H264Options{Preset: preset, CRF: crf}
}

// aacArgs encode audio as AAC-LC at bitrate, downmixed to stereo from
// more channels (what every browser decodes).
func aacArgs(bitrate string, a *pipeline.Stream) []string {
	if bitrate == "" {
		bitrate = "128k"
	}
	args := []string{"-c:a", "aac", "-b:a", bitrate}
	if a.Channels > 2 {
		args = append(args, "-ac", "2")
	}
	return args
}
