package media_test

import (
	"encoding/binary"
	"fmt"
	"image/gif"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
)

func TestPreview(t *testing.T) {
	dir := t.TempDir()
	long := mediatest.Generate(t, dir, "long", mediatest.Clip{Width: 320, Height: 180, Duration: 6, Video: true, Audio: true})
	short := mediatest.Generate(t, dir, "short", mediatest.Clip{Width: 320, Height: 180, Duration: 1.5, Video: true})
	tests := []struct {
		name  string
		in    string
		with  map[string]any
		w, h  int
		fps   int
		secs  float64 // length of the loop
		wantN int     // frames
		start float64 // where the loop starts, checked for GIF
	}{
		{"webp", long, map[string]any{"width": 160}, 160, 90, 10, 3, 30, 0.6},
		{"gif", long, map[string]any{"format": "gif", "width": 160}, 160, 90, 10, 3, 30, 0.6},
		{"webp shorter than the loop", short, nil, 320, 180, 10, 1.5, 15, 0},
		{"gif shorter than the loop", short, map[string]any{"format": "gif", "width": 640}, 320, 180, 10, 1.5, 15, 0},
		{"webp start past the end", long, map[string]any{"start": "100s", "duration": "2s", "fps": 5, "width": 96}, 96, 54, 5, 2, 10, 4},
		{"gif start", long, map[string]any{"format": "gif", "start": "2s", "duration": "1s", "width": 96}, 96, 54, 10, 1, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runVisualStep(t, e, tt.in, media.PreviewType(e), tt.with)
				if len(res.Outputs) != 1 {
					t.Fatalf("outputs = %v, want one", res.Outputs)
				}
				out := filepath.Join(job.Dir, res.Outputs[0].Name)
				var a anim
				if strings.HasSuffix(out, ".gif") {
					a = readGIF(t, out)
					if got := firstFrameAt(t, out, tt.in, tt.w, tt.h, []float64{0, 0.6, 1, 2, 4}); got != tt.start {
						t.Errorf("the first frame is the clip's at %vs, want %vs", got, tt.start)
					}
				} else {
					a = readAnimatedWebP(t, out)
				}
				if a.w != tt.w || a.h != tt.h {
					t.Errorf("%dx%d, want %dx%d", a.w, a.h, tt.w, tt.h)
				}
				if a.frames < tt.wantN-1 || a.frames > tt.wantN+1 {
					t.Errorf("%d frames, want about %d (%vs at %d fps)", a.frames, tt.wantN, tt.secs, tt.fps)
				}
				// GIF delays are in hundredths of a second.
				if got := a.duration.Seconds(); math.Abs(got-tt.secs) > 1.5/float64(tt.fps) {
					t.Errorf("plays %.3fs, want %vs", got, tt.secs)
				}
				if a.loops != 0 {
					t.Errorf("loop count %d, want 0 (forever)", a.loops)
				}
				return fmt.Sprintf("%s %dx%d, %d frames, %v, loops %d", res.Outputs[0].Name, a.w, a.h, a.frames, a.duration, a.loops)
			})
		})
	}
}

// anim describes an animated image.
type anim struct {
	w, h     int
	frames   int
	duration time.Duration
	loops    int // 0: forever
}

// readGIF reads a GIF's frames with ffprobe, and its loop count and
// frame delays with Go's decoder.
func readGIF(t *testing.T, file string) anim {
	t.Helper()
	out := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", file)))
	var a anim
	if _, err := fmt.Sscanf(out, "gif,%d,%d,%d", &a.w, &a.h, &a.frames); err != nil {
		t.Fatalf("ffprobe %s: %q: %v", file, out, err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := gif.DecodeAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Image) != a.frames {
		t.Errorf("Go decodes %d frames, ffprobe %d", len(g.Image), a.frames)
	}
	var cs int
	for _, d := range g.Delay {
		cs += d
	}
	a.duration, a.loops = time.Duration(cs)*10*time.Millisecond, g.LoopCount
	return a
}

// readAnimatedWebP reads an animated WebP's RIFF chunks: FFmpeg 5.1
// cannot decode animated WebP, so ffprobe is no help. VP8X gives the
// canvas and the animation flag, ANIM the loop count, and each ANMF is a
// frame with its duration.
func readAnimatedWebP(t *testing.T, file string) anim {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		t.Fatalf("%s is not a WebP file", file)
	}
	if size := int(binary.LittleEndian.Uint32(data[4:8])); size != len(data)-8 {
		t.Errorf("RIFF size %d, file holds %d", size, len(data)-8)
	}
	le24 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 | int(b[2])<<16 }
	var (
		a                  anim
		ms                 int
		animated, haveANIM bool
	)
	a.loops = -1
	for p := 12; p < len(data); {
		if p+8 > len(data) {
			t.Fatalf("truncated chunk header at %d", p)
		}
		id, n := string(data[p:p+4]), int(binary.LittleEndian.Uint32(data[p+4:p+8]))
		body := data[p+8:]
		if n > len(body) {
			t.Fatalf("chunk %s of %d bytes overruns the file", id, n)
		}
		body = body[:n]
		switch id {
		case "VP8X":
			animated = body[0]&0x02 != 0
			a.w, a.h = le24(body[4:7])+1, le24(body[7:10])+1
		case "ANIM":
			haveANIM = true
			a.loops = int(binary.LittleEndian.Uint16(body[4:6]))
		case "ANMF":
			a.frames++
			x, y := 2*le24(body[0:3]), 2*le24(body[3:6])
			w, h := le24(body[6:9])+1, le24(body[9:12])+1
			if x+w > a.w || y+h > a.h {
				t.Errorf("frame %d (%dx%d at %d,%d) exceeds the %dx%d canvas", a.frames, w, h, x, y, a.w, a.h)
			}
			ms += le24(body[12:15])
		}
		p += 8 + n + n%2
	}
	if !animated || !haveANIM {
		t.Fatalf("%s is not an animated WebP (VP8X animation flag %v, ANIM chunk %v)", file, animated, haveANIM)
	}
	a.duration = time.Duration(ms) * time.Millisecond
	return a
}

// firstFrameAt returns which of the times in clip (those before its end)
// the animation's first frame looks most like: the highest PSNR against
// the frame there.
func firstFrameAt(t *testing.T, anim, clip string, w, h int, times []float64) float64 {
	t.Helper()
	best, bestPSNR := -1.0, -1.0
	end := mediatest.Duration(t, clip)
	for _, at := range times {
		if at >= end {
			continue
		}
		out := string(mediatest.Run(t, "ffmpeg", "-hide_banner", "-nostdin", "-i", anim,
			"-ss", strconv.FormatFloat(at, 'f', 3, 64), "-i", clip,
			"-lavfi", fmt.Sprintf("[1:v]scale=%d:%d,format=rgb24[r];[0:v]format=rgb24[a];[a][r]psnr", w, h),
			"-frames:v", "1", "-f", "null", "-"))
		m := psnrAverage.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no PSNR in ffmpeg's output:\n%s", out)
		}
		psnr := math.Inf(1)
		if m[1] != "inf" {
			psnr, _ = strconv.ParseFloat(m[1], 64)
		}
		if psnr > bestPSNR {
			best, bestPSNR = at, psnr
		}
	}
	return best
}

var psnrAverage = regexp.MustCompile(`PSNR .*average:(inf|[0-9.]+)`)
