package main

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue/natstest"
	"github.com/sluice-media/sluice/internal/wire"
)

// BenchmarkScaleOut runs a light pipeline (probe and a thumbnail) with
// one gateway and 1, 2 and 3 worker processes (each running 2 jobs at
// once) on one nats-server. It reports jobs per second over 40 short
// clips uploaded at once (first upload recorded to last job finished),
// and, with the workers idle, the latency from an upload being recorded
// to its first step starting, over 30 uploads one after another (p50,
// p99): what the event path adds, where managed queues batch for up to
// 5 s.
func BenchmarkScaleOut(b *testing.B) {
	mediatest.RequireFFmpeg(b)
	media := b.TempDir()
	const n = 40
	var clips []string
	for i := range n {
		clips = append(clips, mediatest.Generate(b, media, fmt.Sprintf("c%d", i), mediatest.Clip{Width: 320, Height: 240, Duration: 1, Video: true}))
	}
	for _, workers := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			for range b.N {
				rate, p50, p99 := scaleOutRun(b, workers, clips, clips[:30])
				b.ReportMetric(rate, "jobs/s")
				b.ReportMetric(p50, "start-p50-ms")
				b.ReportMetric(p99, "start-p99-ms")
			}
		})
	}
}

func scaleOutRun(b *testing.B, workers int, clips, one []string) (rate, p50, p99 float64) {
	b.StopTimer()
	cluster := natstest.StartCluster(b, 1)
	dataDir := b.TempDir()
	common := []string{"--addr", "127.0.0.1:0", "--data-dir", dataDir, "--nats-url", cluster.URLs(),
		"--pipelines", mediatest.LightPipeline(b, 160), "--engine", "native",
		"--key-rate", "0", "--ip-rate", "0"} // the benchmark polls fast
	gw := startProcess(b, nil, append([]string{"gateway"}, common...)...)
	for range workers {
		w := startProcess(b, nil, append([]string{"worker", "--concurrency", "2"}, common...)...)
		w.waitReady(b)
	}
	gw.waitReady(b)
	c := client.New(gw.url, testToken)
	b.StartTimer()
	ids := make([]string, len(clips))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, clip := range clips {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			id, err := c.UploadFile(b.Context(), clip, client.UploadOptions{TusThreshold: 1 << 40})
			if err != nil {
				b.Error(err)
			}
			ids[i] = id
		}()
	}
	wg.Wait()
	var first, last time.Time
	for _, id := range ids {
		a, err := c.Wait(b.Context(), id, 20*time.Millisecond)
		if err != nil || a.Status != wire.StatusSucceeded {
			b.Fatalf("asset %s: %s %v", id, a.Status, err)
		}
		if up := *a.UploadedAt; first.IsZero() || up.Before(first) {
			first = up
		}
		for _, s := range a.Steps {
			if s.FinishedAt != nil && s.FinishedAt.After(last) {
				last = *s.FinishedAt
			}
		}
	}
	rate = float64(len(clips)) / last.Sub(first).Seconds()
	// Latency with idle workers: one upload at a time.
	var lat []float64
	for _, clip := range one {
		id, err := c.UploadFile(b.Context(), clip, client.UploadOptions{TusThreshold: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		a, err := c.Wait(b.Context(), id, 20*time.Millisecond)
		if err != nil || a.Status != wire.StatusSucceeded {
			b.Fatalf("asset %s: %s %v", id, a.Status, err)
		}
		var start time.Time
		for _, s := range a.Steps {
			if s.StartedAt != nil && (start.IsZero() || s.StartedAt.Before(start)) {
				start = *s.StartedAt
			}
		}
		lat = append(lat, float64(start.Sub(*a.UploadedAt).Microseconds())/1000)
	}
	b.StopTimer()
	slices.Sort(lat)
	return rate, lat[len(lat)/2], lat[(len(lat)*99)/100]
}
