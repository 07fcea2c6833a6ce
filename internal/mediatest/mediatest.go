// Package mediatest generates test media with FFmpeg's lavfi sources, so
// that tests carry no binary fixtures. It needs ffmpeg on PATH and fails
// the test, with the command to install it, when ffmpeg is missing.
package mediatest

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Clip describes a clip to generate.
type Clip struct {
	Width, Height int
	Duration      float64 // seconds
	Video         bool
	Audio         bool
	// AudioCodec is "aac" (default), "libmp3lame", "flac" or "pcm_s16le".
	AudioCodec string
	// Rotate sets the display rotation tag (0, 90, 180, 270).
	Rotate int
	// Ext picks the container: ".mp4" (default), ".mkv", ".mp3", ".wav", ".m4a".
	Ext string
	// Faststart moves the moov atom to the front of MP4 files.
	Faststart bool
}

// tools holds the absolute paths of ffmpeg and ffprobe, found once, so
// that tests can hide them from PATH for the code under test and still
// use them to make and check media.
var tools = struct {
	once            sync.Once
	ffmpeg, ffprobe string
	ffmpegE, probeE error
}{}

func findTools() {
	tools.once.Do(func() {
		tools.ffmpeg, tools.ffmpegE = exec.LookPath("ffmpeg")
		tools.ffprobe, tools.probeE = exec.LookPath("ffprobe")
	})
}

// RequireFFmpeg fails the test when ffmpeg or ffprobe is missing.
func RequireFFmpeg(t testing.TB) {
	t.Helper()
	findTools()
	for bin, err := range map[string]error{"ffmpeg": tools.ffmpegE, "ffprobe": tools.probeE} {
		if err != nil {
			t.Fatalf("%s not found on PATH: these tests need real FFmpeg; install it with `apt-get install -y ffmpeg` (the README's test command does this)", bin)
		}
	}
}

// HidePATH empties PATH for the rest of the test, as on a machine with
// no FFmpeg installed; this package's helpers keep working.
func HidePATH(t *testing.T) {
	RequireFFmpeg(t)
	t.Setenv("PATH", t.TempDir())
}

// Generate writes the clip into dir and returns its path.
func Generate(t testing.TB, dir string, name string, c Clip) string {
	t.Helper()
	RequireFFmpeg(t)
	if c.Ext == "" {
		c.Ext = ".mp4"
	}
	if c.Width == 0 {
		c.Width, c.Height = 320, 240
	}
	if c.Duration == 0 {
		c.Duration = 3
	}
	out := filepath.Join(dir, name+c.Ext)
	d := strconv.FormatFloat(c.Duration, 'f', 3, 64)
	args := []string{"-hide_banner", "-loglevel", "error", "-y"}
	if c.Video {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=25:duration=%s", c.Width, c.Height, d))
	}
	if c.Audio {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=440:sample_rate=48000:duration=%s", d))
	}
	if c.Video {
		args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25")
	}
	if c.Audio {
		codec := c.AudioCodec
		if codec == "" {
			codec = "aac"
		}
		args = append(args, "-c:a", codec)
	}
	if c.Faststart {
		args = append(args, "-movflags", "+faststart")
	}
	if c.Rotate == 0 {
		Run(t, "ffmpeg", append(args, out)...)
		return out
	}
	// FFmpeg 5.1 honours the rotate tag only when remuxing.
	plain := filepath.Join(dir, name+".unrotated"+c.Ext)
	Run(t, "ffmpeg", append(args, plain)...)
	Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", plain,
		"-c", "copy", "-metadata:s:v:0", "rotate="+strconv.Itoa(c.Rotate), out)
	return out
}

