package media_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
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

// runVisualStep probes input and runs a step of the given type, as the
// pipeline runner would.
func runVisualStep(t *testing.T, e *media.Engines, input string, typ pipeline.StepType, with map[string]any) (*pipeline.Job, pipeline.Result) {
	t.Helper()
	job, res, err := run(t, e, input, "probe")
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	s, err := typ.Build(with)
	if err != nil {
		t.Fatalf("step %s: %v", typ.Name, err)
	}
	if !s.Applies(job) {
		t.Fatalf("step %s does not apply to %s", typ.Name, input)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err = s.Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range res.Outputs {
		if fi, err := os.Stat(filepath.Join(job.Dir, o.Name)); err != nil || fi.Size() == 0 {
			t.Errorf("output %s: missing or empty (%v)", o.Name, err)
		}
	}
	return job, res
}

func TestStoryboard(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		clip mediatest.Clip
		with map[string]any
		// want
		interval   float64
		tw, th     int
		cols, rows int
		sheets     []int // tiles per sheet
	}{
		{"one sheet", mediatest.Clip{Width: 320, Height: 180, Duration: 7.3, Video: true}, map[string]any{"interval": "2s"},
			2, 160, 90, 4, 1, []int{4}},
		{"partly filled last sheet", mediatest.Clip{Width: 320, Height: 180, Duration: 7.3, Video: true, Audio: true},
			map[string]any{"interval": 0.5, "columns": 3, "rows": 2, "width": 96, "keyframes_only": "never"},
			0.5, 96, 54, 3, 2, []int{6, 6, 3}},
		{"full sheets", mediatest.Clip{Width: 320, Height: 180, Duration: 8, Video: true}, map[string]any{"interval": "1s", "columns": 2, "rows": 2},
			1, 160, 90, 2, 2, []int{4, 4}},
		{"max tiles", mediatest.Clip{Width: 320, Height: 180, Duration: 7.3, Video: true}, map[string]any{"interval": "0.5s", "max_tiles": 5},
			1.464, 160, 90, 5, 1, []int{5}},
		{"shorter than the interval", mediatest.Clip{Width: 320, Height: 180, Duration: 1.5, Video: true}, nil,
			5, 160, 90, 1, 1, []int{1}},
		{"webp rotated", mediatest.Clip{Width: 320, Height: 180, Duration: 3, Video: true, Rotate: 90}, map[string]any{"interval": "2s", "format": "webp"},
			2, 160, 284, 2, 1, []int{2}},
	}
	for i, tt := range tests {
		in := mediatest.Generate(t, dir, "sb"+strconv.Itoa(i), tt.clip)
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runVisualStep(t, e, in, media.StoryboardType(e), tt.with)
				info := readStoryboardInfo(t, job.Dir)
				if info.Interval != tt.interval || info.TileWidth != tt.tw || info.TileHeight != tt.th || info.Columns != tt.cols || info.Rows != tt.rows {
					t.Errorf("interval %v, tiles %dx%d, grid %dx%d; want %v, %dx%d, %dx%d",
						info.Interval, info.TileWidth, info.TileHeight, info.Columns, info.Rows, tt.interval, tt.tw, tt.th, tt.cols, tt.rows)
				}
				var counts []int
				for _, sh := range info.Sheets {
					counts = append(counts, sh.Count)
				}
				if !slices.Equal(counts, tt.sheets) {
					t.Errorf("tiles per sheet = %v, want %v", counts, tt.sheets)
				}
				if want := int(math.Ceil(job.Media.Duration / info.Interval)); info.Count != want {
					t.Errorf("count = %d, want ceil(%.3fs / %vs) = %d", info.Count, job.Media.Duration, info.Interval, want)
				}
				wantOuts := []string{media.StoryboardVTT, media.StoryboardJSON}
				for _, sh := range info.Sheets {
					wantOuts = append(wantOuts, media.StoryboardDir+"/"+sh.Name)
				}
				var gotOuts []string
				for _, o := range res.Outputs {
					gotOuts = append(gotOuts, o.Name)
				}
				slices.Sort(gotOuts)
				slices.Sort(wantOuts)
				if !slices.Equal(gotOuts, wantOuts) {
					t.Errorf("outputs = %v, want %v", gotOuts, wantOuts)
				}
				checkStoryboard(t, job.Dir, info, job.Media.Duration)
				return fmt.Sprintf("%d tiles of %dx%d every %vs, sheets %v, keyframes only %v", info.Count, info.TileWidth, info.TileHeight, info.Interval, counts, info.KeyframesOnly)
			})
		})
	}
}

