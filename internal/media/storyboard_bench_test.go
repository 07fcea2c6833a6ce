package media_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// benchNative returns native engines and the probed 10-minute clip
// (640x360, 25 fps, x264 with keyframes every 10 s).
func benchNative(b *testing.B) (*media.Engines, string, *pipeline.Media) {
	mediatest.RequireFFmpeg(b)
	_, long := benchMedia(b)
	native, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, err := native.Probe(context.Background(), long)
	if err != nil {
		b.Fatal(err)
	}
	return &media.Engines{Native: native, Default: media.ModeNative}, long, m
}

// benchAlternating runs each op once per iteration, in turn, and returns
// each op's median time in milliseconds.
func benchAlternating(b *testing.B, ops []benchOp) map[string]float64 {
	times := map[string][]float64{}
	for range b.N {
		for _, op := range ops {
			dir := b.TempDir()
			start := time.Now()
			if err := op.run(dir); err != nil {
				b.Fatalf("%s: %v", op.name, err)
			}
			times[op.name] = append(times[op.name], float64(time.Since(start).Microseconds())/1000)
		}
	}
	med := map[string]float64{}
	for _, op := range ops {
		med[op.name] = medianOf(times[op.name])
		b.ReportMetric(med[op.name], op.name+"-ms")
	}
	return med
}

type benchOp struct {
	name string
	run  func(dir string) error
}

// BenchmarkThumbnailSeek compares where -ss goes for a thumbnail of the
// 10-minute clip, natively. Before -i (input seeking, what
// media.Thumbnail does) the demuxer jumps to the keyframe before the
// time and decodes from there; after -i (output seeking) FFmpeg decodes
// and discards every frame up to it. Input seeking at 10%, 50% and 90%
// shows its cost does not grow with the position.
func BenchmarkThumbnailSeek(b *testing.B) {
	e, long, m := benchNative(b)
	ctx := context.Background()
	inputSeek := func(frac float64) func(string) error {
		return func(dir string) error {
			_, err := (&media.Thumbnail{Engines: e, Width: 640, At: frac * m.Duration}).Run(ctx, &pipeline.Job{Input: long, Dir: dir, Media: m})
			return err
		}
	}
	// media.Thumbnail's command with -ss moved after -i.
	outputSeek := func(frac float64) func(string) error {
		return func(dir string) error {
			return e.Native.FFmpeg(ctx, media.Command{Input: long, Dir: dir, Args: []string{
				"-protocol_whitelist", "file", "-max_pixels", strconv.Itoa(media.MaxPixels), "-f", m.Format, "-i", media.InputArg,
				"-ss", strconv.FormatFloat(frac*m.Duration, 'f', 3, 64),
				"-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", "1",
				"-vf", "scale=w='trunc(min(640\\,iw*sar)/2)*2':h='trunc(ow/dar/2)*2',setsar=1",
				"-q:v", "3", "-f", "image2", "-update", "1", media.Out(media.ThumbnailName),
			}})
		}
	}
	med := benchAlternating(b, []benchOp{
		{"input-seek-90pct", inputSeek(0.9)},
		{"output-seek-90pct", outputSeek(0.9)},
		{"input-seek-10pct", inputSeek(0.1)},
		{"input-seek-50pct", inputSeek(0.5)},
	})
	b.ReportMetric(med["output-seek-90pct"]/med["input-seek-90pct"], "input-seek-speedup-90pct")
}

// BenchmarkStoryboard makes the storyboard of the 10-minute clip, a tile
// every 10 s (as often as its keyframes), natively, decoding keyframes
// only and decoding everything; "auto" adds the packet scan that chooses
// keyframes only.
func BenchmarkStoryboard(b *testing.B) {
	e, long, m := benchNative(b)
	ctx := context.Background()
	storyboard := func(mode string) func(string) error {
		return func(dir string) error {
			s, err := media.StoryboardType(e).Build(map[string]any{"interval": "10s", "keyframes_only": mode})
			if err != nil {
				return err
			}
			if _, err = s.Run(ctx, &pipeline.Job{Input: long, Dir: dir, Media: m}); err != nil {
				return err
			}
			data, err := os.ReadFile(filepath.Join(dir, media.StoryboardJSON))
			if err != nil {
				return err
			}
			var info media.StoryboardInfo
			if err := json.Unmarshal(data, &info); err != nil {
				return err
			}
			if info.Count != 60 || info.KeyframesOnly != (mode != "never") {
				return fmt.Errorf("%d tiles, keyframes only %v", info.Count, info.KeyframesOnly)
			}
			return nil
		}
	}
	med := benchAlternating(b, []benchOp{
		{"keyframes-only", storyboard("always")},
		{"full-decode", storyboard("never")},
		{"auto", storyboard("auto")},
	})
	b.ReportMetric(med["full-decode"]/med["keyframes-only"], "keyframes-only-speedup")
}
