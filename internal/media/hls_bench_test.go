package media_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/pipeline"
)

// BenchmarkHLSLadder encodes a ladder with native FFmpeg two ways,
// alternating, in one run: the hls step's single run (one decode, split
// to every rung's encoder), and one run per rung (each decoding the source
// again), and reports the medians and their ratio. Three cases: the
// default ladder (1080/720/480/360) of a 10 s synthetic 1080p clip and of
// a noisy, high-bitrate one (closer to camera footage), and a 720/480/360
// ladder of a 10 s 720p clip.
func BenchmarkHLSLadder(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	short, _ := benchMedia(b)
	hd := filepath.Join(filepath.Dir(short), "1080p-10s.mp4")
	if _, err := os.Stat(hd); err != nil {
		mediatest.Run(b, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=10",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
			"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", hd+".tmp.mp4")
		if err := os.Rename(hd+".tmp.mp4", hd); err != nil {
			b.Fatal(err)
		}
	}
	// Camera footage is noisy and high in bitrate, which costs more to
	// decode than the synthetic clip: film grain-like noise, x264 at
	// CRF 16 (about 25 Mbit/s), as phones record.
	camera := filepath.Join(filepath.Dir(short), "1080p-10s-noisy.mp4")
	if _, err := os.Stat(camera); err != nil {
		mediatest.Run(b, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=25:duration=10,noise=alls=24:allf=t",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
			"-c:v", "libx264", "-preset", "veryfast", "-crf", "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", camera+".tmp.mp4")
		if err := os.Rename(camera+".tmp.mp4", camera); err != nil {
			b.Fatal(err)
		}
	}
	native, err := media.NewNative(media.DefaultNativeConfig())
	if err != nil {
		b.Fatal(err)
	}
	e := &media.Engines{Native: native, Default: media.ModeNative}
	for _, tc := range []struct {
		name    string
		input   string
		heights []int
	}{
		{"1080p-default-ladder", hd, media.DefaultHeights},
		{"1080p-noisy-default-ladder", camera, media.DefaultHeights},
		{"720p-3-rungs", short, []int{720, 480, 360}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ctx := context.Background()
			m, err := native.Probe(ctx, tc.input)
			if err != nil {
				b.Fatal(err)
			}
			encode := func(hs []int) {
				job := &pipeline.Job{Input: tc.input, Dir: b.TempDir(), Media: m}
				if _, err := (&media.HLS{Engines: e, Heights: hs}).Run(ctx, job); err != nil {
					b.Fatal(err)
				}
			}
			// Wall time, and the CPU time FFmpeg used (user+system, of the
			// children), which is what the shared decode saves on a busy
			// machine.
			var wall, cpu [2][]float64
			measure := func(i int, f func()) {
				before := childCPU(b)
				start := time.Now()
				f()
				wall[i] = append(wall[i], float64(time.Since(start).Milliseconds()))
				cpu[i] = append(cpu[i], float64((childCPU(b) - before).Milliseconds()))
			}
			for range b.N {
				measure(0, func() { encode(tc.heights) })
				measure(1, func() {
					for _, h := range tc.heights {
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
		})
	}
}

// childCPU is the user and system time of this process's finished children.
func childCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
