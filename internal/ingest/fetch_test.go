package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table; a host with several answer lists gets
// them in turn (the last repeats), to model DNS rebinding.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newFakeResolver(m map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: make(map[string][][]netip.Addr), calls: make(map[string]int)}
	for host, addrs := range m {
		r.add(host, addrs...)
	}
	return r
}

// add appends one answer for host.
func (r *fakeResolver) add(host string, addrs ...string) {
	var as []netip.Addr
	for _, s := range addrs {
		as = append(as, netip.MustParseAddr(s))
	}
	r.answers[host] = append(r.answers[host], as)
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ans, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := r.calls[host]
	r.calls[host]++
	if i >= len(ans) {
		i = len(ans) - 1
	}
	return ans[i], nil
}

func (r *fakeResolver) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

var _ Resolver = (*fakeResolver)(nil)
var _ Resolver = net.DefaultResolver

// loopback is where httptest servers listen.
var loopback = netip.MustParseAddr("127.0.0.1")

// testFetcher returns a Fetcher whose only relaxation is that 127.0.0.1 is
// allowed when reached through one of the named hosts, so a loopback
// httptest server can stand in for a public source while 127.0.0.1 itself,
// and every other name, stays forbidden.
func testFetcher(cfg FetchConfig, res Resolver, hosts ...string) *Fetcher {
	cfg.Resolver = res
	f := NewFetcher(cfg)
	f.exempt = func(host string, a netip.Addr) bool {
		for _, h := range hosts {
			if host == h && a == loopback {
				return true
			}
		}
		return false
	}
	return f
}

// hostURL rewrites srv's URL to reach it through host.
func hostURL(t *testing.T, srv *httptest.Server, host, path string) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + host + ":" + u.Port() + path
}

