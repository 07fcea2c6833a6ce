package media_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// runImage probes input and runs an image step built with the given
// parameters.
func runImage(t *testing.T, e *media.Engines, input string, with map[string]any) (*pipeline.Job, pipeline.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	res, err := (&media.Probe{Engines: e}).Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	job.Media = res.Media
	s, err := media.ImageType(e).Build(with)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Applies(job) {
		t.Fatalf("the image step does not apply to %s (%s)", input, job.Media.Format)
	}
	res, err = s.Run(ctx, job)
	if err != nil {
		t.Fatal(err)
	}
	return job, res
}

// quadrants writes a 64x48 picture whose quarters are red (top left),
// green (top right), blue (bottom left) and white (bottom right).
func quadrants(t *testing.T, dir, name string, codec ...string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
		"color=c=red:s=64x48,drawbox=x=32:y=0:w=32:h=24:c=lime:t=fill," +
			"drawbox=x=0:y=24:w=32:h=24:c=blue:t=fill,drawbox=x=32:y=24:w=32:h=24:c=white:t=fill",
		"-frames:v", "1", "-update", "1"}
	mediatest.Run(t, "ffmpeg", append(append(args, codec...), out)...)
	return out
}

// exifTIFF is EXIF data (a TIFF header and one directory) holding only
// the orientation.
func exifTIFF(orientation int, bo binary.ByteOrder) []byte {
	var b bytes.Buffer
	if bo == binary.LittleEndian {
		b.WriteString("II")
	} else {
		b.WriteString("MM")
	}
	_ = binary.Write(&b, bo, uint16(42))
	_ = binary.Write(&b, bo, uint32(8)) // first directory
	_ = binary.Write(&b, bo, uint16(1)) // one entry
	_ = binary.Write(&b, bo, []uint16{0x0112, 3})
	_ = binary.Write(&b, bo, uint32(1))
	_ = binary.Write(&b, bo, []uint16{uint16(orientation), 0})
	_ = binary.Write(&b, bo, uint32(0)) // no next directory
	return b.Bytes()
}

// withOrientation writes a copy of the picture at src whose EXIF data
// gives the orientation, in each format's own place for it.
func withOrientation(t *testing.T, src string, orientation int, bo binary.ByteOrder) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	exif := exifTIFF(orientation, bo)
	var out []byte
	switch filepath.Ext(src) {
	case ".jpg":
		// An APP1 segment right after SOI.
		seg := append([]byte("Exif\x00\x00"), exif...)
		app1 := binary.BigEndian.AppendUint16([]byte{0xFF, 0xE1}, uint16(len(seg)+2))
		out = slices.Concat(data[:2], app1, seg, data[2:])
	case ".png":
		// An eXIf chunk after IHDR (8 bytes of signature, 25 of IHDR).
		chunk := binary.BigEndian.AppendUint32(nil, uint32(len(exif)))
		chunk = append(append(chunk, "eXIf"...), exif...)
		chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(chunk[4:]))
		out = slices.Concat(data[:33], chunk, data[33:])
	case ".webp":
		// A simple WebP made extended: VP8X (with the EXIF flag), the
		// image chunk, EXIF.
		vp8x := []byte("VP8X\x0a\x00\x00\x00\x08\x00\x00\x00")
		vp8x = append(vp8x, 63, 0, 0, 47, 0, 0) // canvas 64x48, less one
		body := slices.Concat([]byte("WEBP"), vp8x, data[12:], []byte("EXIF"), binary.LittleEndian.AppendUint32(nil, uint32(len(exif))), exif)
		out = slices.Concat([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(len(body))), body)
	case ".tiff":
		// A copy of the first directory with the orientation added, at
		// the end of the file, which the header then points to.
		le := binary.LittleEndian
		if string(data[:2]) != "II" {
			t.Fatalf("%s is not a little-endian TIFF", src)
		}
		ifd := le.Uint32(data[4:])
		n := int(le.Uint16(data[ifd:]))
		entries := data[ifd+2 : int(ifd)+2+12*n]
		var tags [][]byte
		for i := range n {
			tags = append(tags, entries[12*i:12*i+12])
		}
		tags = append(tags, exif[10:22])
		slices.SortFunc(tags, func(a, b []byte) int { return int(le.Uint16(a)) - int(le.Uint16(b)) })
		out = append([]byte(nil), data...)
		if len(out)%2 == 1 {
			out = append(out, 0)
		}
		le.PutUint32(out[4:], uint32(len(out)))
		out = le.AppendUint16(out, uint16(len(tags)))
		out = append(out, slices.Concat(tags...)...)
		out = le.AppendUint32(out, 0)
	default:
		t.Fatalf("no EXIF writer for %s", src)
	}
	name := strings.TrimSuffix(src, filepath.Ext(src)) + fmt.Sprintf("-o%d-%v", orientation, bo) + filepath.Ext(src)
	if err := os.WriteFile(name, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// pixels decodes the picture at path to RGB.
func pixels(t *testing.T, path string) (w, h int, rgb []byte) {
	t.Helper()
	w, h = mediatest.Dimensions(t, path)
	raw := filepath.Join(t.TempDir(), "frame.rgb")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", path,
		"-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", raw)
	rgb, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(rgb) != w*h*3 {
		t.Fatalf("%s: %d bytes of RGB for %dx%d", path, len(rgb), w, h)
	}
	return w, h, rgb
}

