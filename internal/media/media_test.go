package media_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

func engine(t *testing.T) media.Engine {
	t.Helper()
	mediatest.RequireFFmpeg(t)
	n, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// run probes input and runs the named step, as the pipeline runner would.
func run(t *testing.T, e media.Engine, input, step string) (*pipeline.Job, pipeline.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reg, err := pipeline.NewRegistry(media.Steps(e, media.StepsConfig{ThumbnailWidth: 320})...)
	if err != nil {
		t.Fatal(err)
	}
	job := &pipeline.Job{AssetID: "a", Input: input, Dir: t.TempDir()}
	probe, _ := reg.Lookup("probe")
	res, err := probe.Run(ctx, job)
	if err != nil || step == "probe" {
		return job, res, err
	}
	job.Media = res.Media
	s, _ := reg.Lookup(step)
	if !s.Applies(job) {
		t.Fatalf("step %s does not apply to %s", step, input)
	}
	res, err = s.Run(ctx, job)
	return job, res, err
}

func TestProbe(t *testing.T) {
	e := engine(t)
	dir := t.TempDir()
	tests := []struct {
		name      string
		clip      mediatest.Clip
		container string
		w, h, rot int
		video     bool
		audio     string
	}{
		{"mp4 av", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true}, "mov", 640, 360, 0, true, "aac"},
		{"mp4 rotated", mediatest.Clip{Width: 640, Height: 360, Duration: 2, Video: true, Rotate: 90}, "mov", 360, 640, 90, true, ""},
		{"mkv", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true, AudioCodec: "flac", Ext: ".mkv"}, "matroska", 320, 240, 0, true, "flac"},
		{"mp3", mediatest.Clip{Duration: 2, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"}, "mp3", 0, 0, 0, false, "mp3"},
		{"wav", mediatest.Clip{Duration: 2, Audio: true, AudioCodec: "pcm_s16le", Ext: ".wav"}, "wav", 0, 0, 0, false, "pcm_s16le"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mediatest.Generate(t, dir, "p"+string(rune('a'+i)), tt.clip)
			_, res, err := run(t, e, in, "probe")
			if err != nil {
				t.Fatal(err)
			}
			m := res.Media
			if m.Format != tt.container {
				t.Errorf("format = %q, want %q", m.Format, tt.container)
			}
			if math.Abs(m.Duration-tt.clip.Duration) > 0.1 {
				t.Errorf("duration = %v, want %v", m.Duration, tt.clip.Duration)
			}
			if m.Width != tt.w || m.Height != tt.h || m.Rotation != tt.rot {
				t.Errorf("display = %dx%d rot %d, want %dx%d rot %d", m.Width, m.Height, m.Rotation, tt.w, tt.h, tt.rot)
			}
			if got := m.Video() != nil; got != tt.video {
				t.Errorf("has video = %v, want %v", got, tt.video)
			}
			var codec string
			if a := m.Audio(); a != nil {
				codec = a.Codec
			}
			if codec != tt.audio {
				t.Errorf("audio codec = %q, want %q", codec, tt.audio)
			}
		})
	}
}

func TestThumbnail(t *testing.T) {
	e := engine(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		clip mediatest.Clip
		w, h int
	}{
		{"720p at 2s", mediatest.Clip{Width: 1280, Height: 720, Duration: 4, Video: true}, 320, 180},
		{"short clip, middle", mediatest.Clip{Width: 640, Height: 480, Duration: 1, Video: true}, 320, 240},
		{"rotated portrait", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Rotate: 90}, 320, 568},
		{"small, not upscaled", mediatest.Clip{Width: 160, Height: 120, Duration: 3, Video: true}, 160, 120},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mediatest.Generate(t, dir, "t"+string(rune('a'+i)), tt.clip)
			job, res, err := run(t, e, in, "thumbnail")
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Outputs) != 1 || res.Outputs[0].Name != media.ThumbnailName {
				t.Fatalf("outputs = %+v, want one %s", res.Outputs, media.ThumbnailName)
			}
			w, h := mediatest.Dimensions(t, filepath.Join(job.Dir, media.ThumbnailName))
			if w != tt.w || h != tt.h {
				t.Errorf("thumbnail = %dx%d, want %dx%d", w, h, tt.w, tt.h)
			}
		})
	}
}

func TestAudio(t *testing.T) {
	e := engine(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		clip mediatest.Clip
	}{
		{"aac copied", mediatest.Clip{Duration: 3, Video: true, Audio: true}},
		{"mp3 encoded", mediatest.Clip{Duration: 2.5, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"}},
		{"flac in mkv encoded", mediatest.Clip{Duration: 2, Video: true, Audio: true, AudioCodec: "flac", Ext: ".mkv"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := mediatest.Generate(t, dir, "a"+string(rune('a'+i)), tt.clip)
			job, _, err := run(t, e, in, "audio")
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(job.Dir, media.AudioName)
			if got := mediatest.Duration(t, out); math.Abs(got-tt.clip.Duration) > 0.1 {
				t.Errorf("audio duration = %.3f, want %.3f ± 0.1", got, tt.clip.Duration)
			}
			if got := string(mediatest.Run(t, "ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type", "-of", "csv=p=0", out)); strings.TrimSpace(got) != "aac,audio" {
				t.Errorf("audio streams = %q, want one aac audio stream", got)
			}
		})
	}
}

// TestBadInput runs each broken or hostile file through probe and the
// frame-decoding step: each must fail with a one-line MediaError whose
// reason says what is wrong.
func TestBadInput(t *testing.T) {
	e := engine(t)
	for _, bad := range mediatest.BadInputs(t, t.TempDir()) {
		t.Run(bad.Name, func(t *testing.T) {
			_, _, err := run(t, e, bad.Path, "thumbnail")
			if err == nil {
				t.Fatal("got no error, want one")
			}
			if !pipeline.IsMediaError(err) {
				t.Fatalf("error %v (%T) is not a MediaError", err, err)
			}
			if msg := err.Error(); !strings.Contains(msg, bad.Reason) || strings.Contains(msg, "\n") {
				t.Errorf("error = %q, want one line containing %q", msg, bad.Reason)
			}
		})
	}
}

func TestFFmpegTimeoutKillsProcess(t *testing.T) {
	e := engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	// An endless lavfi source would run forever without the timeout.
	err := e.FFmpeg(ctx, t.TempDir(), []string{"-f", "lavfi", "-i", "testsrc2", "-f", "null", "-"})
	if err == nil {
		t.Fatal("endless ffmpeg returned no error")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("ffmpeg ran %s after its deadline", took)
	}
}
