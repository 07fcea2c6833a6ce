package media_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// runType probes input and runs a step of type st built with params, as
// the pipeline runner would.
func runType(t *testing.T, e *media.Engines, st pipeline.StepType, with map[string]any, input string) (*pipeline.Job, pipeline.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	res, err := newStep(t, e, "probe", nil).Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	s, err := st.Build(with)
	if err != nil {
		t.Fatalf("build %s: %v", st.Name, err)
	}
	if !s.Applies(job) {
		t.Fatalf("step %s does not apply to %s", st.Name, input)
	}
	res, err = s.Run(ctx, job)
	if err != nil {
		t.Fatalf("%s: %v", st.Name, err)
	}
	return job, res
}

// probed is what the tests read of a file through ffprobe.
type probed struct {
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Width     int    `json:"width"`
		Height    int    `json:"height"`
		PixFmt    string `json:"pix_fmt"`
		Tags      struct {
			Rotate string `json:"rotate"`
		} `json:"tags"`
		SideData []struct {
			Rotation float64 `json:"rotation"`
		} `json:"side_data_list"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t *testing.T, file string) probed {
	t.Helper()
	out := mediatest.Run(t, "ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", file)
	var p probed
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("ffprobe %s: %v", file, err)
	}
	return p
}

// layout describes the streams of a file: "h264 320x240 yuv420p,aac".
// It fails the test when a video stream still carries a rotation, which
// the steps bake into the picture.
func (p probed) layout(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, s := range p.Streams {
		if s.CodecType == "video" {
			rotated := s.Tags.Rotate != ""
			for _, sd := range s.SideData {
				rotated = rotated || sd.Rotation != 0
			}
			if rotated {
				t.Errorf("video stream still rotated: tag %q, side data %+v", s.Tags.Rotate, s.SideData)
			}
			parts = append(parts, fmt.Sprintf("%s %dx%d %s", s.CodecName, s.Width, s.Height, s.PixFmt))
			continue
		}
		parts = append(parts, s.CodecName)
	}
	return strings.Join(parts, ",")
}

// variant is one EXT-X-STREAM-INF of a master playlist.
type variant struct {
	bandwidth          int
	resolution, codecs string
	uri                string
}

var attrRE = regexp.MustCompile(`([A-Z0-9-]+)=("[^"]*"|[^,]*)`)

func parseMaster(t *testing.T, data string) []variant {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(data), "\n")
	if lines[0] != "#EXTM3U" {
		t.Fatalf("master playlist starts with %q", lines[0])
	}
	var vs []variant
	for i, l := range lines {
		if !strings.HasPrefix(l, "#EXT-X-STREAM-INF:") {
			if strings.HasPrefix(l, "#EXT-X-MEDIA:") {
				t.Errorf("master has a rendition group, want audio muxed into each variant: %s", l)
			}
			continue
		}
		var v variant
		for _, m := range attrRE.FindAllStringSubmatch(strings.TrimPrefix(l, "#EXT-X-STREAM-INF:"), -1) {
			val := strings.Trim(m[2], `"`)
			switch m[1] {
			case "BANDWIDTH":
				v.bandwidth, _ = strconv.Atoi(val)
			case "RESOLUTION":
				v.resolution = val
			case "CODECS":
				v.codecs = val
			}
		}
		if i+1 < len(lines) {
			v.uri = lines[i+1]
		}
		vs = append(vs, v)
	}
	return vs
}

// media playlist facts: the EXT-X-MAP URI, EXTINF durations and segment
// URIs, and the target duration.
type mediaPlaylist struct {
	mapURI    string
	durations []float64
	segments  []string
	target    int
	ended     bool
}

func parseMediaPlaylist(t *testing.T, data string) mediaPlaylist {
	t.Helper()
	var p mediaPlaylist
	for _, l := range strings.Split(data, "\n") {
		switch {
		case strings.HasPrefix(l, "#EXT-X-MAP:URI="):
			p.mapURI = strings.Trim(strings.TrimPrefix(l, "#EXT-X-MAP:URI="), `"`)
		case strings.HasPrefix(l, "#EXT-X-TARGETDURATION:"):
			p.target, _ = strconv.Atoi(strings.TrimPrefix(l, "#EXT-X-TARGETDURATION:"))
		case strings.HasPrefix(l, "#EXTINF:"):
			d, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(l, "#EXTINF:"), ","), 64)
			if err != nil {
				t.Fatalf("bad EXTINF %q", l)
			}
			p.durations = append(p.durations, d)
		case l == "#EXT-X-ENDLIST":
			p.ended = true
		case l != "" && !strings.HasPrefix(l, "#"):
			p.segments = append(p.segments, l)
		}
	}
	return p
}