// colourName names the quadrant colour nearest to an RGB pixel.
func colourName(p []byte) string {
	best, name := 1<<30, ""
	for _, c := range []struct {
		name    string
		r, g, b int
	}{{"red", 255, 0, 0}, {"green", 0, 255, 0}, {"blue", 0, 0, 255}, {"white", 255, 255, 255}, {"black", 0, 0, 0}} {
		d := sq(int(p[0])-c.r) + sq(int(p[1])-c.g) + sq(int(p[2])-c.b)
		if d < best {
			best, name = d, c.name
		}
	}
	return name
}

func sq(x int) int { return x * x }

// corners names the colours at the centres of the four quarters of a
// picture: top left, top right, bottom left, bottom right.
func corners(w, h int, rgb []byte) [4]string {
	at := func(x, y int) string { return colourName(rgb[3*(y*w+x):]) }
	return [4]string{at(w/4, h/4), at(3*w/4, h/4), at(w/4, 3*h/4), at(3*w/4, 3*h/4)}
}

// TestImageOrientation: a picture stored sideways or mirrored, with an
// EXIF orientation saying how to show it, comes out upright in every
// container that carries EXIF. The expectations follow the EXIF
// specification's table of where the stored first row and first column
// belong, not the filters that implement it: the stored top-left (red)
// and top-right (green) quarters must land where it says.
func TestImageOrientation(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	jpg := quadrants(t, dir, "q.jpg", "-q:v", "2")
	const TL, TR, BL, BR = 0, 1, 2, 3
	// Where the stored top-left and top-right quarters are shown.
	shown := map[int][2]int{1: {TL, TR}, 2: {TR, TL}, 3: {BR, BL}, 4: {BL, BR}, 5: {TL, BL}, 6: {TR, BR}, 7: {BR, TR}, 8: {BL, TL}}
	type tcase struct {
		name  string
		input string
		o     int
	}
	var tests []tcase
	for o := 1; o <= 8; o++ {
		tests = append(tests, tcase{fmt.Sprintf("jpeg/%d", o), withOrientation(t, jpg, o, binary.LittleEndian), o})
	}
	tests = append(tests,
		tcase{"jpeg/6 big-endian", withOrientation(t, jpg, 6, binary.BigEndian), 6},
		tcase{"jpeg/none", jpg, 1},
		tcase{"png/6", withOrientation(t, quadrants(t, dir, "q.png"), 6, binary.BigEndian), 6},
		tcase{"webp/8", withOrientation(t, quadrants(t, dir, "q.webp", "-c:v", "libwebp", "-quality", "95"), 8, binary.LittleEndian), 8},
		tcase{"tiff/7", withOrientation(t, quadrants(t, dir, "q.tiff"), 7, binary.LittleEndian), 7},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.name, "jpeg/") || strings.HasPrefix(tt.name, "webp/") {
				// FFmpeg itself reads the orientation we wrote (it
				// reports it, without applying it), so the EXIF is sound.
				got := strings.Trim(string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "frame_tags=Orientation", "-of", "csv=p=0", tt.input)), " ,\n")
				if want := fmt.Sprint(tt.o); tt.name != "jpeg/none" && got != want {
					t.Fatalf("ffprobe reads orientation %q from the test input, want %s", got, want)
				}
			}
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runImage(t, e, tt.input, map[string]any{"widths": []any{32}, "formats": []any{"png"}})
				if len(res.Outputs) != 1 || res.Outputs[0].Name != "image/32.png" {
					t.Fatalf("outputs = %+v, want image/32.png", res.Outputs)
				}
				w, h, rgb := pixels(t, filepath.Join(job.Dir, "image/32.png"))
				wantH := 24
				if tt.o >= 5 {
					wantH = 43 // 48x64 shown, at 32 wide
				}
				if w != 32 || h != wantH {
					t.Errorf("size = %dx%d, want 32x%d", w, h, wantH)
				}
				got := corners(w, h, rgb)
				want := shown[tt.o]
				if got[want[0]] != "red" || got[want[1]] != "green" {
					t.Errorf("quarters (TL, TR, BL, BR) = %v: want red in quarter %d and green in %d", got, want[0], want[1])
				}
				return fmt.Sprintf("%dx%d %v", w, h, got)
			})
		})
	}
}