func TestForbidden(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"8.8.8.8", false},
		{"93.184.215.14", false},
		{"2606:4700:4700::1111", false},
		{"::ffff:8.8.8.8", false},
		{"64:ff9b::808:808", false},
		{"2002:808:808::1", false},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"10.1.2.3", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"127.0.0.1", true},
		{"127.255.0.1", true},
		{"169.254.169.254", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.0.0.8", true},
		{"192.0.2.1", true},
		{"192.168.0.1", true},
		{"198.18.0.1", true},
		{"198.51.100.7", true},
		{"203.0.113.9", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		{"::", true},
		{"::1", true},
		{"::127.0.0.1", true},
		{"::ffff:127.0.0.1", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:10.0.0.1", true},
		{"fc00::1", true},
		{"fd00:ec2::254", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"100::1", true},
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"64:ff9b::a00:1", true},
		{"64:ff9b:1::1", true},
		{"2001:db8::1", true},
		{"2001::1", true},
		{"2002:7f00:1::1", true},
		{"2002:a9fe:a9fe::", true},
		{"3fff::1", true},
	}
	for _, tt := range tests {
		if got := Forbidden(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("Forbidden(%s) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	if !Forbidden(netip.Addr{}) {
		t.Error("Forbidden(zero Addr) = false, want true")
	}
}

func TestParseLegacyIPv4(t *testing.T) {
	tests := []struct {
		host          string
		want          string // "" when not an address
		ok, isNumeric bool
	}{
		{"2130706433", "127.0.0.1", true, true},
		{"0x7f.1", "127.0.0.1", true, true},
		{"0x7f000001", "127.0.0.1", true, true},
		{"0177.0.0.1", "127.0.0.1", true, true},
		{"127.1", "127.0.0.1", true, true},
		{"127.0.1", "127.0.0.1", true, true},
		{"10.0.0.1.", "10.0.0.1", true, true},
		{"0", "0.0.0.0", true, true},
		{"0x", "0.0.0.0", true, true},
		{"0xa9.0376.43518", "169.254.169.254", true, true},
		{"4294967296", "", false, true},
		{"256.0.0.1", "", false, true},
		{"1.2.3.4.5", "", false, true},
		{"foo.123", "", false, true},
		{"099", "", false, true}, // invalid octal, but numeric: refused, never resolved
		{"a.09", "", false, true},
		{"", "", false, false},
		{"example.com", "", false, false},
		{"1.2.3.com", "", false, false},
		{"0x7g", "", false, false},
	}
	for _, tt := range tests {
		got, ok, numeric := parseLegacyIPv4(tt.host)
		if ok != tt.ok || numeric != tt.isNumeric {
			t.Errorf("parseLegacyIPv4(%q) ok, numeric = %v, %v, want %v, %v", tt.host, ok, numeric, tt.ok, tt.isNumeric)
			continue
		}
		if ok && got.String() != tt.want {
			t.Errorf("parseLegacyIPv4(%q) = %s, want %s", tt.host, got, tt.want)
		}
	}
}

func TestFetchRefused(t *testing.T) {
	res := newFakeResolver(map[string][]string{
		"metadata.test":   {"169.254.169.254"},
		"internal.test":   {"10.0.0.5"},
		"mixed.test":      {"93.184.215.14", "10.0.0.1"},
		"v6internal.test": {"fd00::1"},
		"mapped.test":     {"::ffff:192.168.0.1"},
		"nat64.test":      {"64:ff9b::a9fe:a9fe"},
		"localhost.test":  {"127.0.0.1"},
		"cgnat.test":      {"100.64.1.1"},
		"public.test":     {"93.184.215.14"},
		"v6ll.test":       {"fe80::1"},
	})
	f := NewFetcher(FetchConfig{Resolver: res, AllowedSchemes: []string{"https", "http"}})
	tests := []struct {
		url  string
		want error
	}{
		{"ftp://public.test/x", ErrScheme},
		{"file:///etc/passwd", ErrScheme},
		{"gopher://public.test:70/", ErrScheme},
		{"javascript:alert(1)", ErrScheme},
		{"//public.test/x", ErrScheme},
		{"http://user:pass@public.test/", ErrBadURL},
		{"http://user@public.test/", ErrBadURL},
		{"http:///nohost", ErrBadURL},
		{"http://public.test:0/", ErrBadURL},
		{"http://%zz/", ErrBadURL},
		{"http://127.0.0.1/", ErrForbiddenAddress},
		{"http://127.0.0.1:8080/admin", ErrForbiddenAddress},
		{"http://127.1/", ErrForbiddenAddress},
		{"http://2130706433/", ErrForbiddenAddress},
		{"http://0x7f.1/", ErrForbiddenAddress},
		{"http://0x7f000001/", ErrForbiddenAddress},
		{"http://0177.0.0.1/", ErrForbiddenAddress},
		{"http://127.0.0.1./", ErrForbiddenAddress},
		{"http://0/", ErrForbiddenAddress},
		{"http://0.0.0.0/", ErrForbiddenAddress},
		{"http://[::]/", ErrForbiddenAddress},
		{"http://[::1]/", ErrForbiddenAddress},
		{"http://[::1]:8080/", ErrForbiddenAddress},
		{"http://[::ffff:127.0.0.1]/", ErrForbiddenAddress},
		{"http://[::ffff:7f00:1]/", ErrForbiddenAddress},
		{"http://[0:0:0:0:0:ffff:a9fe:a9fe]/", ErrForbiddenAddress},
		{"http://10.0.0.1/", ErrForbiddenAddress},
		{"http://172.16.0.1/", ErrForbiddenAddress},
		{"http://192.168.1.1/", ErrForbiddenAddress},
		{"http://[fc00::1]/", ErrForbiddenAddress},
		{"http://[fd00:ec2::254]/latest/meta-data/", ErrForbiddenAddress},
		{"http://169.254.169.254/latest/meta-data/", ErrForbiddenAddress},
		{"http://0xa9fea9fe/", ErrForbiddenAddress},
		{"http://[fe80::1]/", ErrForbiddenAddress},
		{"http://[fe80::1%25eth0]/", ErrForbiddenAddress},
		{"http://224.0.0.1/", ErrForbiddenAddress},
		{"http://[ff02::1]/", ErrForbiddenAddress},
		{"http://100.64.0.1/", ErrForbiddenAddress},
		{"http://255.255.255.255/", ErrForbiddenAddress},
		{"http://192.0.2.1/", ErrForbiddenAddress},
		{"http://198.51.100.1/", ErrForbiddenAddress},
		{"http://203.0.113.1/", ErrForbiddenAddress},
		{"http://[2001:db8::1]/", ErrForbiddenAddress},
		{"http://[64:ff9b::7f00:1]/", ErrForbiddenAddress},
		{"http://[64:ff9b::a9fe:a9fe]/", ErrForbiddenAddress},
		{"http://[2002:7f00:1::]/", ErrForbiddenAddress},
		{"http://1.2.3.4.5/", ErrForbiddenAddress},
		{"http://foo.0x10/", ErrForbiddenAddress},
		{"http://foo.09/", ErrForbiddenAddress},
		{"http://[::ffff:127.0.0.1%25lo]/", ErrForbiddenAddress},
		{"http://metadata.test/latest/meta-data/", ErrForbiddenAddress},
		{"http://internal.test/", ErrForbiddenAddress},
		{"https://mixed.test/", ErrForbiddenAddress},
		{"http://v6internal.test/", ErrForbiddenAddress},
		{"http://mapped.test/", ErrForbiddenAddress},
		{"http://nat64.test/", ErrForbiddenAddress},
		{"http://localhost.test/", ErrForbiddenAddress},
		{"http://LOCALHOST.test/", ErrForbiddenAddress},
		{"http://cgnat.test/", ErrForbiddenAddress},
		{"http://v6ll.test/", ErrForbiddenAddress},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			resp, err := f.Fetch(context.Background(), tt.url)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("Fetch(%q) succeeded, want refusal", tt.url)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Fetch(%q) error = %v, want %v", tt.url, err, tt.want)
			}
		})
	}
}