func TestHLS(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		clip    mediatest.Clip
		with    map[string]any
		segType string
		segDur  float64
		rungs   []string // "name WxH", largest first
	}{
		{"ladder never upscaled, fmp4",
			mediatest.Clip{Width: 320, Height: 240, Duration: 2.5, Video: true, Audio: true},
			map[string]any{"heights": []any{360, 120, 180}, "segment_duration": "1s"},
			"fmp4", 1, []string{"180p 240x180", "120p 160x120"}},
		{"rotated portrait, mpegts",
			mediatest.Clip{Width: 320, Height: 180, Duration: 2, Video: true, Audio: true, Rotate: 90},
			map[string]any{"heights": []any{240, 120}, "segment_duration": 1, "segment_type": "mpegts"},
			"mpegts", 1, []string{"120p 120x214"}},
		{"smaller than every rung, silent",
			mediatest.Clip{Width: 160, Height: 120, Duration: 2, Video: true},
			nil,
			"fmp4", 4, []string{"120p 160x120"}},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "h"+string(rune('a'+i)), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runType(t, e, media.HLSType(e), tt.with, in)
				checkOutputs(t, job.Dir, res.Outputs)
				master, err := os.ReadFile(filepath.Join(job.Dir, media.HLSMaster))
				if err != nil {
					t.Fatal(err)
				}
				summary := []string{string(master)}
				variants := parseMaster(t, string(master))
				var got []string
				var firstDurations []float64
				for _, v := range variants {
					name := path.Dir(v.uri)
					got = append(got, name+" "+v.resolution)
					if v.uri != name+"/"+media.HLSIndex {
						t.Errorf("variant URI %q, want <rung>/%s", v.uri, media.HLSIndex)
					}
					if v.bandwidth <= 0 {
						t.Errorf("%s: BANDWIDTH %d", name, v.bandwidth)
					}
					wantCodecs := `^avc1\.64[0-9a-f]{4}$`
					if tt.clip.Audio {
						wantCodecs = `^avc1\.64[0-9a-f]{4},mp4a\.40\.2$`
					}
					if !regexp.MustCompile(wantCodecs).MatchString(v.codecs) {
						t.Errorf("%s: CODECS %q, want %s", name, v.codecs, wantCodecs)
					}
					index := filepath.Join(job.Dir, media.HLSDir, filepath.FromSlash(v.uri))
					// The rung as FFmpeg reads it: the declared size, H.264
					// 4:2:0 with AAC when the source has audio, the whole
					// duration.
					p := ffprobe(t, index)
					wantLayout := "h264 " + v.resolution + " yuv420p"
					if tt.clip.Audio {
						wantLayout += ",aac"
					}
					if l := p.layout(t); l != wantLayout {
						t.Errorf("%s streams = %q, want %q", name, l, wantLayout)
					}
					data, err := os.ReadFile(index)
					if err != nil {
						t.Fatal(err)
					}
					pl := parseMediaPlaylist(t, string(data))
					checkSegments(t, name, pl, tt.segType, tt.segDur, tt.clip.Duration)
					if firstDurations == nil {
						firstDurations = pl.durations
					} else if !slices.Equal(pl.durations, firstDurations) {
						t.Errorf("%s segments %v do not line up with the top rung's %v", name, pl.durations, firstDurations)
					}
					summary = append(summary, fmt.Sprintf("%s %s %v", name, p.layout(t), pl.durations))
				}
				if !slices.Equal(got, tt.rungs) {
					t.Errorf("rungs = %q, want %q", got, tt.rungs)
				}
				// Players can play it: FFmpeg's HLS demuxer decodes every
				// stream of every variant through the master playlist.
				mediatest.Run(t, "ffmpeg", "-v", "error", "-allowed_extensions", "ALL",
					"-i", filepath.Join(job.Dir, media.HLSMaster), "-map", "0", "-f", "null", "-")
				return strings.Join(summary, "\n")
			})
		})
	}
}