// TestImageVariants: each width not above the picture's, in each format,
// at the right size; never upscaled; transparency kept in WebP and laid
// on white in JPEG.
func TestImageVariants(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	// A 400x300 PNG, transparent (and black under the transparency)
	// except for an opaque red square in the middle.
	png := filepath.Join(dir, "alpha.png")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
		"color=c=black@0:s=400x300,format=rgba[bg];color=c=red:s=100x100,format=rgba[fg];[bg][fg]overlay=150:100:format=rgb,format=rgba",
		"-frames:v", "1", "-update", "1", png)
	tests := []struct {
		name   string
		widths []any
		want   []int
	}{
		{"some too wide", []any{800, 100, 200}, []int{100, 200}},
		{"all too wide", []any{1000, 2000}, []int{400}},
		{"exactly the width", []any{400}, []int{400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				job, res := runImage(t, e, png, map[string]any{"widths": tt.widths, "formats": []any{"webp", "jpeg", "png"}})
				var names []string
				for _, o := range res.Outputs {
					names = append(names, o.Name+" "+o.ContentType)
				}
				var want []string
				for _, w := range tt.want {
					want = append(want, fmt.Sprintf("image/%d.webp image/webp", w), fmt.Sprintf("image/%d.jpg image/jpeg", w), fmt.Sprintf("image/%d.png image/png", w))
				}
				if !slices.Equal(names, want) {
					t.Fatalf("outputs = %q, want %q", names, want)
				}
				var sum []string
				for _, w := range tt.want {
					for _, ext := range []string{"webp", "jpg", "png"} {
						file := filepath.Join(job.Dir, fmt.Sprintf("image/%d.%s", w, ext))
						gw, gh, rgb := pixels(t, file)
						if gw != w || gh != w*3/4 {
							t.Errorf("%s: %dx%d, want %dx%d", filepath.Base(file), gw, gh, w, w*3/4)
						}
						under := colourName(rgb[3*(gw/8):]) // near the top left: transparent
						middle := colourName(rgb[3*(gh/2*gw+gw/2):])
						if middle != "red" {
							t.Errorf("%s: middle is %s, want red", filepath.Base(file), middle)
						}
						if ext == "jpg" && under != "white" {
							t.Errorf("%s: transparent area is %s, want white", filepath.Base(file), under)
						}
						pixFmt := strings.TrimSpace(string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "stream=pix_fmt", "-of", "csv=p=0", file)))
						if ext != "jpg" && !strings.Contains(pixFmt, "a") {
							t.Errorf("%s: pixel format %s has no alpha", filepath.Base(file), pixFmt)
						}
						sum = append(sum, fmt.Sprintf("%s %dx%d %s", filepath.Base(file), gw, gh, pixFmt))
					}
				}
				return strings.Join(sum, ", ")
			})
		})
	}
}

