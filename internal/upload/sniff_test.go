package upload_test

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/upload"
)

// TestSniffMedia encodes a short file in every container and picture
// format Sluice takes and checks that the first bytes alone name an
// allowed media type.
func TestSniffMedia(t *testing.T) {
	dir := t.TempDir()
	video := []string{"-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10:duration=0.5"}
	audio := []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=0.5"}
	picture := []string{"-f", "lavfi", "-i", "testsrc2=size=64x48", "-frames:v", "1"}
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	join := func(parts ...[]string) []string {
		var out []string
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name string
		args []string // ffmpeg inputs and output options
		want string
	}{
		{"mp4", join(video, audio, h264, []string{"-c:a", "aac", "-f", "mp4"}), "video/mp4"},
		{"mov", join(video, audio, h264, []string{"-c:a", "aac", "-f", "mov"}), "video/quicktime"},
		{"mkv", join(video, audio, h264, []string{"-c:a", "aac", "-f", "matroska"}), "video/matroska"},
		{"webm", join(video, audio, []string{"-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm"}), "video/webm"},
		{"avi", join(video, audio, []string{"-c:v", "mpeg4", "-c:a", "libmp3lame", "-f", "avi"}), "video/x-msvideo"},
		{"mpegts", join(video, audio, h264, []string{"-c:a", "aac", "-f", "mpegts"}), "video/mp2t"},
		{"mp3 without id3", join(audio, []string{"-c:a", "libmp3lame", "-write_id3v1", "0", "-id3v2_version", "0", "-f", "mp3"}), "audio/mpeg"},
		{"flac", join(audio, []string{"-c:a", "flac", "-f", "flac"}), "audio/flac"},
		{"wav", join(audio, []string{"-c:a", "pcm_s16le", "-f", "wav"}), "audio/wav"},
		{"ogg opus", join(audio, []string{"-c:a", "libopus", "-f", "ogg"}), "audio/ogg"},
		{"m4a", join(audio, []string{"-c:a", "aac", "-f", "ipod"}), "audio/x-m4a"},
		{"adts aac", join(audio, []string{"-c:a", "aac", "-f", "adts"}), "audio/aac"},
		{"png", join(picture, []string{"-c:v", "png", "-f", "image2"}), "image/png"},
		{"jpeg", join(picture, []string{"-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-f", "image2"}), "image/jpeg"},
		{"gif", join(picture, []string{"-c:v", "gif", "-f", "gif"}), "image/gif"},
		{"webp", join(picture, []string{"-c:v", "libwebp", "-f", "webp"}), "image/webp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			args := append([]string{"-hide_banner", "-loglevel", "error", "-y"}, tt.args...)
			mediatest.Run(t, "ffmpeg", append(args, path)...)
			got := upload.Sniff(head(t, path))
			t.Logf("Sniff = %q", got)
			if got != tt.want {
				t.Errorf("Sniff = %q, want %q", got, tt.want)
			}
			if !upload.TypeAllowed(upload.DefaultAllowedTypes, got) {
				t.Errorf("TypeAllowed(DefaultAllowedTypes, %q) = false, want true", got)
			}
		})
	}
}

// TestSniffRefuses checks that what is not media, or makes FFmpeg or a
// browser read other things, is refused whatever name or type it came
// with, even when an administrator allows "text/*" or "application/*".
func TestSniffRefuses(t *testing.T) {
	var zipped bytes.Buffer
	zw := zip.NewWriter(&zipped)
	w, _ := zw.Create("video.mp4")
	_, _ = w.Write([]byte("not a video"))
	_ = zw.Close()
	var gzipped bytes.Buffer
	gw := gzip.NewWriter(&gzipped)
	_, _ = gw.Write([]byte("not a video either"))
	_ = gw.Close()
	// always: refused even where "text/*" and "application/*" are
	// allowed; archives and executables only by the default patterns.
	tests := []struct {
		name   string
		data   []byte
		always bool
	}{
		{"m3u8 playlist", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"), true},
		{"m3u8 playlist with CRLF", []byte("#EXTM3U\r\n#EXTINF:10,\r\nhttp://169.254.169.254/latest/meta-data/\r\n"), true},
		{"m3u8 playlist with BOM", []byte("\xef\xbb\xbf#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n"), true},
		{"ffconcat script", []byte("ffconcat version 1.0\nfile /etc/passwd\n"), true},
		{"svg", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), true},
		{"svg without prolog", []byte(`<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`), true},
		{"html", []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"), true},
		{"xml", []byte(`<?xml version="1.0"?><smil><body><video src="file:///etc/passwd"/></body></smil>`), true},
		{"plain text", []byte("this is not a video, just some text\nsecond line\n"), true},
		{"empty", nil, true},
		{"zip", zipped.Bytes(), false},
		{"gzip", gzipped.Bytes(), false},
		{"pdf", []byte("%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"), false},
		{"elf", append([]byte("\x7fELF\x02\x01\x01\x00"), make([]byte, 56)...), false},
	}
	wide := append([]string{"text/*", "application/*"}, upload.DefaultAllowedTypes...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := upload.Sniff(tt.data)
			t.Logf("Sniff = %q", got)
			if upload.TypeAllowed(upload.DefaultAllowedTypes, got) {
				t.Errorf("Sniff = %q, allowed by the default patterns", got)
			}
			if tt.always && upload.TypeAllowed(wide, got) {
				t.Errorf("Sniff = %q, allowed by %q", got, wide)
			}
		})
	}
}

