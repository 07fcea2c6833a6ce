package media

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // image.DecodeConfig reads the sheets' size
	"io"
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

// StoryboardType is the "storyboard" step type.
func StoryboardType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name:  "storyboard",
		Doc:   "seek-preview sprite sheets of frames every few seconds, with a WebVTT thumbnail track",
		Heavy: true,
		Params: []pipeline.Param{
			{Name: "interval", Kind: pipeline.Duration, Default: 5 * time.Second, Min: 0.1, Max: 3600, Doc: "time between tiles; lengthened so that no clip gets more than max_tiles"},
			{Name: "max_tiles", Kind: pipeline.Int, Default: 200, Min: 1, Max: 1000, Doc: "most tiles for one clip"},
			{Name: "width", Kind: pipeline.Int, Default: 160, Min: 16, Max: 640, Doc: "tile width in pixels; the height follows the display aspect ratio"},
			{Name: "columns", Kind: pipeline.Int, Default: 10, Min: 1, Max: 20, Doc: "tiles per row"},
			{Name: "rows", Kind: pipeline.Int, Default: 10, Min: 1, Max: 20, Doc: "most rows per sheet; more tiles go to further sheets"},
			{Name: "format", Kind: pipeline.String, Default: "jpeg", Enum: []string{"jpeg", "webp"}, Doc: "sheet image format"},
			{Name: "keyframes_only", Kind: pipeline.String, Default: "auto", Enum: []string{"auto", "always", "never"},
				Doc: "decode keyframes only (much faster; a tile shows the latest keyframe at or before its time): auto when keyframes are at least as frequent as tiles"},
			{Name: "json", Kind: pipeline.Bool, Default: true, Doc: "also write storyboard/storyboard.json describing the sheets"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			return &Storyboard{
				Engines:       e,
				Interval:      p.Duration("interval"),
				MaxTiles:      p.Int("max_tiles"),
				Width:         p.Int("width"),
				Columns:       p.Int("columns"),
				Rows:          p.Int("rows"),
				Format:        p.String("format"),
				KeyframesOnly: p.String("keyframes_only"),
				JSON:          p.Bool("json"),
			}, nil
		},
	}
}

// Storyboard writes the thumbnails a player shows while the viewer
// hovers over or drags along its seek bar: frames every Interval, scaled
// to Width, tiled into sprite sheets, and a WebVTT track whose cues map
// each time range to a tile as a media fragment
// (storyboard.jpg#xywh=x,y,w,h), the format video.js, Plyr and JW Player
// read.
//
// All sheets come from one FFmpeg run. Decoding only keyframes
// (-skip_frame nokey) makes that run many times faster on long-GOP
// video, at the price of accuracy: a tile then shows the latest keyframe
// at or before its time instead of the frame at that time. When the
// keyframes are at least as frequent as the tiles, every tile still shows
// a different frame, less than one interval before its time, so
// KeyframesOnly "auto" decodes only keyframes then, after scanning the
// first ten minutes' packet flags (a stream copy: demuxing without
// decoding). Encoders keep their keyframe spacing through a file, so ten
// minutes tell; a file whose keyframes thin out later gets repeated
// tiles there, never wrong cue times.
type Storyboard struct {
	Engines  *Engines
	Interval time.Duration // between tiles; 0: 5s
	MaxTiles int           // 0: 200
	Width    int           // tile width; 0: 160
	Columns  int           // 0: 10
	Rows     int           // most rows per sheet; 0: 10
	Format   string        // "jpeg" (default) or "webp"
	// KeyframesOnly is "auto" (default), "always" or "never".
	KeyframesOnly string
	// JSON adds StoryboardJSON.
	JSON bool
}

var _ pipeline.Step = (*Storyboard)(nil)

// Storyboard output names. The sheets sit beside the track, which refers
// to them by relative URL: StoryboardDir/storyboard.jpg when one sheet
// holds every tile, else storyboard-1.jpg, storyboard-2.jpg and so on
// (.webp for WebP).
const (
	StoryboardDir  = "storyboard"
	StoryboardVTT  = StoryboardDir + "/storyboard.vtt"
	StoryboardJSON = StoryboardDir + "/storyboard.json"
)

