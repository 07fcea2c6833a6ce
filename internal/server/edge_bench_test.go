package server

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkEdgePolicy measures what the edge's policy costs a request:
// GET /v1/pipelines on loopback, alternately without a key (dev mode:
// no key lookup, no per-key bucket) and with an API key (hash, store
// lookup, scope check, per-key token bucket). Both pass the per-address
// limiter. It reports the median of each and their ratio; ns/op is one
// pair.
func BenchmarkEdgePolicy(b *testing.B) {
	cfg := testConfig(b)
	cfg.Dev = true
	cfg.Limits.IPRate, cfg.Limits.KeyRate = 1e9, 1e9 // measure, never refuse
	h := start(b, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(auth string) time.Duration {
		req, _ := http.NewRequest("GET", h.URL()+"/v1/pipelines", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %s", resp.Status)
		}
		return time.Since(start)
	}
	for range 200 { // warm up connections and caches
		get("")
		get("Bearer " + testToken)
	}
	var open, keyed []float64
	b.ResetTimer()
	for range b.N {
		open = append(open, ms(get("")))
		keyed = append(keyed, ms(get("Bearer "+testToken)))
	}
	b.StopTimer()
	o, k := median(open), median(keyed)
	b.ReportMetric(o*1000, "open-µs")
	b.ReportMetric(k*1000, "keyed-µs")
	b.ReportMetric((k-o)*1000, "policy-µs")
	b.ReportMetric(k/o, "keyed/open")
}