func readStoryboardInfo(t *testing.T, dir string) media.StoryboardInfo {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, media.StoryboardJSON))
	if err != nil {
		t.Fatal(err)
	}
	var info media.StoryboardInfo
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatalf("%s: %v", media.StoryboardJSON, err)
	}
	return info
}

// checkStoryboard checks the sheets and the WebVTT track against each
// other and the clip: one cue per tile, contiguous, covering the
// duration, each pointing at a distinct tile inside its sheet.
func checkStoryboard(t *testing.T, dir string, info media.StoryboardInfo, duration float64) {
	t.Helper()
	sheets := map[string][2]int{}
	total := 0
	for _, sh := range info.Sheets {
		w, h := mediatest.Dimensions(t, filepath.Join(dir, media.StoryboardDir, sh.Name))
		if w != info.Columns*info.TileWidth || h != sh.Rows*info.TileHeight {
			t.Errorf("%s is %dx%d, want %d columns x %d rows of %dx%d", sh.Name, w, h, info.Columns, sh.Rows, info.TileWidth, info.TileHeight)
		}
		if want := (sh.Count + info.Columns - 1) / info.Columns; sh.Rows != want {
			t.Errorf("%s: %d rows for %d tiles in %d columns", sh.Name, sh.Rows, sh.Count, info.Columns)
		}
		sheets[sh.Name] = [2]int{w, h}
		total += sh.Count
	}
	if total != info.Count {
		t.Errorf("sheets hold %d tiles, want %d", total, info.Count)
	}
	data, err := os.ReadFile(filepath.Join(dir, media.StoryboardVTT))
	if err != nil {
		t.Fatal(err)
	}
	cues := parseStoryboardVTT(t, data)
	if len(cues) != info.Count {
		t.Errorf("%d cues, want one per tile: %d", len(cues), info.Count)
	}
	seen := map[string]bool{}
	var end time.Duration
	for i, c := range cues {
		if c.start != end {
			t.Errorf("cue %d starts at %s, want %s (where the last one ended)", i, c.start, end)
		}
		if c.end <= c.start {
			t.Errorf("cue %d ends at %s, before it starts", i, c.end)
		}
		end = c.end
		if i < len(cues)-1 && c.end-c.start != time.Duration(info.Interval*float64(time.Second)) {
			t.Errorf("cue %d lasts %s, want %vs", i, c.end-c.start, info.Interval)
		}
		size, ok := sheets[c.sheet]
		if !ok {
			t.Errorf("cue %d refers to %q, not a sheet", i, c.sheet)
			continue
		}
		if c.w != info.TileWidth || c.h != info.TileHeight || c.x%c.w != 0 || c.y%c.h != 0 || c.x < 0 || c.y < 0 || c.x+c.w > size[0] || c.y+c.h > size[1] {
			t.Errorf("cue %d: xywh=%d,%d,%d,%d is not a %dx%d tile of the %dx%d sheet", i, c.x, c.y, c.w, c.h, info.TileWidth, info.TileHeight, size[0], size[1])
		}
		tile := fmt.Sprintf("%s#%d,%d", c.sheet, c.x, c.y)
		if seen[tile] {
			t.Errorf("cue %d shows %s again", i, tile)
		}
		seen[tile] = true
	}
	if want := time.Duration(math.Round(duration*1000)) * time.Millisecond; end != want {
		t.Errorf("cues end at %s, want the clip's end %s", end, want)
	}
}

type storyboardCue struct {
	start, end time.Duration
	sheet      string
	x, y, w, h int
}

var (
	storyboardCueTiming = regexp.MustCompile(`^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$`)
	storyboardCueTile   = regexp.MustCompile(`^([\w.-]+)#xywh=(\d+),(\d+),(\d+),(\d+)$`)
)

