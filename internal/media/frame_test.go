package media_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// TestRenderFrame renders stills and animations in every format and fit
// from a 4:3 clip, a rotated one and one with non-square pixels, and
// checks their size (and frame count) under both engines.
func TestRenderFrame(t *testing.T) {
	dir := t.TempDir()
	plain := mediatest.Generate(t, dir, "plain", mediatest.Clip{Width: 320, Height: 240, Duration: 3, Video: true, Audio: true})
	rotated := mediatest.Generate(t, dir, "rotated", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Rotate: 90})
	// 320x240 coded with 2:1 pixels: 640x240 on screen.
	wide := filepath.Join(dir, "wide.mp4")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2",
		"-vf", "setsar=2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", wide)

	tests := []struct {
		name   string
		input  string
		o      media.FrameOptions
		w, h   int
		frames int // 0: a still
	}{
		{"jpg width", plain, media.FrameOptions{Format: "jpg", At: 1.5, Width: 160}, 160, 120, 0},
		{"jpg height", plain, media.FrameOptions{Format: "jpg", At: 1.5, Height: 60}, 80, 60, 0},
		{"jpg never upscaled", plain, media.FrameOptions{Format: "jpg", Width: 1000}, 320, 240, 0},
		{"jpg clip box", plain, media.FrameOptions{Format: "jpg", Width: 160, Height: 160, Fit: "clip"}, 160, 120, 0},
		{"jpg odd clip", plain, media.FrameOptions{Format: "jpg", Width: 101}, 101, 76, 0},
		{"png crop", plain, media.FrameOptions{Format: "png", At: 2.9, Width: 100, Height: 100, Fit: "crop"}, 100, 100, 0},
		{"jpg odd crop", plain, media.FrameOptions{Format: "jpg", Width: 101, Height: 51, Fit: "crop"}, 101, 51, 0},
		{"jpg crop box larger than frame", plain, media.FrameOptions{Format: "jpg", Width: 400, Height: 100, Fit: "crop"}, 320, 80, 0},
		{"jpg scale", plain, media.FrameOptions{Format: "jpg", Width: 100, Height: 300, Fit: "scale"}, 100, 300, 0},
		{"webp fill", plain, media.FrameOptions{Format: "webp", Width: 200, Height: 200, Fit: "fill"}, 200, 200, 0},
		{"png odd fill", plain, media.FrameOptions{Format: "png", Width: 161, Height: 99, Fit: "fill"}, 161, 99, 0},
		{"png fill larger than frame", plain, media.FrameOptions{Format: "png", Width: 400, Height: 400, Fit: "fill"}, 400, 400, 0},
		{"jpg rotated", rotated, media.FrameOptions{Format: "jpg", At: 1, Width: 120}, 120, 160, 0},
		{"jpg non-square pixels", wide, media.FrameOptions{Format: "jpg", At: 1, Width: 320}, 320, 120, 0},
		{"jpg non-square pixels crop", wide, media.FrameOptions{Format: "jpg", At: 1, Width: 120, Height: 120, Fit: "crop"}, 120, 120, 0},
		{"gif", plain, media.FrameOptions{Format: "gif", At: 0.5, Width: 120, Duration: 2, FPS: 10}, 120, 90, 20},
		{"gif crop", plain, media.FrameOptions{Format: "gif", At: 1, Width: 64, Height: 64, Fit: "crop", Duration: 1, FPS: 12}, 64, 64, 12},
		{"webp animated", plain, media.FrameOptions{Format: "webp", At: 1, Width: 96, Duration: 1, FPS: 5}, 96, 72, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEngines(t, func(t *testing.T, e *media.Engines) string {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				m := probe(t, e, tt.input)
				in := isolate(t, tt.input)
				out := t.TempDir()
				name := "pic." + tt.o.Format
				if err := media.RenderFrame(ctx, e, in, m, out, name, tt.o); err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(out, name)
				w, h, frames := pictureInfo(t, path, tt.o.Format)
				if w != tt.w || h != tt.h {
					t.Errorf("got %dx%d, want %dx%d", w, h, tt.w, tt.h)
				}
				if frames != tt.frames {
					t.Errorf("got %d frames, want %d", frames, tt.frames)
				}
				return fmt.Sprintf("%dx%d %d frames", w, h, frames)
			})
		})
	}
}

// TestRenderFrameRejects checks inconsistent options and input without
// video.
func TestRenderFrameRejects(t *testing.T) {
	dir := t.TempDir()
	audio := mediatest.Generate(t, dir, "audio", mediatest.Clip{Duration: 1, Audio: true, Ext: ".m4a"})
	e := engines(t)["native"]
	m := probe(t, e, audio)
	err := media.RenderFrame(context.Background(), e, audio, m, t.TempDir(), "x.jpg", media.FrameOptions{Format: "jpg", Width: 64})
	var me *pipeline.MediaError
	if !errors.As(err, &me) || !strings.Contains(me.Reason, "no video") {
		t.Errorf("audio only: got %v, want a media error saying there is no video", err)
	}
	bad := []media.FrameOptions{
		{Format: "bmp", Width: 64},
		{Format: "jpg"},
		{Format: "jpg", Width: 64, Fit: "crop"},
		{Format: "jpg", Width: 64, Fit: "stretch"},
		{Format: "jpg", Width: 64, Duration: 1, FPS: 10},
		{Format: "gif", Width: 64, Duration: 1},
		{Format: "jpg", Width: 64, At: -1},
	}
	for _, o := range bad {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: got no error, want one", o)
		}
	}
}

func probe(t *testing.T, e *media.Engines, input string) *pipeline.Media {
	t.Helper()
	eng, err := e.Pick("", false)
	if err != nil {
		t.Fatal(err)
	}
	m, err := eng.Probe(context.Background(), input)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// isolate links input into a directory of its own, as workers and
// delivery give it to the engines.
func isolate(t *testing.T, input string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), filepath.Base(input))
	if err := os.Link(input, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// pictureInfo returns a picture's size and, for an animation, its frame
// count (0 for a still). FFmpeg 5.1 cannot decode animated WebP, so that
// is read from its RIFF chunks.
func pictureInfo(t *testing.T, path, format string) (w, h, frames int) {
	t.Helper()
	if format == "webp" {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		w, h, frames, err = mediatest.WebPInfo(data)
		if err != nil {
			t.Fatal(err)
		}
		if frames == 0 {
			w, h = mediatest.Dimensions(t, path)
		}
		return w, h, frames
	}
	w, h = mediatest.Dimensions(t, path)
	if format == "gif" {
		out := mediatest.Run(t, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
			"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path)
		if _, err := fmt.Sscanf(string(out), "%d", &frames); err != nil {
			t.Fatalf("frame count of %s: %q", path, out)
		}
	}
	return w, h, frames
}
