package ratelimit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/sluice-media/sluice/internal/ratelimit"
)

// A gateway refuses requests over the rate before doing any work,
// keyed by the client's address behind its load balancer.
func Example() {
	limiter := ratelimit.New(ratelimit.Config{Rate: 1, Burst: 2})
	proxies, err := ratelimit.ParseProxies([]string{"10.0.0.0/8"})
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // time.Now() in a server

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := ratelimit.AddrKey(proxies.ClientIP(r))
		if ok, wait := limiter.Allow(key, now); !ok {
			w.Header().Set("Retry-After", ratelimit.RetryAfter(wait))
			http.Error(w, "too many requests", http.StatusTooManyRequests)
			return
		}
		fmt.Fprintln(w, "ok")
	})

	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "10.0.0.1:4321"                 // the load balancer
		r.Header.Set("X-Forwarded-For", "203.0.113.7") // the client it saw
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		fmt.Printf("%d Retry-After: %q\n", w.Code, w.Header().Get("Retry-After"))
	}
	// Output:
	// 200 Retry-After: ""
	// 200 Retry-After: ""
	// 429 Retry-After: "1"
}

func ExampleAddrKey() {
	fmt.Println(ratelimit.AddrKey(netip.MustParseAddr("203.0.113.7")))
	fmt.Println(ratelimit.AddrKey(netip.MustParseAddr("2001:db8:1:2:a:b:c:d")))
	// Output:
	// 203.0.113.7
	// 2001:db8:1:2::/64
}
