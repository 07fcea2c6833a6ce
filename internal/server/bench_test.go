package server

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// BenchmarkPipelineOverhead measures, per upload of a 10 s 720p clip on the
// native engine, the
// time from the upload being recorded to the thumbnail being stored and
// recorded (server timestamps: uploaded_at to the thumbnail step's end),
// and in the same run the bare commands on the same file: the ffmpeg
// thumbnail alone, and ffprobe followed by it (the pipeline probes first,
// to pin the demuxer). It reports medians; ns/op is the whole round trip
// as the client sees it, polling included.
func BenchmarkPipelineOverhead(b *testing.B) {
	cfg := testConfig(b)
	cfg.Worker.Concurrency = 1
	cfg.Pipelines = []string{mediatest.LightPipeline(b, 640)}
	// Like for like: the bare commands are native FFmpeg.
	cfg.Engine = media.ModeNative
	h := start(b, cfg)
	dir := b.TempDir()
	clip := mediatest.Generate(b, dir, "clip", mediatest.Clip{Width: 1280, Height: 720, Duration: 10, Video: true, Audio: true})
	out := filepath.Join(dir, "bare.jpg")
	bareThumb := func() time.Duration {
		start := time.Now()
		mediatest.Run(b, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", "2", "-i", clip,
			"-frames:v", "1", "-vf", "scale=640:-2", "-q:v", "3", out)
		return time.Since(start)
	}
	bareProbe := func() time.Duration {
		start := time.Now()
		mediatest.Run(b, "ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams", clip)
		return time.Since(start)
	}
	// Warm the page cache and the server.
	bareThumb()
	h.wait(b, h.uploadPut(b, clip))

	var pipe, thumb, probeThumb []float64
	b.ResetTimer()
	for range b.N {
		id := h.uploadPut(b, clip)
		a := h.wait(b, id)
		b.StopTimer()
		if a.Status != wire.StatusSucceeded {
			b.Fatalf("asset %s: %s", a.Status, a.Error)
		}
		var end time.Time
		for _, s := range a.Steps {
			if s.Name == "thumbnail" && s.FinishedAt != nil {
				end = *s.FinishedAt
			}
		}
		pipe = append(pipe, ms(end.Sub(*a.UploadedAt)))
		t := bareThumb()
		thumb = append(thumb, ms(t))
		probeThumb = append(probeThumb, ms(bareProbe()+t))
		b.StartTimer()
	}
	b.StopTimer()
	p, t, pt := median(pipe), median(thumb), median(probeThumb)
	b.ReportMetric(p, "pipeline-ms")
	b.ReportMetric(t, "bare-thumb-ms")
	b.ReportMetric(pt, "bare-probe+thumb-ms")
	b.ReportMetric(p-t, "overhead-vs-thumb-ms")
	b.ReportMetric(p-pt, "overhead-vs-probe+thumb-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