// StoryboardInfo is the content of StoryboardJSON.
type StoryboardInfo struct {
	Interval      float64           `json:"interval"` // seconds between tiles
	Count         int               `json:"count"`    // tiles in all
	TileWidth     int               `json:"tile_width"`
	TileHeight    int               `json:"tile_height"`
	Columns       int               `json:"columns"` // tiles per row
	Rows          int               `json:"rows"`    // rows of a full sheet
	Format        string            `json:"format"`
	KeyframesOnly bool              `json:"keyframes_only"`
	Sheets        []StoryboardSheet `json:"sheets"`
}

// StoryboardSheet is one sprite sheet. Tiles fill it row by row, from
// the left.
type StoryboardSheet struct {
	Name  string `json:"name"` // relative to StoryboardDir
	Rows  int    `json:"rows"`
	Count int    `json:"count"` // tiles on this sheet
}

func (*Storyboard) Name() string { return "storyboard" }

func (*Storyboard) Applies(job *pipeline.Job) bool {
	return job.Media != nil && job.Media.Video() != nil && job.Media.Duration > 0
}

// Largest sheet side each format allows.
const (
	maxJPEGSide = 65535
	maxWebPSide = 16383
)

// keyframeScan is how much of the video "auto" scans for keyframes.
const keyframeScan = 600 * time.Second

// plan lays out the tiles of a clip of the given duration: the interval
// in milliseconds (so that cue times add up exactly), the tile count,
// and the sheets.
func (s *Storyboard) plan(duration float64) (intervalMS int64, info StoryboardInfo) {
	intervalMS = max(cmp.Or(s.Interval, 5*time.Second).Milliseconds(), 1)
	durMS := int64(math.Round(duration * 1000))
	maxTiles := int64(cmp.Or(s.MaxTiles, 200))
	intervalMS = max(intervalMS, (durMS+maxTiles-1)/maxTiles)
	count := int(max((durMS+intervalMS-1)/intervalMS, 1))
	cols := min(cmp.Or(s.Columns, 10), count)
	rows := min(cmp.Or(s.Rows, 10), (count+cols-1)/cols)
	info = StoryboardInfo{
		Interval: float64(intervalMS) / 1000,
		Count:    count,
		Columns:  cols,
		Rows:     rows,
		Format:   s.format(),
	}
	perSheet := cols * rows
	ext := map[string]string{"jpeg": ".jpg", "webp": ".webp"}[info.Format]
	for first := 0; first < count; first += perSheet {
		n := min(perSheet, count-first)
		info.Sheets = append(info.Sheets, StoryboardSheet{Name: "storyboard-" + strconv.Itoa(len(info.Sheets)+1) + ext, Rows: (n + cols - 1) / cols, Count: n})
	}
	if len(info.Sheets) == 1 {
		info.Sheets[0].Name = "storyboard" + ext
	}
	return intervalMS, info
}

func (s *Storyboard) format() string { return cmp.Or(s.Format, "jpeg") }