func TestFetchOK(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != r.Header.Get("X-Want-Host") && r.Header.Get("X-Want-Host") != "" {
			http.Error(w, "bad host", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "video/mp4")
		w.Header().Set("X-Host", r.Host)
		io.WriteString(w, "media bytes")
	}))
	defer srv.Close()
	res := newFakeResolver(map[string][]string{"public.test": {"127.0.0.1"}})
	f := testFetcher(FetchConfig{}, res, "public.test")

	u := hostURL(t, srv, "public.test", "/a.mp4")
	resp, err := f.Fetch(context.Background(), u)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got, want := string(b), "media bytes"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
	if got, want := resp.ContentType, "video/mp4"; got != want {
		t.Errorf("ContentType = %q, want %q", got, want)
	}
	if got, want := resp.Size, int64(len("media bytes")); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if got, want := resp.URL, u; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}

	// The same server as a bare IP is refused: the exemption is for the name.
	if _, err := f.Fetch(context.Background(), srv.URL); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("Fetch(%s) error = %v, want ErrForbiddenAddress", srv.URL, err)
	}
}

// TestFetchDialsEachPinnedAddress: when the first vetted address does not
// answer, the next one is tried, still without resolving again.
func TestFetchDialsEachPinnedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	// Nothing listens on 127.0.0.2 at the server's port: connection refused.
	res := newFakeResolver(map[string][]string{"dual.test": {"127.0.0.2", "::ffff:127.0.0.1"}})
	f := NewFetcher(FetchConfig{AllowPrivate: true, Resolver: res})
	resp, err := f.Fetch(context.Background(), hostURL(t, srv, "dual.test", "/"))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	resp.Body.Close()
	if got, want := res.count("dual.test"), 1; got != want {
		t.Errorf("resolver called %d times, want %d", got, want)
	}
}

