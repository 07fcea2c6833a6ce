package media_test

import (
	"context"
	"syscall"
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
	// Wall time, and the CPU time FFmpeg used (user+system, of the
	// children), which is what the shared decode saves on a busy machine.
	var wall, cpu [2][]float64
	measure := func(i int, f func()) {
		before := childCPU(b)
		start := time.Now()
		f()
		wall[i] = append(wall[i], float64(time.Since(start).Milliseconds()))
		cpu[i] = append(cpu[i], float64((childCPU(b) - before).Milliseconds()))
	}
	for range b.N {
		measure(0, func() { encode(heights) })
		measure(1, func() {
			for _, h := range heights {
				encode([]int{h})
			}
		})
	}
	one, per := medianOf(wall[0]), medianOf(wall[1])
	b.ReportMetric(one, "one-decode-ms")
	b.ReportMetric(per, "per-rung-ms")
	b.ReportMetric(per/one, "speedup")
	b.ReportMetric(medianOf(cpu[0]), "one-decode-cpu-ms")
	b.ReportMetric(medianOf(cpu[1]), "per-rung-cpu-ms")
	b.ReportMetric(medianOf(cpu[1])/medianOf(cpu[0]), "cpu-ratio")
}

// childCPU is the user and system time of this process's finished children.
func childCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