func TestTypeAllowed(t *testing.T) {
	tests := []struct {
		patterns []string
		ctype    string
		want     bool
	}{
		{upload.DefaultAllowedTypes, "video/mp4", true},
		{upload.DefaultAllowedTypes, "Video/MP4", true},
		{upload.DefaultAllowedTypes, "audio/mpeg; foo=bar", true},
		{upload.DefaultAllowedTypes, "image/png", true},
		{upload.DefaultAllowedTypes, "application/octet-stream", false},
		{upload.DefaultAllowedTypes, "application/zip", false},
		{upload.DefaultAllowedTypes, "", false},
		{upload.DefaultAllowedTypes, "video", false},
		{[]string{"VIDEO/MP4"}, "video/mp4", true},
		{[]string{"video/mp4"}, "video/webm", false},
		{[]string{"video/*"}, "audio/mpeg", false},
		{[]string{"*/*"}, "video/mp4", false},
		{[]string{"*/*"}, "*/*", false},
		{[]string{"video/*"}, "video/*", false},
		{[]string{"video/mp2t"}, "video/mp2t", true},
		{nil, "video/mp4", false},
		// Refused whatever the patterns say.
		{upload.DefaultAllowedTypes, "image/svg+xml", false},
		{[]string{"image/svg+xml"}, "image/svg+xml", false},
		{upload.DefaultAllowedTypes, "audio/x-mpegurl", false},
		{upload.DefaultAllowedTypes, "audio/mpegurl", false},
		{[]string{"application/*"}, "application/vnd.apple.mpegurl", false},
		{[]string{"application/*"}, "application/x-mpegurl", false},
		{[]string{"application/*"}, "application/xml", false},
		{[]string{"application/*"}, "application/xhtml+xml", false},
		{[]string{"application/*"}, "application/rss+xml", false},
		{[]string{"text/*"}, "text/plain", false},
		{[]string{"text/html"}, "text/html", false},
		{[]string{"Text/*"}, "TEXT/XML", false},
	}
	for _, tt := range tests {
		if got := upload.TypeAllowed(tt.patterns, tt.ctype); got != tt.want {
			t.Errorf("TypeAllowed(%q, %q) = %v, want %v", tt.patterns, tt.ctype, got, tt.want)
		}
	}
}

func TestValidateTypePatterns(t *testing.T) {
	for _, ok := range [][]string{upload.DefaultAllowedTypes, {"video/mp4", "Audio/X-M4A", "application/*", "video/mp2t"}, nil} {
		if err := upload.ValidateTypePatterns(ok); err != nil {
			t.Errorf("ValidateTypePatterns(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{
		"", "video", "video/", "/mp4", "*/*", "*/mp4", "video/mp4; codecs=avc1", "video/mp*", "video/mp4/x", " video/mp4",
		// Syntactically fine, but always refused: an error, not a no-op.
		"text/*", "Text/*", "text/plain", "image/svg+xml", "application/vnd.apple.mpegurl", "audio/x-mpegurl", "application/xml", "application/rss+xml", "text/html",
	} {
		if err := upload.ValidateTypePatterns([]string{"video/*", bad}); err == nil {
			t.Errorf("ValidateTypePatterns(%q) = nil, want an error", bad)
		}
	}
}

// head returns the first bytes of the file at path, as many as Sniff
// looks at.
func head(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data[:min(len(data), upload.SniffLen)]
}