func TestFetchStatus(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	res := newFakeResolver(map[string][]string{"public.test": {"127.0.0.1"}})
	f := testFetcher(FetchConfig{}, res, "public.test")
	_, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/missing"))
	if !errors.Is(err, ErrStatus) {
		t.Fatalf("Fetch error = %v, want ErrStatus", err)
	}
}

func TestFetchRedirects(t *testing.T) {
	var secretHits sync.Map
	secret := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secretHits.Store(r.URL.Path, true)
		io.WriteString(w, "secret")
	}))
	defer secret.Close()
	secretPort := secret.Listener.Addr().(*net.TCPAddr).Port

	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, fmt.Sprintf("http://127.0.0.1:%d/loopback", secretPort), http.StatusFound)
		case "/to-localhost-name":
			http.Redirect(w, r, fmt.Sprintf("http://localhost.test:%d/name", secretPort), http.StatusFound)
		case "/to-decimal":
			http.Redirect(w, r, fmt.Sprintf("http://2130706433:%d/decimal", secretPort), http.StatusFound)
		case "/to-internal":
			http.Redirect(w, r, "http://internal.test/", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
		case "/to-ftp":
			http.Redirect(w, r, "ftp://public.test/file", http.StatusFound)
		case "/to-userinfo":
			http.Redirect(w, r, hostURL(t, srv, "user:pw@public.test", "/ok"), http.StatusFound)
		case "/to-other-host":
			http.Redirect(w, r, hostURL(t, srv, "other.test", "/ok"), http.StatusFound)
		case "/to-ok":
			http.Redirect(w, r, hostURL(t, srv, "cdn.public.test", "/ok"), http.StatusTemporaryRedirect)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/ok":
			io.WriteString(w, "ok")
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	res := newFakeResolver(map[string][]string{
		"public.test":     {"127.0.0.1"},
		"cdn.public.test": {"127.0.0.1"},
		"other.test":      {"127.0.0.1"},
		"localhost.test":  {"127.0.0.1"},
		"internal.test":   {"10.0.0.1"},
	})
	f := testFetcher(FetchConfig{MaxRedirects: 3}, res, "public.test", "cdn.public.test", "other.test")

	tests := []struct {
		path string
		want error
	}{
		{"/to-loopback", ErrForbiddenAddress},
		{"/to-localhost-name", ErrForbiddenAddress},
		{"/to-decimal", ErrForbiddenAddress},
		{"/to-internal", ErrForbiddenAddress},
		{"/to-metadata", ErrForbiddenAddress},
		{"/to-ftp", ErrScheme},
		{"/to-userinfo", ErrBadURL},
		{"/loop", ErrTooManyRedirects},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", tt.path))
			if err == nil {
				resp.Body.Close()
				t.Fatal("Fetch succeeded, want refusal")
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Fetch error = %v, want %v", err, tt.want)
			}
		})
	}
	secretHits.Range(func(k, _ any) bool {
		t.Errorf("redirect target reached: %v", k)
		return true
	})

	t.Run("allowed hop", func(t *testing.T) {
		resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/to-ok"))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		defer resp.Body.Close()
		if got, want := resp.URL, hostURL(t, srv, "cdn.public.test", "/ok"); got != want {
			t.Errorf("final URL = %q, want %q", got, want)
		}
	})

	t.Run("host allowlist on hop", func(t *testing.T) {
		f := testFetcher(FetchConfig{AllowedHosts: []string{"public.test"}}, res, "public.test", "other.test")
		_, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/to-other-host"))
		if !errors.Is(err, ErrHostNotAllowed) {
			t.Fatalf("Fetch error = %v, want ErrHostNotAllowed", err)
		}
	})

	t.Run("no redirects", func(t *testing.T) {
		f := testFetcher(FetchConfig{MaxRedirects: -1}, res, "public.test", "cdn.public.test")
		_, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/to-ok"))
		if !errors.Is(err, ErrTooManyRedirects) {
			t.Fatalf("Fetch error = %v, want ErrTooManyRedirects", err)
		}
	})
}

