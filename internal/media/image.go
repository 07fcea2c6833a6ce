package media

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/sluice-media/sluice/internal/pipeline"
)

// ImageType is the "image" step type.
func ImageType(e *Engines) pipeline.StepType {
	return pipeline.StepType{
		Name: "image",
		Doc:  "resized variants of a still image, EXIF orientation applied, metadata stripped, never upscaled",
		Params: []pipeline.Param{
			{Name: "widths", Kind: pipeline.Ints, Default: []int{320, 640, 1280}, Min: 16, Max: 8192, MaxItems: 8,
				Doc: "widths in pixels, aspect kept; widths above the image's are dropped (its own width is used when all are)"},
			{Name: "formats", Kind: pipeline.Strings, Default: []string{"webp", "jpeg"}, Enum: imageFormatNames, MaxItems: 3,
				Doc: "formats of each variant"},
			{Name: "quality", Kind: pipeline.Int, Default: 80, Min: 1, Max: 100,
				Doc: "1 (smallest) to 100 (best), as libjpeg and libwebp count it; PNG is lossless"},
		},
		New: func(p pipeline.Params) (pipeline.Step, error) {
			widths := slices.Clone(p.Ints("widths"))
			slices.Sort(widths)
			formats := p.Strings("formats")
			for i, f := range formats {
				if slices.Contains(formats[:i], f) {
					return nil, &pipeline.ParamError{Param: "formats", Msg: fmt.Sprintf("lists %s twice", f)}
				}
			}
			return &Image{Engines: e, Widths: slices.Compact(widths), Formats: formats, Quality: p.Int("quality")}, nil
		},
	}
}

// Image formats the image step writes.
var imageFormatNames = []string{"webp", "jpeg", "png"}

// imageFormats are the extensions and content types of the formats.
var imageFormats = map[string]struct{ ext, contentType string }{
	"webp": {"webp", "image/webp"},
	"jpeg": {"jpg", "image/jpeg"},
	"png":  {"png", "image/png"},
}

// Image writes resized variants of a still image, image/<width>.<ext>
// for each width and format, in one FFmpeg run that decodes the image
// once. Each variant is turned upright as the image's EXIF orientation
// says (FFmpeg 5.1 reads the orientation but does not apply it) and
// carries no metadata: no EXIF (camera, GPS position), no ICC profile,
// no comment. Transparency is kept in WebP and PNG and flattened onto
// white in JPEG.
type Image struct {
	Engines *Engines
	Widths  []int    // ascending; default 320, 640, 1280
	Formats []string // "webp", "jpeg", "png"; default webp and jpeg
	Quality int      // 1..100; default 80
}

var _ pipeline.Step = (*Image)(nil)

func (*Image) Name() string { return "image" }

// Applies to still images: the single-picture demuxers, and GIF, whose
// first frame is taken.
func (*Image) Applies(job *pipeline.Job) bool { return isStill(job.Media) }

// isStill reports whether m is a picture rather than a clip.
func isStill(m *pipeline.Media) bool {
	return m != nil && m.Video() != nil && (strings.HasSuffix(m.Format, "_pipe") || m.Format == "gif")
}

// ImageName is the name of the variant of the given width and format
// ("webp", "jpeg" or "png").
func ImageName(width int, format string) string {
	return fmt.Sprintf("image/%d.%s", width, imageFormats[format].ext)
}

// widths returns the variant widths for a picture w pixels wide: those
// not above w, or w alone when all are.
func (s *Image) widths(w int) []int {
	want := s.Widths
	if len(want) == 0 {
		want = []int{320, 640, 1280}
	}
	var out []int
	for _, x := range want {
		if x <= w && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		out = []int{w}
	}
	return out
}