// Run runs a command under a one-minute timeout and fails the test, with
// its output, when it fails.
func Run(t testing.TB, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch name {
	case "ffmpeg":
		RequireFFmpeg(t)
		name = tools.ffmpeg
	case "ffprobe":
		RequireFFmpeg(t)
		name = tools.ffprobe
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return out
}

// Dimensions returns the width and height of the first video stream (or
// image) at path, as ffprobe reads them.
func Dimensions(t testing.TB, path string) (int, int) {
	t.Helper()
	out := Run(t, "ffprobe", "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height", "-of", "csv=p=0:s=x", path)
	var w, h int
	if _, err := fmt.Sscanf(string(out), "%dx%d", &w, &h); err != nil {
		t.Fatalf("ffprobe dimensions of %s: %q: %v", path, out, err)
	}
	return w, h
}

// Duration returns the container duration in seconds as ffprobe reads it.
func Duration(t testing.TB, path string) float64 {
	t.Helper()
	out := Run(t, "ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path)
	var d float64
	if _, err := fmt.Sscanf(string(out), "%f", &d); err != nil {
		t.Fatalf("ffprobe duration of %s: %q: %v", path, out, err)
	}
	return d
}

// BadInput is one hostile or broken file and the reason Sluice must give.
type BadInput struct {
	Name string
	Path string
	// Reason is a substring the one-line error must contain.
	Reason string
}

// BadInputs writes the bad-input corpus into dir: zero bytes, random
// bytes, text posing as MP4, an HLS playlist and an ffconcat script posing
// as media (both pointing at /etc/passwd), a truncated MP4, an MP4 that
// probes but whose frames cannot be decoded, decompression bombs (a PNG,
// and a video whose frames declare 30000x30000 behind a container that
// says 64x64), a Matroska file nested 20000 levels deep, and a
// transparent PNG cut off after four rows.
func BadInputs(t testing.TB, dir string) []BadInput {
	t.Helper()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 64<<10)
	// A fixed xorshift stream: random-looking, reproducible.
	x := uint64(88172645463325252)
	for i := range random {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		random[i] = byte(x)
	}
	good := Generate(t, dir, "bad-src", Clip{Width: 320, Height: 240, Duration: 3, Video: true, Audio: true})
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	return []BadInput{
		{"zero-bytes", write("empty.mp4", nil), "file is empty"},
		{"random-bytes", write("random.mp4", random), "not a recognized audio or video file"},
		{"text-as-mp4", write("text.mp4", []byte("this is not a video, just some text\nsecond line\n")), "not a recognized audio or video file"},
		{"hls-playlist", write("playlist.mp4", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")), "HLS playlists are not accepted"},
		{"ffconcat", write("concat.mp4", []byte("ffconcat version 1.0\nfile '/etc/passwd'\n")), "ffconcat scripts are not accepted"},
		{"truncated-mp4", write("truncated.mp4", data[:len(data)/2]), "truncated"},
		{"undecodable-mp4", write("undecodable.mp4", zeroMdat(t, data)), "could be decoded"},
		{"pixel-bomb", pixelBomb(t, dir), "larger than the limit"},
		{"video-frame-bomb", write("frames.mkv", frameBomb(t, dir)), "could be decoded"},
		{"nested-matroska", write("nested.mkv", nestedMatroska()), "the file ended before any stream was found"},
		{"truncated-png", truncatedPNG(t, dir), "could be decoded"},
	}
}

// truncatedPNG is a 640x480 transparent PNG cut off after four rows.
func truncatedPNG(t testing.TB, dir string) string {
	p := filepath.Join(dir, "cut.png")
	PNG(t, p, 640, 480)
	return p
}

// frameBomb is a Matroska file of MJPEG frames whose JPEG headers
// declare 30000x30000 (3.6 GB per frame as RGBA), while its track header
// says 64x64: probing sees a small video; only the decoder's pixel cap
// stands between a frame and the allocation.
func frameBomb(t testing.TB, dir string) []byte {
	t.Helper()
	src := filepath.Join(dir, "mjpeg.mkv")
	Run(t, "ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:s=64x64:d=1:r=5", "-c:v", "mjpeg", "-f", "matroska", src)
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sof := []byte{0xff, 0xc0, 0x00, 0x11, 0x08} // baseline start of frame, 8-bit
	n := 0
	for i := bytes.Index(data, sof); i >= 0; {
		binary.BigEndian.PutUint16(data[i+5:], 30000) // height
		binary.BigEndian.PutUint16(data[i+7:], 30000) // width
		n++
		next := bytes.Index(data[i+9:], sof)
		if next < 0 {
			break
		}
		i += 9 + next
	}
	if n == 0 {
		t.Fatal("frameBomb: no JPEG frame header found")
	}
	return data
}

// nestedMatroska is a valid EBML header for a Matroska document, then a
// Segment holding 20000 levels of nested elements of unknown size.
func nestedMatroska() []byte {
	unknown := []byte{0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	body := []byte{0x42, 0x86, 0x81, 0x01, 0x42, 0xf7, 0x81, 0x01, 0x42, 0xf2, 0x81, 0x04, 0x42, 0xf3, 0x81, 0x08,
		0x42, 0x82, 0x88}
	body = append(body, "matroska"...)
	body = append(body, 0x42, 0x87, 0x81, 0x04, 0x42, 0x85, 0x81, 0x02)
	out := append([]byte{0x1a, 0x45, 0xdf, 0xa3, 0x80 | byte(len(body))}, body...)
	out = append(out, 0x18, 0x53, 0x80, 0x67)
	out = append(out, unknown...)
	for range 20000 {
		out = append(out, 0x12, 0x54, 0xc3, 0x67) // Tags
		out = append(out, unknown...)
	}
	return out
}

// pixelBomb is a 600-byte PNG declaring a 16000x16000 16-bit picture,
// whose frame would take 2 GB.
func pixelBomb(t testing.TB, dir string) string {
	p := filepath.Join(dir, "bomb.png")
	PNG(t, p, 16000, 16000)
	return p
}

// zeroMdat overwrites the media payload of an MP4 with zeros: the file
// still probes (its index is intact), but no frame decodes.
func zeroMdat(t testing.TB, mp4 []byte) []byte {
	t.Helper()
	out := append([]byte(nil), mp4...)
	for i := 0; i+8 <= len(out); {
		size := int(uint32(out[i])<<24 | uint32(out[i+1])<<16 | uint32(out[i+2])<<8 | uint32(out[i+3]))
		if string(out[i+4:i+8]) == "mdat" {
			clear(out[i+8 : min(i+size, len(out))])
			return out
		}
		if size < 8 {
			break
		}
		i += size
	}
	t.Fatal("zeroMdat: no mdat box")
	return nil
}

// WasmCacheDir is where tests keep wazero's compiled FFmpeg, shared by
// every test binary and run on the machine, so that only the first pays
// the compile.
func WasmCacheDir() string {
	return filepath.Join(os.TempDir(), "sluice-test-wazero-cache")
}

// PNG writes a PNG that declares a width x height 16-bit RGBA picture but
// carries only a few rows of it: a few hundred bytes that ask a decoder
// for width*height*8 bytes of frame.
func PNG(t testing.TB, path string, width, height int) {
	t.Helper()
	chunk := func(typ string, data []byte) []byte {
		var b bytes.Buffer
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
		return b.Bytes()
	}
	var ihdr bytes.Buffer
	_ = binary.Write(&ihdr, binary.BigEndian, []uint32{uint32(width), uint32(height)})
	ihdr.Write([]byte{16, 6, 0, 0, 0})
	var raw bytes.Buffer
	for range 4 {
		raw.WriteByte(0)
		raw.Write(make([]byte, width*8))
	}
	var idat bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&idat, zlib.BestCompression)
	_, _ = zw.Write(raw.Bytes())
	_ = zw.Close()
	var png bytes.Buffer
	png.WriteString("\x89PNG\r\n\x1a\n")
	png.Write(chunk("IHDR", ihdr.Bytes()))
	png.Write(chunk("IDAT", idat.Bytes()))
	png.Write(chunk("IEND", nil))
	if err := os.WriteFile(path, png.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// LightPipeline writes a pipelines file whose one pipeline, "light",
// matches every asset ahead of the built-in ones and runs only probe,
// thumbnail (at the given width) and audio: for end-to-end tests that
// are about the path through Sluice rather than about every output.
func LightPipeline(t testing.TB, thumbWidth int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "light.yaml")
	yaml := fmt.Sprintf(`pipelines:
  - name: light
    steps:
      - uses: probe
      - uses: thumbnail
        with: {width: %d}
      - uses: audio
`, thumbWidth)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// WebPInfo reads the canvas size (from the VP8X chunk) and the number of
// ANMF chunks of a WebP file; frames is 0 for a still. FFmpeg 5.1 cannot
// decode animated WebP, so tests read the RIFF chunks themselves.
func WebPInfo(data []byte) (w, h, frames int, err error) {
	if len(data) < 12 || string(data[:4]) != "RIFF" || string(data[8:12]) != "WEBP" {
		return 0, 0, 0, errors.New("not a WebP file")
	}
	for p := 12; p+8 <= len(data); {
		id, size := string(data[p:p+4]), int(binary.LittleEndian.Uint32(data[p+4:p+8]))
		body := data[p+8 : min(p+8+size, len(data))]
		switch {
		case id == "VP8X" && len(body) >= 10:
			w = 1 + (int(body[4]) | int(body[5])<<8 | int(body[6])<<16)
			h = 1 + (int(body[7]) | int(body[8])<<8 | int(body[9])<<16)
		case id == "ANMF":
			frames++
		}
		p += 8 + size + size%2
	}
	return w, h, frames, nil
}