// TestImageTruncated: a transparent PNG cut short of its pixels fails
// as bad media on each engine, at once, rather than leaving FFmpeg
// spinning until the step's timeout (the JPEG variants' white background
// once was an endless source waiting for a picture that never came).
func TestImageTruncated(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	png := filepath.Join(t.TempDir(), "cut.png")
	mediatest.PNG(t, png, 640, 480)
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		_, _, err := run(t, e, png, "image")
		if !pipeline.IsMediaError(err) {
			t.Fatalf("err = %v, want a media error", err)
		}
		return "media error"
	})
}

// TestImageStripsMetadata: a JPEG carrying EXIF, an ICC profile and a
// comment yields variants that carry none of them.
func TestImageStripsMetadata(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	dir := t.TempDir()
	src := withOrientation(t, quadrants(t, dir, "m.jpg"), 1, binary.BigEndian)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	icc := append([]byte("ICC_PROFILE\x00\x01\x01"), bytes.Repeat([]byte{0x42}, 128)...)
	com := []byte("taken at 51.5N 0.1W by someone")
	seg := func(marker byte, b []byte) []byte {
		return append(binary.BigEndian.AppendUint16([]byte{0xFF, marker}, uint16(len(b)+2)), b...)
	}
	data = slices.Concat(data[:2], seg(0xE2, icc), seg(0xFE, com), data[2:])
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// The source does carry what must go.
	if got := jpegSegments(t, data); !slices.Contains(got, "APP1 Exif") || !slices.Contains(got, "APP2 ICC_PROFILE") || !slices.Contains(got, "COM") {
		t.Fatalf("test input segments = %v, want EXIF, ICC and a comment", got)
	}
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		job, res := runImage(t, e, src, map[string]any{"widths": []any{32}, "formats": []any{"jpeg", "webp", "png"}})
		var sum []string
		for _, o := range res.Outputs {
			b, err := os.ReadFile(filepath.Join(job.Dir, o.Name))
			if err != nil {
				t.Fatal(err)
			}
			var found []string
			switch filepath.Ext(o.Name) {
			case ".jpg":
				for _, s := range jpegSegments(t, b) {
					if s != "APP0 JFIF" {
						found = append(found, s)
					}
				}
			case ".webp":
				for _, c := range []string{"EXIF", "ICCP", "XMP "} {
					if bytes.Contains(b, []byte(c)) {
						found = append(found, c)
					}
				}
			case ".png":
				for _, c := range []string{"eXIf", "iCCP", "tEXt", "zTXt", "iTXt"} {
					if bytes.Contains(b, []byte(c)) {
						found = append(found, c)
					}
				}
			}
			if bytes.Contains(b, []byte("Lavc")) || bytes.Contains(b, []byte("51.5N")) {
				found = append(found, "text")
			}
			if len(found) > 0 {
				t.Errorf("%s carries %v", o.Name, found)
			}
			sum = append(sum, fmt.Sprintf("%s %v", o.Name, found))
		}
		return strings.Join(sum, ", ")
	})
}