// checkSegments checks a rung's media playlist: VOD, segments of the
// target duration (the last one shorter) adding up to the clip, each file
// present, and the fMP4 initialization segment named init.mp4.
func checkSegments(t *testing.T, name string, pl mediaPlaylist, segType string, segDur, duration float64) {
	t.Helper()
	if !pl.ended {
		t.Errorf("%s: no EXT-X-ENDLIST", name)
	}
	if pl.target > int(math.Ceil(segDur)) {
		t.Errorf("%s: target duration %d, over the %.3gs asked for", name, pl.target, segDur)
	}
	for i, d := range pl.durations {
		if int(math.Round(d)) > pl.target {
			t.Errorf("%s: segment %d lasts %.3fs, over the target duration %d", name, i, d, pl.target)
		}
	}
	if want := int(math.Ceil(duration/segDur - 0.01)); len(pl.durations) != want || len(pl.segments) != want {
		t.Errorf("%s: %d segments (%d URIs), want %d", name, len(pl.durations), len(pl.segments), want)
	}
	var sum float64
	for i, d := range pl.durations {
		sum += d
		if d > segDur+0.05 {
			t.Errorf("%s: segment %d lasts %.3fs, over the %.3gs target", name, i, d, segDur)
		}
		if i < len(pl.durations)-1 && math.Abs(d-segDur) > 0.05 {
			t.Errorf("%s: segment %d lasts %.3fs, want %.3gs (keyframes on the segment grid)", name, i, d, segDur)
		}
	}
	if math.Abs(sum-duration) > 0.1 {
		t.Errorf("%s: segments add up to %.3fs, want %.3fs", name, sum, duration)
	}
	wantExt := map[string]string{"fmp4": ".m4s", "mpegts": ".ts"}[segType]
	for _, s := range pl.segments {
		if path.Ext(s) != wantExt {
			t.Errorf("%s: segment %q, want %s", name, s, wantExt)
		}
	}
	wantMap := ""
	if segType == "fmp4" {
		wantMap = media.HLSInit
	}
	if pl.mapURI != wantMap {
		t.Errorf("%s: EXT-X-MAP %q, want %q", name, pl.mapURI, wantMap)
	}
}

// checkOutputs checks that outputs list exactly the files under
// dir/hls, each once, with its media type, the master playlist first.
func checkOutputs(t *testing.T, dir string, outs []pipeline.Output) {
	t.Helper()
	var files []string
	err := fs.WalkDir(os.DirFS(dir), media.HLSDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]string{
		".m3u8": "application/vnd.apple.mpegurl", ".mp4": "video/mp4",
		".m4s": "video/iso.segment", ".ts": "video/mp2t",
	}
	var names []string
	for _, o := range outs {
		names = append(names, o.Name)
		if want := types[path.Ext(o.Name)]; o.ContentType != want {
			t.Errorf("output %s has type %q, want %q", o.Name, o.ContentType, want)
		}
	}
	if len(outs) == 0 || outs[0].Name != media.HLSMaster {
		t.Errorf("first output is not %s: %v", media.HLSMaster, names)
	}
	slices.Sort(names)
	if !slices.Equal(names, files) {
		t.Errorf("outputs\n%q\nfiles on disk\n%q", names, files)
	}
}

func TestHLSParams(t *testing.T) {
	e := &media.Engines{}
	tests := []struct {
		with  map[string]any
		param string
	}{
		{map[string]any{"heights": []any{720, 360}, "max_bitrates": []any{2000}}, "max_bitrates"},
		{map[string]any{"heights": []any{720, 32}}, "heights"},
		{map[string]any{"segment_type": "dash"}, "segment_type"},
		{map[string]any{"preset": "placebo"}, "preset"},
		{map[string]any{"crf": 51}, "crf"},
		{map[string]any{"segment_duration": "100ms"}, "segment_duration"},
		{map[string]any{"audio_bitrate": "loud"}, "audio_bitrate"},
	}
	for _, tt := range tests {
		_, err := media.HLSType(e).Build(tt.with)
		var pe *pipeline.ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param {
			t.Errorf("Build(%v) = %v, want a ParamError for %s", tt.with, err, tt.param)
		}
	}
	if _, err := media.HLSType(e).Build(map[string]any{"heights": []any{720, 360}, "max_bitrates": []any{3000, 900}}); err != nil {
		t.Errorf("valid parameters: %v", err)
	}
}

