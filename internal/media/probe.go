package media

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// ffprobeOutput is the subset of `ffprobe -print_format json -show_format
// -show_streams` that Sluice reads.
type ffprobeOutput struct {
	Streams []struct {
		Index         int    `json:"index"`
		CodecType     string `json:"codec_type"`
		CodecName     string `json:"codec_name"`
		Profile       string `json:"profile"`
		Width         int    `json:"width"`
		Height        int    `json:"height"`
		PixFmt        string `json:"pix_fmt"`
		AvgFrameRate  string `json:"avg_frame_rate"`
		RFrameRate    string `json:"r_frame_rate"`
		SampleRate    string `json:"sample_rate"`
		Channels      int    `json:"channels"`
		ChannelLayout string `json:"channel_layout"`
		Duration      string `json:"duration"`
		BitRate       string `json:"bit_rate"`
		Disposition   struct {
			AttachedPic int `json:"attached_pic"`
		} `json:"disposition"`
		Tags struct {
			Rotate string `json:"rotate"`
		} `json:"tags"`
		SideDataList []struct {
			SideDataType string  `json:"side_data_type"`
			Rotation     float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Format struct {
		FormatName string `json:"format_name"`
		Duration   string `json:"duration"`
		BitRate    string `json:"bit_rate"`
	} `json:"format"`
}

// probeArgs are the ffprobe arguments for an untrusted input, given as
// the path the engine sees it at.
func probeArgs(input string) []string {
	return []string{
		"-hide_banner", "-v", "error",
		"-protocol_whitelist", "file",
		"-format_whitelist", formatWhitelist,
		"-max_pixels", maxPixels,
		"-print_format", "json", "-show_format", "-show_streams",
		"file:" + input,
	}
}

// precheck refuses inputs whose first bytes already say they are not media,
// with a clearer reason than ffprobe would give.
// It returns the first bytes of the input.
func precheck(input string) ([]byte, error) {
	f, err := os.Open(input)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 64)
	n, err := io.ReadFull(f, head)
	head = head[:n]
	if n == 0 {
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		return nil, pipeline.Invalid("file is empty")
	}
	h := strings.TrimLeft(string(head), "\xef\xbb\xbf \t\r\n")
	switch {
	case strings.HasPrefix(h, "#EXTM3U"):
		return nil, pipeline.Invalid("HLS playlists are not accepted as media input")
	case strings.HasPrefix(h, "ffconcat"):
		return nil, pipeline.Invalid("ffconcat scripts are not accepted as media input")
	}
	return head, nil
}

// parseProbe turns ffprobe's JSON into a Media summary; stderr is what
// ffprobe said on the way, for problems it reports without failing.
func parseProbe(data []byte, stderr string) (*pipeline.Media, error) {
	if strings.Contains(stderr, "exceeds specified max pixel count") {
		return nil, pipeline.Invalid("picture is larger than the limit of %d pixels", MaxPixels)
	}
	var out ffprobeOutput
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("ffprobe: decode output: %w", err)
	}
	m := &pipeline.Media{
		Container: out.Format.FormatName,
		Format:    strings.Split(out.Format.FormatName, ",")[0],
		Duration:  parseFloat(out.Format.Duration),
		BitRate:   parseInt(out.Format.BitRate),
		Streams:   []pipeline.Stream{},
	}
	for _, s := range out.Streams {
		st := pipeline.Stream{
			Index:           s.Index,
			Type:            s.CodecType,
			Codec:           s.CodecName,
			Profile:         profileName(s.CodecName, s.Profile),
			Width:           s.Width,
			Height:          s.Height,
			PixelFormat:     s.PixFmt,
			SampleRate:      int(parseInt(s.SampleRate)),
			Channels:        s.Channels,
			ChannelLayout:   s.ChannelLayout,
			Duration:        parseFloat(s.Duration),
			BitRate:         parseInt(s.BitRate),
			AttachedPicture: s.Disposition.AttachedPic == 1,
		}
		if st.Type == "video" {
			st.FrameRate = parseRate(s.AvgFrameRate)
			if st.FrameRate == 0 {
				st.FrameRate = parseRate(s.RFrameRate)
			}
		}
		m.Streams = append(m.Streams, st)
		if v := m.Video(); v != nil && v.Index == s.Index {
			m.Rotation = rotation(s.Tags.Rotate, s.SideDataList)
			m.Width, m.Height = s.Width, s.Height
			if m.Rotation == 90 || m.Rotation == 270 {
				m.Width, m.Height = m.Height, m.Width
			}
		}
	}
	if m.Duration == 0 {
		for _, s := range m.Streams {
			m.Duration = math.Max(m.Duration, s.Duration)
		}
	}
	if m.Video() == nil && m.Audio() == nil {
		return nil, pipeline.Invalid("no audio or video stream found")
	}
	return m, nil
}