func TestFetchSizeLimit(t *testing.T) {
	payload := strings.Repeat("x", 2000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(payload)
		if r.URL.Query().Get("n") != "" {
			fmt.Sscan(r.URL.Query().Get("n"), &n)
		}
		if r.URL.Path == "/chunked" {
			// Flushing before writing forces chunked encoding: no
			// Content-Length, so only the body reader can enforce the limit.
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, payload[:n])
	}))
	defer srv.Close()
	res := newFakeResolver(map[string][]string{"public.test": {"127.0.0.1"}})
	f := testFetcher(FetchConfig{MaxBytes: 1000}, res, "public.test")

	t.Run("declared", func(t *testing.T) {
		_, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/sized"))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Fetch error = %v, want ErrTooLarge", err)
		}
	})
	t.Run("streamed", func(t *testing.T) {
		resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/chunked"))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		defer resp.Body.Close()
		if got, want := resp.Size, int64(-1); got != want {
			t.Errorf("Size = %d, want %d", got, want)
		}
		b, err := io.ReadAll(resp.Body)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("read error = %v, want ErrTooLarge", err)
		}
		if len(b) > 1000 {
			t.Errorf("read %d bytes, limit 1000", len(b))
		}
	})
	for _, path := range []string{"/sized?n=1000", "/chunked?n=1000"} {
		t.Run("exactly the limit "+path, func(t *testing.T) {
			resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", path))
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if got, want := len(b), 1000; got != want {
				t.Errorf("read %d bytes, want %d", got, want)
			}
		})
	}
}

