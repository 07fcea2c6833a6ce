package ai

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-media/sluice/internal/ai/aitest"
)

// BenchmarkGatewayOverhead measures what the gateway adds to a call:
// each iteration makes the same call directly to a provider and through
// the gateway (cache off, so the provider is called every time), in
// alternating order, and reports the medians and their difference. Two
// providers: a trivial in-process one (the gateway's own cost) and the
// OpenAI provider against the local fake OpenAI server (a direct HTTP
// call to the same fake, as the issue asks).
func BenchmarkGatewayOverhead(b *testing.B) {
	ctx := context.Background()

	b.Run("in-process", func(b *testing.B) {
		p := &gwProvider{name: "p", fn: func(context.Context, int) (string, Usage, error) {
			return "text", Usage{Images: 1}, nil
		}}
		g := benchGateway(b, gwChain(TaskOCR, Limits{}, "p"), nil, p)
		req := OCRRequest{Image: gwImage("a small frame")}
		benchPair(b,
			func() error { _, _, err := p.OCR(ctx, req); return err },
			func() error { _, _, err := g.OCR(ctx, req, Call{AssetID: "a"}); return err })
	})

	b.Run("openai-http", func(b *testing.B) {
		srv := aitest.NewOpenAI(b, aitest.OpenAIOptions{APIKey: "bench-key"})
		o, err := NewOpenAI(ProviderConfig{Name: "openai", Type: "openai", BaseURL: srv.URL + "/v1", APIKey: "bench-key"})
		if err != nil {
			b.Fatal(err)
		}
		g := benchGateway(b, gwChain(TaskSummarize, Limits{}, "openai"), nil, o)
		req := SummarizeRequest{Text: "A short transcript to summarize.", MaxTokens: 64}
		benchPair(b,
			func() error { _, _, err := o.Summarize(ctx, req); return err },
			func() error { _, _, err := g.Summarize(ctx, req, Call{AssetID: "a"}); return err })
	})
}

// BenchmarkGatewayCacheHit measures a call answered from the file cache:
// hashing the request, one cache read, decoding the result.
func BenchmarkGatewayCacheHit(b *testing.B) {
	ctx := context.Background()
	cache, err := NewFileCache(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	p := &gwProvider{name: "p"}
	g := benchGateway(b, gwChain(TaskOCR, Limits{}, "p"), cache, p)
	// A 100 KB frame: the request's content is hashed on every call.
	req := OCRRequest{Image: Image{Data: make([]byte, 100<<10), ContentType: "image/jpeg"}}
	if _, _, err := g.OCR(ctx, req, Call{}); err != nil {
		b.Fatal(err)
	}
	times := make([]float64, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		_, meta, err := g.OCR(ctx, req, Call{})
		times = append(times, float64(time.Since(start).Nanoseconds()))
		if err != nil || !meta.Cached {
			b.Fatalf("err %v, cached %v", err, meta.Cached)
		}
	}
	if p.calls.Load() != 1 {
		b.Fatalf("provider called %d times, want 1", p.calls.Load())
	}
	b.ReportMetric(benchMedian(times)/1e3, "hit-median-µs")
}

func benchGateway(b *testing.B, cfg Config, cache Cache, providers ...Provider) *Gateway {
	b.Helper()
	g, err := New(cfg, providers, cache, prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// benchPair times direct and gateway calls, alternating which goes
// first, and reports both medians and the gateway's overhead.
func benchPair(b *testing.B, direct, gateway func() error) {
	b.Helper()
	for range 20 { // warm up connections and pools
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		if err := gateway(); err != nil {
			b.Fatal(err)
		}
	}
	var d, g []float64
	timed := func(f func() error, into *[]float64) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*into = append(*into, float64(time.Since(start).Nanoseconds()))
	}
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			timed(direct, &d)
			timed(gateway, &g)
		} else {
			timed(gateway, &g)
			timed(direct, &d)
		}
		i++
	}
	md, mg := benchMedian(d), benchMedian(g)
	b.ReportMetric(md/1e3, "direct-median-µs")
	b.ReportMetric(mg/1e3, "gateway-median-µs")
	b.ReportMetric((mg-md)/1e3, "overhead-median-µs")
	if testing.Verbose() {
		fmt.Printf("direct %.1f µs, gateway %.1f µs, overhead %.1f µs over %d pairs\n", md/1e3, mg/1e3, (mg-md)/1e3, len(d))
	}
}

func benchMedian(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