func (s *Storyboard) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	e, err := s.Engines.Pick(job.Engine, true)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := os.MkdirAll(filepath.Join(job.Dir, StoryboardDir), 0o755); err != nil {
		return pipeline.Result{}, err
	}
	intervalMS, info := s.plan(job.Media.Duration)
	switch s.KeyframesOnly {
	case "always":
		info.KeyframesOnly = true
	case "", "auto":
		gap, err := keyframeGap(ctx, e, job)
		if err != nil {
			return pipeline.Result{}, err
		}
		// One frame of slack: keyframes every 2 s of 29.97 fps video are
		// 2.002 s apart.
		slack := 0.1
		if fr := job.Media.Video().FrameRate; fr > 0 {
			slack = 1 / fr
		}
		info.KeyframesOnly = gap <= info.Interval+slack
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: s.args(job.Media, intervalMS, info)}); err != nil {
		return pipeline.Result{}, noFrameDecoded(err, "for the storyboard")
	}
	if err := s.measureTiles(job.Dir, &info); err != nil {
		return pipeline.Result{}, err
	}

	var outs []pipeline.Output
	for _, sh := range info.Sheets {
		outs = append(outs, pipeline.Output{Name: StoryboardDir + "/" + sh.Name, ContentType: "image/" + info.Format})
	}
	vtt := storyboardVTT(info, int64(math.Round(job.Media.Duration*1000)), intervalMS)
	if err := os.WriteFile(filepath.Join(job.Dir, StoryboardVTT), vtt, 0o644); err != nil {
		return pipeline.Result{}, err
	}
	outs = append(outs, pipeline.Output{Name: StoryboardVTT, ContentType: "text/vtt"})
	if s.JSON {
		data, err := json.MarshalIndent(info, "", "  ")
		if err != nil {
			return pipeline.Result{}, err
		}
		if err := os.WriteFile(filepath.Join(job.Dir, StoryboardJSON), append(data, '\n'), 0o644); err != nil {
			return pipeline.Result{}, err
		}
		outs = append(outs, pipeline.Output{Name: StoryboardJSON, ContentType: "application/json"})
	}
	return pipeline.Result{Outputs: outs}, nil
}

// args is the one FFmpeg run that writes every sheet.
//
// The fps filter with round=up passes, for tick n, the latest frame at or
// before n*interval. Padding the end with copies of the last frame and
// trimming to the planned count makes the tile count exact whatever the
// timestamps at the end (with keyframes only, the last one can be far
// from the end). The full sheets come from one tile filter through the
// image2 muxer's numbering; a last, partly filled sheet gets its own,
// shorter tile filter.
func (s *Storyboard) args(m *pipeline.Media, intervalMS int64, info StoryboardInfo) []string {
	maxSide := maxJPEGSide
	if info.Format == "webp" {
		maxSide = maxWebPSide
	}
	// Never upscale; keep the display aspect ratio; even sizes; tiles no
	// taller than the format allows a sheet of Rows rows to be (only
	// absurdly tall video is narrowed by this).
	maxH := maxSide / info.Rows / 2 * 2
	scale := fmt.Sprintf("scale=w='trunc(min(min(%d\\,iw*sar)\\,%d*dar)/2)*2':h='trunc(ow/dar/2)*2',setsar=1",
		cmp.Or(s.Width, 160), maxH)
	graph := fmt.Sprintf("[0:v:0]tpad=stop_mode=clone:stop=-1,fps=fps=1000/%d:round=up:start_time=0,trim=end_frame=%d,%s",
		intervalMS, info.Count, scale)
	tile := func(rows int) string { return fmt.Sprintf("tile=layout=%dx%d", info.Columns, rows) }

	var codec []string
	if info.Format == "webp" {
		codec = []string{"-c:v", "libwebp", "-quality", "75"}
	} else {
		codec = []string{"-c:v", "mjpeg", "-q:v", "4"}
	}
	var args []string
	if info.KeyframesOnly {
		// Not -discard nokey, which would skip even reading the other
		// packets: FFmpeg 5.1's MP4 demuxer then shifts the keyframes'
		// timestamps by a frame or more.
		args = append(args, "-skip_frame", "nokey")
	}
	// Frames whose size changes midway are scaled to the first size
	// instead of restarting the filters (and the sheet).
	args = append(args, "-reinit_filter", "0")
	args = append(args, inputArgs(m)...)

	sheets := info.Sheets
	last := sheets[len(sheets)-1]
	full := len(sheets) - 1
	if last.Count == info.Columns*info.Rows && full > 0 {
		full++
	}
	perSheet := info.Columns * info.Rows
	switch {
	case full == 0: // one sheet
		graph += "," + tile(last.Rows) + "[last]"
	case full == len(sheets): // all full
		graph += "," + tile(info.Rows) + "[full]"
	default:
		graph += fmt.Sprintf(",split[a][b];[a]trim=end_frame=%d,%s[full];[b]trim=start_frame=%d,%s[last]",
			full*perSheet, tile(info.Rows), full*perSheet, tile(last.Rows))
	}
	args = append(args, "-filter_complex", graph)
	if full > 0 {
		ext := path.Ext(last.Name)
		args = append(args, "-map", "[full]")
		args = append(args, codec...)
		args = append(args, "-f", "image2", Out(StoryboardDir+"/storyboard-%d"+ext))
	}
	if full < len(sheets) {
		args = append(args, "-map", "[last]")
		args = append(args, codec...)
		args = append(args, "-frames:v", "1", "-f", "image2", "-update", "1", Out(StoryboardDir+"/"+last.Name))
	}
	return args
}