func (s *Image) Run(ctx context.Context, job *pipeline.Job) (pipeline.Result, error) {
	m := job.Media
	v := m.Video()
	if v.Width < 1 || v.Height < 1 {
		return pipeline.Result{}, pipeline.Invalid("the image has no usable dimensions (%dx%d)", v.Width, v.Height)
	}
	orient, err := exifOrientation(job.Input)
	if err != nil {
		return pipeline.Result{}, err
	}
	// The picture's size as it is to be shown.
	w, h := v.Width, v.Height
	if orient >= 5 {
		w, h = h, w
	}
	formats := s.Formats
	if len(formats) == 0 {
		formats = []string{"webp", "jpeg"}
	}
	quality := s.Quality
	if quality <= 0 {
		quality = 80
	}
	alpha := hasAlpha(v.PixelFormat)

	widths := s.widths(w)
	var graph strings.Builder
	// The decoder attaches an embedded ICC profile to the frame, and
	// the encoders would write it out again.
	fmt.Fprintf(&graph, "[0:%d]sidedata=mode=delete,split=%d", v.Index, len(widths))
	for i := range widths {
		fmt.Fprintf(&graph, "[w%d]", i)
	}
	// -autorotate 0: were FFmpeg to apply the rotation its decoder
	// derives from the orientation (5.1 does not), the picture would be
	// turned twice.
	args := append([]string{"-autorotate", "0"}, inputArgs(m)...)
	var outputs []pipeline.Output
	var outArgs []string
	for i, width := range widths {
		height := max(1, int(math.Round(float64(h)*float64(width)/float64(w))))
		// Scale in the stored orientation, then turn the small result.
		scale := fmt.Sprintf("scale=%d:%d:flags=lanczos", width, height)
		if orient >= 5 {
			scale = fmt.Sprintf("scale=%d:%d:flags=lanczos", height, width)
		}
		chain := scale
		if f := orientFilter(orient); f != "" {
			chain += "," + f
		}
		fmt.Fprintf(&graph, ";[w%d]%s,setsar=1,split=%d", i, chain, len(formats))
		for j := range formats {
			fmt.Fprintf(&graph, "[w%df%d]", i, j)
		}
		for j, f := range formats {
			label := fmt.Sprintf("w%df%d", i, j)
			if f == "jpeg" && alpha {
				// JPEG has no transparency: lay the picture on white
				// rather than let FFmpeg drop the alpha channel, which
				// shows whatever colour transparent pixels happen to hold.
				// The white is one frame, not an endless source: were the
				// picture never to decode (a truncated file), an endless
				// background would keep FFmpeg waiting for it, spinning,
				// until the step's timeout.
				fmt.Fprintf(&graph, ";color=c=white:s=%dx%d:r=1:d=1,format=rgb24[bg%s];[bg%s][%s]overlay=shortest=1:format=rgb[%sj]",
					width, height, label, label, label, label)
				label += "j"
			}
			name := ImageName(width, f)
			outArgs = append(outArgs, "-map", "["+label+"]", "-frames:v", "1")
			outArgs = append(outArgs, imageCodec(f, quality)...)
			outArgs = append(outArgs, "-map_metadata", "-1", "-flags:v", "+bitexact", "-f", "image2", "-update", "1", Out(name))
			outputs = append(outputs, pipeline.Output{Name: name, ContentType: imageFormats[f].contentType})
		}
	}
	args = append(args, "-filter_complex", graph.String())
	args = append(args, outArgs...)

	if err := os.MkdirAll(filepath.Join(job.Dir, "image"), 0o755); err != nil {
		return pipeline.Result{}, err
	}
	e, err := s.Engines.Pick(job.Engine, false)
	if err != nil {
		return pipeline.Result{}, err
	}
	if err := e.FFmpeg(ctx, Command{Input: job.Input, Dir: job.Dir, Args: args}); err != nil {
		return pipeline.Result{}, err
	}
	for _, o := range outputs {
		if err := nonEmpty(job.Dir, o.Name); err != nil {
			return pipeline.Result{}, pipeline.Invalid("the image could not be decoded")
		}
	}
	return pipeline.Result{Outputs: outputs}, nil
}

// imageCodec is the encoder and quality of a format. libwebp's -quality
// is the 1..100 scale itself. FFmpeg's JPEG encoder quantizes with
// MPEG's intra matrix times q/8, which is libjpeg's quality-50 tables
// scaled by about 68% (in geometric mean) times q/8; libjpeg's quality Q
// scales those tables by S = 200-2Q percent above 50 and 5000/Q below,
// so quality Q is about q = S/8.5 (80: 5; 90: 2).
func imageCodec(format string, quality int) []string {
	switch format {
	case "webp":
		return []string{"-c:v", "libwebp", "-quality", strconv.Itoa(quality)}
	case "jpeg":
		scale := 200 - 2*float64(quality)
		if quality < 50 {
			scale = 5000 / float64(quality)
		}
		q := min(max(int(math.Round(scale/8.5)), 2), 31)
		return []string{"-c:v", "mjpeg", "-q:v", strconv.Itoa(q), "-pix_fmt", "yuvj420p"}
	}
	return []string{"-c:v", "png"}
}

// hasAlpha reports whether pixels of the format may be transparent.
// Palettes (GIF, PNG) may hold a transparent entry.
func hasAlpha(pixFmt string) bool {
	return pixFmt == "pal8" || strings.HasPrefix(pixFmt, "yuva") || strings.HasPrefix(pixFmt, "ya") ||
		strings.Contains(pixFmt, "rgba") || strings.Contains(pixFmt, "bgra") ||
		strings.Contains(pixFmt, "argb") || strings.Contains(pixFmt, "abgr") || strings.HasPrefix(pixFmt, "gbrap")
}

// orientFilter turns a picture stored with EXIF orientation o (1..8)
// upright. transpose=0 is the transposition (rows become columns),
// 1 a quarter turn clockwise, 2 one anticlockwise, 3 the transverse.
func orientFilter(o int) string {
	switch o {
	case 2:
		return "hflip"
	case 3:
		return "hflip,vflip"
	case 4:
		return "vflip"
	case 5:
		return "transpose=0"
	case 6:
		return "transpose=1"
	case 7:
		return "transpose=3"
	case 8:
		return "transpose=2"
	}
	return ""
}