func TestFetchTimeout(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	res := newFakeResolver(map[string][]string{"public.test": {"127.0.0.1"}})
	f := testFetcher(FetchConfig{Timeout: 200 * time.Millisecond}, res, "public.test")

	t.Run("headers", func(t *testing.T) {
		start := time.Now()
		_, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/slow-headers"))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch error = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Fetch took %v", d)
		}
	})
	t.Run("body", func(t *testing.T) {
		resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/slow-body"))
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		defer resp.Body.Close()
		start := time.Now()
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Fatal("read succeeded, want timeout")
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("read took %v", d)
		}
	})
	t.Run("caller context", func(t *testing.T) {
		f := testFetcher(FetchConfig{}, res, "public.test")
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := f.Fetch(ctx, hostURL(t, srv, "public.test", "/slow-headers")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Fetch error = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestFetchAllowedHosts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	names := []string{"media.example.test", "a.cdn.example.test", "b.a.cdn.example.test", "cdn.example.test", "evil.test", "cdn.example.test.evil.test", "xcdn.example.test"}
	m := make(map[string][]string)
	for _, n := range names {
		m[n] = []string{"127.0.0.1"}
	}
	f := testFetcher(FetchConfig{AllowedHosts: []string{"Media.Example.Test", "*.cdn.example.test"}}, newFakeResolver(m), names...)

	tests := []struct {
		host string
		want error
	}{
		{"media.example.test", nil},
		{"MEDIA.example.test", nil},
		{"a.cdn.example.test", nil},
		{"b.a.cdn.example.test", nil},
		{"cdn.example.test", ErrHostNotAllowed},
		{"xcdn.example.test", ErrHostNotAllowed},
		{"evil.test", ErrHostNotAllowed},
		{"cdn.example.test.evil.test", ErrHostNotAllowed},
		{"127.0.0.1", ErrHostNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			resp, err := f.Fetch(context.Background(), hostURL(t, srv, tt.host, "/"))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				resp.Body.Close()
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Fetch error = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestFetchDNSRebinding: the name resolves to an allowed address when
// checked and to a forbidden one afterwards. The connection must use the
// checked address, and a later hop to the same name must see, and refuse,
// the new answer.
func TestFetchDNSRebinding(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/again" {
			// A fresh connection to the same name, after a rebinding.
			w.Header().Set("Connection", "close")
			http.Redirect(w, r, hostURL(t, srv, "rebind.test", "/ok"), http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	res := newFakeResolver(nil)
	res.add("rebind.test", "127.0.0.1")
	res.add("rebind.test", "10.0.0.1")
	f := testFetcher(FetchConfig{}, res, "rebind.test")

	resp, err := f.Fetch(context.Background(), hostURL(t, srv, "rebind.test", "/"))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "ok" {
		t.Fatalf("body = %q, %v; want ok", b, err)
	}
	if got, want := res.count("rebind.test"), 1; got != want {
		t.Errorf("resolver called %d times, want %d (the dial must not resolve again)", got, want)
	}

	// The second hop re-resolves, now to 10.0.0.1, and is refused.
	_, err = f.Fetch(context.Background(), hostURL(t, srv, "rebind.test", "/again"))
	if !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("Fetch after rebinding error = %v, want ErrForbiddenAddress", err)
	}
}

func TestDialControl(t *testing.T) {
	f := NewFetcher(FetchConfig{})
	pinned := netip.MustParseAddr("93.184.215.14")
	ctl := f.control("public.test", pinned)
	if err := ctl("tcp4", "93.184.215.14:443", nil); err != nil {
		t.Errorf("control(pinned) = %v, want nil", err)
	}
	for _, addr := range []string{"10.0.0.1:443", "93.184.215.15:443", "[::1]:443", "nonsense"} {
		if err := ctl("tcp", addr, nil); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("control(%s) = %v, want ErrForbiddenAddress", addr, err)
		}
	}
	// A pinned address that is itself forbidden is refused at the socket too.
	ctl = f.control("internal.test", netip.MustParseAddr("10.0.0.1"))
	if err := ctl("tcp4", "10.0.0.1:80", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(forbidden pinned) = %v, want ErrForbiddenAddress", err)
	}
}

// TestFetchTLS: the dial goes to the pinned IP while TLS verifies the
// certificate against the URL's host name.
func TestFetchTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.ServerName)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	res := newFakeResolver(map[string][]string{
		"example.com": {"127.0.0.1"}, // in httptest's certificate
		"public.test": {"127.0.0.1"}, // not in it
	})
	f := testFetcher(FetchConfig{}, res, "example.com", "public.test")
	f.tlsConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}

	resp, err := f.Fetch(context.Background(), hostURL(t, srv, "example.com", "/"))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(b), "example.com"; got != want {
		t.Errorf("server saw SNI %q, want %q", got, want)
	}

	_, err = f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/"))
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) {
		t.Fatalf("Fetch(public.test) error = %v, want a certificate verification error", err)
	}
}

func TestFetchNoProxyFromEnv(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://10.0.0.1:3128")
	t.Setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "direct")
	}))
	defer srv.Close()
	res := newFakeResolver(map[string][]string{"public.test": {"127.0.0.1"}})
	f := testFetcher(FetchConfig{Timeout: 5 * time.Second}, res, "public.test")
	resp, err := f.Fetch(context.Background(), hostURL(t, srv, "public.test", "/"))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	resp.Body.Close()
}

func TestAllowPrivate(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	f := NewFetcher(FetchConfig{AllowPrivate: true})
	resp, err := f.Fetch(context.Background(), srv.URL)
	if err != nil {
		t.Fatalf("Fetch with AllowPrivate: %v", err)
	}
	resp.Body.Close()
}