// noFrameDecoded explains a failed run: with no frame decoded, FFmpeg
// never configures the filter graph and says only "Error marking
// filters as finished".
func noFrameDecoded(err error, what string) error {
	var me *pipeline.MediaError
	if errors.As(err, &me) {
		return &pipeline.MediaError{Reason: fmt.Sprintf("no video frame could be decoded %s (%s)", what, me.Reason), Err: err}
	}
	return err
}

// measureTiles reads the tile size from the first sheet: FFmpeg chose it
// from the display aspect ratio, which the probe does not report.
func (s *Storyboard) measureTiles(dir string, info *StoryboardInfo) error {
	for _, sh := range info.Sheets {
		if err := nonEmpty(dir, StoryboardDir+"/"+sh.Name); err != nil {
			return pipeline.Invalid("no video frame could be decoded for the storyboard (no %s)", sh.Name)
		}
	}
	first := info.Sheets[0]
	w, h, err := sheetSize(filepath.Join(dir, StoryboardDir, first.Name))
	if err != nil {
		return fmt.Errorf("storyboard: %s: %w", first.Name, err)
	}
	if w%info.Columns != 0 || h%first.Rows != 0 {
		return fmt.Errorf("storyboard: %s is %dx%d, not a grid of %dx%d tiles", first.Name, w, h, info.Columns, first.Rows)
	}
	info.TileWidth, info.TileHeight = w/info.Columns, h/first.Rows
	return nil
}

// storyboardVTT writes the thumbnail track: one cue per tile, covering
// [i*interval, (i+1)*interval), the last ending at the clip's end.
func storyboardVTT(info StoryboardInfo, durMS, intervalMS int64) []byte {
	var b bytes.Buffer
	b.WriteString("WEBVTT\n")
	i := 0
	for _, sh := range info.Sheets {
		for k := range sh.Count {
			start := int64(i) * intervalMS
			end := start + intervalMS
			if i == info.Count-1 {
				end = max(durMS, start+1)
			}
			x, y := k%info.Columns*info.TileWidth, k/info.Columns*info.TileHeight
			fmt.Fprintf(&b, "\n%s --> %s\n%s#xywh=%d,%d,%d,%d\n", storyboardTime(start), storyboardTime(end), sh.Name, x, y, info.TileWidth, info.TileHeight)
			i++
		}
	}
	return b.Bytes()
}

// storyboardTime formats milliseconds as WebVTT's hh:mm:ss.ttt.
func storyboardTime(ms int64) string {
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}

// keyframeGap returns the longest stretch, in seconds, without a
// keyframe in the first keyframeScan of the video. It copies the video
// packets into FFmpeg's framecrc format, a line per packet with its
// timestamps and (when other than "key") its flags: demuxing only, no
// decoding, so it costs a fraction of the storyboard run.
func keyframeGap(ctx context.Context, e Engine, job *pipeline.Job) (float64, error) {
	const name = StoryboardDir + "/packets.framecrc"
	args := inputArgs(job.Media)
	args = append(args, "-map", "0:v:0", "-c", "copy", "-t", strconv.Itoa(int(keyframeScan.Seconds())), "-f", "framecrc", Out(name))
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return 0, err
	}
	file := filepath.Join(job.Dir, name)
	defer os.Remove(file)
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	keys, err := parseKeyframes(f)
	if err != nil {
		return 0, fmt.Errorf("storyboard: keyframe scan: %w", err)
	}
	if len(keys) == 0 {
		return math.Inf(1), nil
	}
	slices.Sort(keys)
	end := min(job.Media.Duration, keyframeScan.Seconds())
	gap := max(keys[0], end-keys[len(keys)-1])
	for i := 1; i < len(keys); i++ {
		gap = max(gap, keys[i]-keys[i-1])
	}
	return gap, nil
}