// parseStoryboardVTT reads a WebVTT thumbnail track, failing the test on anything
// else.
func parseStoryboardVTT(t *testing.T, data []byte) []storyboardCue {
	t.Helper()
	blocks := strings.Split(strings.TrimRight(string(data), "\n"), "\n\n")
	if blocks[0] != "WEBVTT" {
		t.Fatalf("track starts with %q, want the WEBVTT header alone", blocks[0])
	}
	var cues []storyboardCue
	for _, b := range blocks[1:] {
		lines := strings.Split(b, "\n")
		if len(lines) != 2 {
			t.Fatalf("cue %q: want a timing line and a tile", b)
		}
		tm, tile := storyboardCueTiming.FindStringSubmatch(lines[0]), storyboardCueTile.FindStringSubmatch(lines[1])
		if tm == nil || tile == nil {
			t.Fatalf("bad cue %q", b)
		}
		n := func(s string) int { v, _ := strconv.Atoi(s); return v }
		at := func(h, m, s, ms string) time.Duration {
			return time.Duration(n(h))*time.Hour + time.Duration(n(m))*time.Minute + time.Duration(n(s))*time.Second + time.Duration(n(ms))*time.Millisecond
		}
		cues = append(cues, storyboardCue{
			start: at(tm[1], tm[2], tm[3], tm[4]), end: at(tm[5], tm[6], tm[7], tm[8]),
			sheet: tile[1], x: n(tile[2]), y: n(tile[3]), w: n(tile[4]), h: n(tile[5]),
		})
	}
	return cues
}

// TestStoryboardKeyframes: with keyframes every second and a tile every
// two, decoding keyframes only gives the very same sheet as decoding
// everything, and auto chooses it; with keyframes every four seconds it
// does not, and auto decodes everything.
func TestStoryboardKeyframes(t *testing.T) {
	dir := t.TempDir()
	every1s := mediatest.Generate(t, dir, "gop1s", mediatest.Clip{Width: 320, Height: 180, Duration: 8, Video: true})
	every4s := filepath.Join(dir, "gop4s.mp4")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=8",
		"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "100", "-keyint_min", "100", "-sc_threshold", "0", every4s)
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		var summary []string
		for _, in := range []string{every1s, every4s} {
			sheets := map[string][]byte{}
			for _, mode := range []string{"auto", "always", "never"} {
				job, _ := runVisualStep(t, e, in, media.StoryboardType(e), map[string]any{"interval": "2s", "keyframes_only": mode})
				info := readStoryboardInfo(t, job.Dir)
				checkStoryboard(t, job.Dir, info, job.Media.Duration)
				if mode == "auto" {
					summary = append(summary, fmt.Sprintf("%s: auto keyframes only %v", filepath.Base(in), info.KeyframesOnly))
					continue
				}
				if info.KeyframesOnly != (mode == "always") {
					t.Errorf("%s %s: keyframes only = %v", filepath.Base(in), mode, info.KeyframesOnly)
				}
				data, err := os.ReadFile(filepath.Join(job.Dir, media.StoryboardDir, info.Sheets[0].Name))
				if err != nil {
					t.Fatal(err)
				}
				sheets[mode] = data
			}
			same := bytes.Equal(sheets["always"], sheets["never"])
			summary = append(summary, fmt.Sprintf("same sheet %v", same))
		}
		want := "gop1s.mp4: auto keyframes only true, same sheet true, gop4s.mp4: auto keyframes only false, same sheet false"
		if got := strings.Join(summary, ", "); got != want {
			t.Errorf("got  %s\nwant %s", got, want)
		}
		return strings.Join(summary, ", ")
	})
}

// TestStoryboardPreviewUndecodable: an MP4 that probes but whose frames
// do not decode fails both steps with a one-line MediaError, in either
// engine and every decoding mode.
func TestStoryboardPreviewUndecodable(t *testing.T) {
	var in string
	for _, bad := range mediatest.BadInputs(t, t.TempDir()) {
		if bad.Name == "undecodable-mp4" {
			in = bad.Path
		}
	}
	for name, e := range engines(t) {
		for _, c := range []struct {
			name string
			typ  pipeline.StepType
			with map[string]any
		}{
			{"storyboard keyframes", media.StoryboardType(e), map[string]any{"keyframes_only": "auto"}},
			{"storyboard webp", media.StoryboardType(e), map[string]any{"keyframes_only": "never", "format": "webp"}},
			{"preview webp", media.PreviewType(e), nil},
			{"preview gif", media.PreviewType(e), map[string]any{"format": "gif"}},
		} {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				job, res, err := run(t, e, in, "probe")
				if err != nil {
					t.Fatal(err)
				}
				job.Media = res.Media
				s, err := c.typ.Build(c.with)
				if err != nil {
					t.Fatal(err)
				}
				_, err = s.Run(context.Background(), job)
				if !pipeline.IsMediaError(err) {
					t.Fatalf("err = %v (%T), want a MediaError", err, err)
				}
				if msg := err.Error(); !strings.Contains(msg, "could be decoded") || strings.Contains(msg, "\n") {
					t.Errorf("err = %q, want one line saying no frame could be decoded", msg)
				}
				t.Log(err)
			})
		}
	}
}