// jpegSegments lists the metadata segments of a JPEG before its image
// data: "APP1 Exif", "APP2 ICC_PROFILE", "COM" and so on.
func jpegSegments(t *testing.T, b []byte) []string {
	t.Helper()
	var segs []string
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			t.Fatalf("JPEG: no marker at %d", i)
		}
		m := b[i+1]
		if m == 0xDA || m == 0xD9 {
			break
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		body := b[i+4 : min(i+2+n, len(b))]
		switch {
		case m >= 0xE0 && m <= 0xEF:
			id, _, _ := bytes.Cut(body, []byte{0})
			segs = append(segs, fmt.Sprintf("APP%d %s", m-0xE0, id))
		case m == 0xFE:
			segs = append(segs, "COM")
		}
		i += 2 + n
	}
	return segs
}

// TestImageParams: bad parameters are refused when the pipeline loads.
func TestImageParams(t *testing.T) {
	st := media.ImageType(&media.Engines{})
	for _, tt := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"formats": []any{"gif"}}, `formats: item 1: "gif" is not one of webp, jpeg, png`},
		{map[string]any{"formats": []any{"webp", "webp"}}, "formats: lists webp twice"},
		{map[string]any{"widths": []any{8}}, "widths: item 1: 8 is out of range"},
		{map[string]any{"quality": 0}, "quality: 0 is out of range"},
	} {
		_, err := st.Build(tt.with)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Build(%v) = %v, want an error containing %q", tt.with, err, tt.want)
		}
	}
}

// TestImageApplies: the image step takes still images only.
func TestImageApplies(t *testing.T) {
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "clip", mediatest.Clip{Width: 64, Height: 48, Duration: 1, Video: true})
	jpg := quadrants(t, dir, "still.jpg")
	gif := filepath.Join(dir, "anim.gif")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=64x48:r=5:d=1", gif)
	for name, e := range engines(t) {
		t.Run(name, func(t *testing.T) {
			s, err := media.ImageType(e).Build(nil)
			if err != nil {
				t.Fatal(err)
			}
			for in, want := range map[string]bool{clip: false, jpg: true, gif: true} {
				job := &pipeline.Job{Input: in, Dir: t.TempDir()}
				res, err := (&media.Probe{Engines: e}).Run(context.Background(), job)
				if err != nil {
					t.Fatal(err)
				}
				job.Media = res.Media
				if got := s.Applies(job); got != want {
					t.Errorf("Applies(%s) = %v, want %v", filepath.Base(in), got, want)
				}
			}
			// An animated GIF gives its first frame.
			job, _ := runImage(t, e, gif, map[string]any{"widths": []any{32}, "formats": []any{"png"}})
			if w, h := mediatest.Dimensions(t, filepath.Join(job.Dir, "image/32.png")); w != 32 || h != 24 {
				t.Errorf("GIF variant is %dx%d, want 32x24", w, h)
			}
		})
	}
}

// TestImageQuality: a lower quality makes smaller JPEG and WebP files.
func TestImageQuality(t *testing.T) {
	src := filepath.Join(t.TempDir(), "detail.png")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=320x240",
		"-frames:v", "1", "-update", "1", src)
	forEngines(t, func(t *testing.T, e *media.Engines) string {
		size := map[string][2]int64{}
		for i, q := range []int{20, 95} {
			job, res := runImage(t, e, src, map[string]any{"widths": []any{320}, "quality": q})
			for _, o := range res.Outputs {
				fi, err := os.Stat(filepath.Join(job.Dir, o.Name))
				if err != nil {
					t.Fatal(err)
				}
				s := size[o.Name]
				s[i] = fi.Size()
				size[o.Name] = s
			}
		}
		for name, s := range size {
			if s[0] >= s[1] {
				t.Errorf("%s: %d bytes at quality 20, %d at 95, want fewer at 20", name, s[0], s[1])
			}
		}
		return fmt.Sprint(len(size), " formats")
	})
}