// rotation normalizes the display rotation, as ffprobe reports it, to
// 0, 90, 180 or 270.
func rotation(tag string, side []struct {
	SideDataType string  `json:"side_data_type"`
	Rotation     float64 `json:"rotation"`
}) int {
	deg := parseFloat(tag)
	for _, sd := range side {
		if sd.SideDataType == "Display Matrix" {
			deg = sd.Rotation
		}
	}
	r := int(math.Round(deg/90)) * 90 % 360
	if r < 0 {
		r += 360
	}
	return r
}

func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0
	}
	return f
}

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return max(n, 0)
}

// parseRate reads ffprobe's "num/den" frame rates.
func parseRate(s string) float64 {
	num, den, ok := strings.Cut(s, "/")
	if !ok {
		return parseFloat(s)
	}
	n, d := parseFloat(num), parseFloat(den)
	if d == 0 {
		return 0
	}
	return math.Round(n/d*1000) / 1000
}

var (
	notWhitelisted = regexp.MustCompile(`\[(\w+) @ [^\]]*\] Format not on whitelist`)
	avPrefix       = regexp.MustCompile(`^\[[^\]]* @ [^\]]*\]\s*`)
	// absPath is a file path in FFmpeg's messages: the host's scratch
	// layout is not for the client's eyes.
	absPath = regexp.MustCompile(`(^|[\s'"(])(?:file:)?/[^\s:'"]+`)
)

// probeFailure explains why ffprobe refused an input, in one line.
// head is the start of the input, for telling a truncated MP4 (which
// starts with an ftyp box) from a file that merely has an .mp4 name.
func probeFailure(stderr string, head []byte, err error) error {
	if m := notWhitelisted.FindStringSubmatch(stderr); m != nil {
		return &pipeline.MediaError{Reason: fmt.Sprintf("input format %q is not accepted", m[1]), Err: err}
	}
	switch {
	case strings.Contains(stderr, "moov atom not found") && len(head) >= 8 && string(head[4:8]) == "ftyp":
		return &pipeline.MediaError{Reason: "file is truncated or incomplete (no moov atom)", Err: err}
	case strings.Contains(stderr, "Invalid data found when processing input"),
		strings.Contains(stderr, "moov atom not found"):
		return &pipeline.MediaError{Reason: "not a recognized audio or video file", Err: err}
	case strings.Contains(stderr, "End of file"):
		return &pipeline.MediaError{Reason: "truncated or not media: the file ended before any stream was found", Err: err}
	}
	return &pipeline.MediaError{Reason: "cannot read media: " + lastLine(stderr), Err: err}
}

// lastLine returns the last non-empty line of FFmpeg's stderr without its
// "[component @ 0x...]" prefix, or a generic text when there is none.
func lastLine(stderr string) string {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(avPrefix.ReplaceAllString(lines[i], "")); l != "" {
			return absPath.ReplaceAllString(l, "${1}input")
		}
	}
	return "ffmpeg reported no reason"
}

// ffmpegFailure explains a failed ffmpeg run in one line, keeping the
// whole stderr tail for the logs.
func ffmpegFailure(stderr string, err error) error {
	return &pipeline.MediaError{Reason: "ffmpeg: " + lastLine(stderr), Err: fmt.Errorf("%w\n%s", err, stderr)}
}

// profileNames are the names of the numbers FFmpeg gives profiles (its
// FF_PROFILE_* values) for common codecs. The WebAssembly build's ffprobe
// prints the numbers where native ffprobe prints these names, so both
// engines describe a stream the same way.
var profileNames = map[string]map[string]string{
	"h264": {"66": "Baseline", "578": "Constrained Baseline", "77": "Main", "88": "Extended", "100": "High",
		"110": "High 10", "2158": "High 10 Intra", "122": "High 4:2:2", "2170": "High 4:2:2 Intra",
		"244": "High 4:4:4 Predictive", "2292": "High 4:4:4 Intra", "44": "CAVLC 4:4:4"},
	"hevc": {"1": "Main", "2": "Main 10", "3": "Main Still Picture", "4": "Rext"},
	"aac":  {"0": "Main", "1": "LC", "2": "SSR", "3": "LTP", "4": "HE-AAC", "28": "HE-AACv2", "22": "LD", "38": "ELD"},
	"vp9":  {"0": "Profile 0", "1": "Profile 1", "2": "Profile 2", "3": "Profile 3"},
	"av1":  {"0": "Main", "1": "High", "2": "Professional"},
}

// profileName is a profile's name where ffprobe gave its number.
func profileName(codec, profile string) string {
	if name, ok := profileNames[codec][profile]; ok {
		return name
	}
	return profile
}