func TestMP4(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name   string
		clip   mediatest.Clip
		with   map[string]any
		output string
		layout string
	}{
		{"downscaled",
			mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true},
			map[string]any{"height": 180}, media.MP4Name, "h264 240x180 yuv420p,aac"},
		{"rotated, not upscaled",
			mediatest.Clip{Width: 320, Height: 180, Duration: 2, Video: true, Audio: true, Rotate: 90},
			nil, media.MP4Name, "h264 180x320 yuv420p,aac"},
		{"silent, named",
			mediatest.Clip{Width: 160, Height: 120, Duration: 2, Video: true},
			map[string]any{"name": "web/small.mp4", "max_bitrate": 300, "preset": "ultrafast"}, "web/small.mp4", "h264 160x120 yuv420p"},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "m"+string(rune('a'+i)), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runType(t, e, media.MP4Type(e), tt.with, in)
				if len(res.Outputs) != 1 || res.Outputs[0] != (pipeline.Output{Name: tt.output, ContentType: "video/mp4"}) {
					t.Fatalf("outputs = %+v, want one %s", res.Outputs, tt.output)
				}
				out := filepath.Join(job.Dir, filepath.FromSlash(tt.output))
				p := ffprobe(t, out)
				if l := p.layout(t); l != tt.layout {
					t.Errorf("streams = %q, want %q", l, tt.layout)
				}
				d, _ := strconv.ParseFloat(p.Format.Duration, 64)
				if math.Abs(d-tt.clip.Duration) > 0.1 {
					t.Errorf("duration = %.3f, want %.3f ± 0.1", d, tt.clip.Duration)
				}
				boxes := topBoxes(t, out)
				moov, mdat := slices.Index(boxes, "moov"), slices.Index(boxes, "mdat")
				if moov < 0 || mdat < 0 || moov > mdat {
					t.Errorf("boxes %v: want moov before mdat (faststart)", boxes)
				}
				return fmt.Sprintf("%s %.1fs %v", p.layout(t), d, boxes)
			})
		})
	}
}

// topBoxes lists the types of an MP4 file's top-level boxes in order.
func topBoxes(t *testing.T, file string) []string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var boxes []string
	for off := 0; off+8 <= len(data); {
		size := int(binary.BigEndian.Uint32(data[off:]))
		typ := string(data[off+4 : off+8])
		if size == 1 && off+16 <= len(data) {
			size = int(binary.BigEndian.Uint64(data[off+8:]))
		}
		if size < 8 {
			t.Fatalf("%s: box %q at %d has size %d", file, typ, off, size)
		}
		boxes = append(boxes, typ)
		off += size
	}
	return boxes
}

func TestMP4Params(t *testing.T) {
	e := &media.Engines{}
	tests := []struct {
		with  map[string]any
		param string
	}{
		{map[string]any{"name": "../video.mp4"}, "name"},
		{map[string]any{"name": "/tmp/video.mp4"}, "name"},
		{map[string]any{"name": "video.mov"}, "name"},
		{map[string]any{"name": "a:b.mp4"}, "name"},
		{map[string]any{"name": "web/../../x.mp4"}, "name"},
		{map[string]any{"max_bitrate": 50}, "max_bitrate"},
		{map[string]any{"height": 8000}, "height"},
		{map[string]any{"preset": "fastest"}, "preset"},
	}
	for _, tt := range tests {
		_, err := media.MP4Type(e).Build(tt.with)
		var pe *pipeline.ParamError
		if !errors.As(err, &pe) || pe.Param != tt.param {
			t.Errorf("Build(%v) = %v, want a ParamError for %s", tt.with, err, tt.param)
		}
	}
	if _, err := media.MP4Type(e).Build(map[string]any{"name": "web/720p.mp4", "height": 720}); err != nil {
		t.Errorf("valid parameters: %v", err)
	}
}