// parseKeyframes reads the presentation times, in seconds, of the key
// packets of stream 0 in framecrc output:
//
//	#tb 0: 1/12800
//	0,          0,          0,      512,     7532, 0xea75bff9
//	0,        512,        512,      512,     2618, 0x507ded2a, F=0x0
func parseKeyframes(r io.Reader) ([]float64, error) {
	var (
		keys   []float64
		tb     float64
		sc     = bufio.NewScanner(r)
		noPTS  = strconv.FormatInt(math.MinInt64, 10)
		errBad = errors.New("unexpected framecrc line")
	)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "#tb 0:"); ok {
			num, den, ok := strings.Cut(strings.TrimSpace(rest), "/")
			n, err1 := strconv.ParseFloat(num, 64)
			d, err2 := strconv.ParseFloat(den, 64)
			if !ok || err1 != nil || err2 != nil || d == 0 {
				return nil, fmt.Errorf("%w: %q", errBad, line)
			}
			tb = n / d
			continue
		}
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ",")
		if len(f) < 6 {
			return nil, fmt.Errorf("%w: %q", errBad, line)
		}
		key := true
		if len(f) > 6 {
			flags, ok := strings.CutPrefix(strings.TrimSpace(f[6]), "F=0x")
			v, err := strconv.ParseUint(flags, 16, 32)
			if !ok || err != nil {
				return nil, fmt.Errorf("%w: %q", errBad, line)
			}
			key = v&1 != 0
		}
		pts := strings.TrimSpace(f[2])
		if strings.TrimSpace(f[0]) != "0" || !key || pts == noPTS {
			continue
		}
		p, err := strconv.ParseInt(pts, 10, 64)
		if err != nil || tb == 0 {
			return nil, fmt.Errorf("%w: %q", errBad, line)
		}
		keys = append(keys, float64(p)*tb)
	}
	return keys, sc.Err()
}

// sheetSize reads the pixel size of a JPEG or (still) WebP file.
func sheetSize(file string) (int, int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if strings.HasSuffix(file, ".webp") {
		return webpCanvasSize(f)
	}
	cfg, _, err := image.DecodeConfig(f)
	return cfg.Width, cfg.Height, err
}

// webpCanvasSize reads the canvas size from a WebP file's first chunk: VP8X
// (extended), VP8 (lossy) or VP8L (lossless).
func webpCanvasSize(r io.Reader) (int, int, error) {
	var head [30]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return 0, 0, fmt.Errorf("not a WebP file: %w", err)
	}
	if string(head[0:4]) != "RIFF" || string(head[8:12]) != "WEBP" {
		return 0, 0, errors.New("not a WebP file")
	}
	le24 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
	data := head[20:]
	switch string(head[12:16]) {
	case "VP8X":
		return le24(data[4:7]) + 1, le24(data[7:10]) + 1, nil
	case "VP8 ":
		// A 3-byte frame tag, the start code 9d 01 2a, then 14-bit sizes.
		if data[3] != 0x9d || data[4] != 0x01 || data[5] != 0x2a {
			return 0, 0, errors.New("bad VP8 start code")
		}
		return int(binary.LittleEndian.Uint16(data[6:8]) & 0x3fff), int(binary.LittleEndian.Uint16(data[8:10]) & 0x3fff), nil
	case "VP8L":
		if data[0] != 0x2f {
			return 0, 0, errors.New("bad VP8L signature")
		}
		bits := binary.LittleEndian.Uint32(data[1:5])
		return int(bits&0x3fff) + 1, int(bits>>14&0x3fff) + 1, nil
	}
	return 0, 0, fmt.Errorf("unknown WebP chunk %q", head[12:16])
}