// exifOrientation returns the EXIF orientation (1..8) of the image file
// at path: that of the first EXIF block of a JPEG (APP1), PNG (eXIf) or
// WebP (EXIF chunk), or of a TIFF's first directory; 1 when there is
// none or it is malformed.
//
// The parser is written here rather than taken from a library because it
// reads one tag: it walks the container's segments to the EXIF block and
// then one TIFF directory, a few reads of at most a few kilobytes each,
// bounds-checked by Go, with no allocation sized by the file. FFmpeg does
// read the orientation (as frame metadata), but exposes it only on
// decoded frames, which would cost a decode run and a side file per
// image; github.com/dsoprea/go-exif parses all of EXIF and brings four
// modules for this one tag.
func exifOrientation(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head [12]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return 1, nil
	}
	var tiff *io.SectionReader
	switch {
	case head[0] == 0xFF && head[1] == 0xD8:
		tiff = jpegExif(f)
	case string(head[:8]) == "\x89PNG\r\n\x1a\n":
		tiff = pngExif(f)
	case string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		tiff = webpExif(f)
	case string(head[:4]) == "II*\x00" || string(head[:4]) == "MM\x00*":
		tiff = io.NewSectionReader(f, 0, math.MaxInt64)
	}
	if tiff == nil {
		return 1, nil
	}
	return tiffOrientation(tiff), nil
}

// maxSegments bounds the segments or chunks walked before the EXIF block.
const maxSegments = 1000

// jpegExif finds the TIFF data of the first Exif APP1 segment, among
// the segments before the image data.
func jpegExif(r io.ReaderAt) *io.SectionReader {
	off := int64(2)
	var seg [10]byte
	for range maxSegments {
		if _, err := r.ReadAt(seg[:4], off); err != nil || seg[0] != 0xFF {
			return nil
		}
		marker := seg[1]
		switch {
		case marker == 0xFF: // fill byte
			off++
			continue
		case marker == 0xD8 || marker >= 0xD0 && marker <= 0xD7 || marker == 0x01:
			off += 2 // no length
			continue
		case marker == 0xDA || marker == 0xD9: // image data, end
			return nil
		}
		n := int64(binary.BigEndian.Uint16(seg[2:4]))
		if n < 2 {
			return nil
		}
		if marker == 0xE1 && n >= 8 {
			if _, err := r.ReadAt(seg[4:10], off+4); err == nil && string(seg[4:10]) == "Exif\x00\x00" {
				return io.NewSectionReader(r, off+10, n-8)
			}
		}
		off += 2 + n
	}
	return nil
}

// pngExif finds the eXIf chunk, which comes before the image data.
func pngExif(r io.ReaderAt) *io.SectionReader {
	off := int64(8)
	var ch [8]byte
	for range maxSegments {
		if _, err := r.ReadAt(ch[:], off); err != nil {
			return nil
		}
		n := int64(binary.BigEndian.Uint32(ch[:4]))
		switch string(ch[4:]) {
		case "eXIf":
			return io.NewSectionReader(r, off+8, n)
		case "IDAT", "IEND":
			return nil
		}
		off += 12 + n // length, type, data, CRC
	}
	return nil
}

// webpExif finds the EXIF chunk of an extended (VP8X) WebP file. Some
// writers put JPEG's "Exif\0\0" before the TIFF data there too.
func webpExif(r io.ReaderAt) *io.SectionReader {
	off := int64(12)
	var ch [14]byte
	for range maxSegments {
		if _, err := r.ReadAt(ch[:8], off); err != nil {
			return nil
		}
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		if string(ch[:4]) == "EXIF" {
			if _, err := r.ReadAt(ch[8:14], off+8); err == nil && string(ch[8:14]) == "Exif\x00\x00" && n > 6 {
				return io.NewSectionReader(r, off+14, n-6)
			}
			return io.NewSectionReader(r, off+8, n)
		}
		off += 8 + n + n&1 // chunks are padded to even sizes
	}
	return nil
}

// tiffOrientation reads tag 0x0112 (Orientation, a SHORT) of the first
// image directory of the TIFF data in r, in either byte order.
func tiffOrientation(r *io.SectionReader) int {
	var hdr [8]byte
	if _, err := r.ReadAt(hdr[:], 0); err != nil {
		return 1
	}
	var bo binary.ByteOrder
	switch string(hdr[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 1
	}
	ifd := int64(bo.Uint32(hdr[4:]))
	var cnt [2]byte
	if _, err := r.ReadAt(cnt[:], ifd); err != nil {
		return 1
	}
	var entry [12]byte
	for i := range int64(min(bo.Uint16(cnt[:]), maxSegments)) {
		if _, err := r.ReadAt(entry[:], ifd+2+12*i); err != nil {
			return 1
		}
		if bo.Uint16(entry[0:]) != 0x0112 {
			continue
		}
		// Type 3 (SHORT), count 1: the value sits in the entry.
		if bo.Uint16(entry[2:]) != 3 || bo.Uint32(entry[4:]) != 1 {
			return 1
		}
		if o := int(bo.Uint16(entry[8:])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}