func TestValidate(t *testing.T) {
	bad := []FetchConfig{
		{MaxBytes: -1},
		{Timeout: -1},
		{AllowedSchemes: []string{"ftp"}},
		{AllowedHosts: []string{"*"}},
		{AllowedHosts: []string{"a.*.com"}},
		{AllowedHosts: []string{"http://x.com"}},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", c)
		}
		if _, err := NewFetcher(c).Fetch(context.Background(), "https://example.com/"); err == nil {
			t.Errorf("Fetch with invalid config %+v succeeded", c)
		}
	}
	if err := (FetchConfig{}).Validate(); err != nil {
		t.Errorf("Validate(zero) = %v", err)
	}
}

// fuzzResolver derives a deterministic answer, forbidden or not, from the
// host name.
type fuzzResolver struct{}

var fuzzAnswers = []netip.Addr{
	netip.MustParseAddr("93.184.215.14"),
	netip.MustParseAddr("127.0.0.1"),
	netip.MustParseAddr("10.0.0.1"),
	netip.MustParseAddr("169.254.169.254"),
	netip.MustParseAddr("2606:4700::1"),
	netip.MustParseAddr("::1"),
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("::ffff:192.168.1.1"),
	netip.MustParseAddr("64:ff9b::a9fe:a9fe"),
	netip.MustParseAddr("8.8.8.8"),
}

func (fuzzResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var h uint32 = 2166136261
	for i := 0; i < len(host); i++ {
		h = (h ^ uint32(host[i])) * 16777619
	}
	n := 1 + int(h>>16)%2
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = fuzzAnswers[int(h>>uint(4*i))%len(fuzzAnswers)]
	}
	return out, nil
}

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a.mp4",
		"http://127.0.0.1/",
		"http://2130706433/",
		"http://0x7f.1/",
		"http://0177.0.0.1/",
		"http://[::ffff:127.0.0.1]/",
		"http://[fe80::1%25eth0]/",
		"http://[64:ff9b::a9fe:a9fe]/",
		"http://[2002:7f00:1::]/",
		"http://user:pw@example.com/",
		"ftp://example.com/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[fd00:ec2::254]/",
		"http://8.8.8.8/",
		"http://1.2.3.4.5/",
		"HTTP://EXAMPLE.COM./",
		"http://example.com:65536/",
	} {
		f.Add(s)
	}
	fetcher := NewFetcher(FetchConfig{Resolver: fuzzResolver{}})
	f.Fuzz(func(t *testing.T, raw string) {
		u, addrs, err := fetcher.checkURL(context.Background(), raw)
		if err != nil {
			return
		}
		if len(addrs) == 0 {
			t.Fatalf("%q: accepted with no address to dial", raw)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("%q: accepted scheme %q", raw, u.Scheme)
		}
		if u.User != nil {
			t.Fatalf("%q: accepted userinfo", raw)
		}
		for _, addr := range addrs {
			if Forbidden(addr) {
				t.Fatalf("%q: accepted forbidden address %s", raw, addr)
			}
			// Cross-check against the standard library's classification.
			ip := net.IP(addr.AsSlice())
			if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsMulticast() ||
				ip.IsUnspecified() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() {
				t.Fatalf("%q: accepted %s, which net.IP classes as internal", raw, addr)
			}
			// The dial must be able to use exactly this address.
			if addr != addr.Unmap() || addr.Zone() != "" {
				t.Fatalf("%q: pinned address %s is not in dialable form", raw, addr)
			}
		}
	})
}

// ExampleFetcher shows the ingest handler's use: fetch, then stream the body
// into storage, which sees ErrTooLarge if the source outgrows MaxBytes.
func ExampleFetcher() {
	f := NewFetcher(FetchConfig{
		MaxBytes:     2 << 30,
		Timeout:      10 * time.Minute,
		AllowedHosts: []string{"media.example.com", "*.cdn.example.com"},
	})
	resp, err := f.Fetch(context.Background(), "https://media.example.com/talk.mp4")
	if err != nil {
		switch {
		case errors.Is(err, ErrForbiddenAddress), errors.Is(err, ErrHostNotAllowed), errors.Is(err, ErrScheme):
			// 422 with a fixed message; log err for operators.
		}
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
}
