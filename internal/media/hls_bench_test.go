package media_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// BenchmarkHLSLadder encodes the same 720/480/360 ladder of the 10 s 720p
// clip with native FFmpeg two ways, alternating, in one run: the hls
// step's single run (one decode, split to three encoders), and one run
// per rung (each decoding the source again), and reports the medians and
// their ratio.
func BenchmarkHLSLadder(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	short, _ := benchMedia(b)
	native, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		b.Fatal(err)
	}
	e := &media.Engines{Native: native, Default: media.ModeNative}
	ctx := context.Background()
	m, err := native.Probe(ctx, short)
	if err != nil {
		b.Fatal(err)
	}
	heights := []int{720, 480, 360}
	encode := func(hs []int) {
		job := &pipeline.Job{Input: short, Dir: b.TempDir(), Media: m}
		if _, err := (&media.HLS{Engines: e, Heights: hs}).Run(ctx, job); err != nil {
			b.Fatal(err)
		}
	}
	var single, separate []float64
	for range b.N {
		start := time.Now()
		encode(heights)
		single = append(single, float64(time.Since(start).Milliseconds()))

		start = time.Now()
		for _, h := range heights {
			encode([]int{h})
		}
		separate = append(separate, float64(time.Since(start).Milliseconds()))
	}
	s, p := medianOf(single), medianOf(separate)
	b.ReportMetric(s, "one-decode-ms")
	b.ReportMetric(p, "per-rung-ms")
	b.ReportMetric(p/s, "speedup")
}
