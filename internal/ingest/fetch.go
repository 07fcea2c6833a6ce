// Package ingest fetches source media from remote URLs for URL ingest
// (POST /v1/assets with source_url) without letting a caller use Sluice to
// reach addresses inside its own network (SSRF).
//
// A Fetcher checks the scheme, refuses userinfo, applies an optional host
// allowlist, resolves the host and refuses every address that is not
// ordinary public unicast (see Forbidden). The connection is then pinned to
// the address it checked: the dialer never resolves again, so a DNS answer
// that changes between check and connect (DNS rebinding) cannot redirect it,
// and a Control hook verifies the socket's actual remote address. Every
// redirect hop is checked the same way. TLS still verifies the hostname.
package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors; test with errors.Is. Messages wrap the URL or host the
// caller gave and, for ErrForbiddenAddress, the resolved IP: that is meant
// for operators' logs. The HTTP layer should answer users with a fixed
// message per sentinel rather than err.Error(), since the resolved IP of a
// name the user supplied can reveal internal addressing.
var (
	ErrForbiddenAddress = errors.New("ingest: forbidden address")
	ErrScheme           = errors.New("ingest: scheme not allowed")
	ErrHostNotAllowed   = errors.New("ingest: host not allowed")
	ErrTooLarge         = errors.New("ingest: source too large")
	ErrTooManyRedirects = errors.New("ingest: too many redirects")
	ErrBadURL           = errors.New("ingest: invalid source url")
	ErrStatus           = errors.New("ingest: source answered with an error status")
)

// Resolver looks up a host's addresses. *net.Resolver satisfies it; tests
// pass a fake.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Defaults applied by NewFetcher to zero fields.
const (
	DefaultMaxBytes     int64 = 1 << 30 // 1 GiB
	DefaultTimeout            = 5 * time.Minute
	DefaultMaxRedirects       = 5
)

// Fixed phase timeouts; the whole fetch is further bounded by Timeout.
const (
	dialTimeout   = 10 * time.Second
	tlsTimeout    = 10 * time.Second
	headerTimeout = 30 * time.Second
	maxHeaderSize = 64 << 10
)

// FetchConfig configures a Fetcher. The zero value is usable: defaults are
// noted per field.
type FetchConfig struct {
	// MaxBytes bounds the body; reading past it fails with ErrTooLarge.
	// Default DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds the whole fetch, body included. Default DefaultTimeout.
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed. 0 means
	// DefaultMaxRedirects; negative means none.
	MaxRedirects int
	// AllowedSchemes, lower case. Default https and http. Only http and
	// https are supported.
	AllowedSchemes []string
	// AllowedHosts, when not empty, is the only hosts fetched: exact names
	// ("media.example.com") or wildcards ("*.example.com", any depth of
	// subdomain, not example.com itself). Checked on every hop. Address
	// checks still apply to allowed hosts.
	AllowedHosts []string
	// AllowPrivate DISABLES THE SSRF ADDRESS CHECKS: loopback, private,
	// link-local and cloud metadata addresses become reachable. For tests
	// only; never set it in a deployment that takes URLs from users.
	AllowPrivate bool
	// Resolver resolves hosts. Default net.DefaultResolver.
	Resolver Resolver
}

// Validate reports a configuration that cannot be used.
func (c FetchConfig) Validate() error {
	if c.MaxBytes < 0 {
		return errors.New("ingest: MaxBytes must not be negative")
	}
	if c.Timeout < 0 {
		return errors.New("ingest: Timeout must not be negative")
	}
	for _, s := range c.AllowedSchemes {
		if s != "http" && s != "https" {
			return fmt.Errorf("ingest: unsupported scheme %q in AllowedSchemes", s)
		}
	}
	for _, h := range c.AllowedHosts {
		name := strings.TrimPrefix(h, "*.")
		if name == "" || strings.Contains(name, "*") || strings.ContainsAny(name, "/:@ ") {
			return fmt.Errorf("ingest: invalid AllowedHosts entry %q", h)
		}
	}
	return nil
}

// Fetcher fetches remote sources safely. It is safe for concurrent use.
type Fetcher struct {
	cfg      FetchConfig
	err      error
	schemes  map[string]bool
	resolver Resolver

	// Test hooks, unset in production.
	exempt    func(host string, a netip.Addr) bool // allow one forbidden address for one name
	tlsConfig *tls.Config
}

// NewFetcher returns a Fetcher for cfg with defaults filled in. An invalid
// cfg (see Validate) makes every Fetch fail with the validation error.
func NewFetcher(cfg FetchConfig) *Fetcher {
	f := &Fetcher{err: cfg.Validate()}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRedirects == 0 {
		cfg.MaxRedirects = DefaultMaxRedirects
	} else if cfg.MaxRedirects < 0 {
		cfg.MaxRedirects = 0
	}
	if len(cfg.AllowedSchemes) == 0 {
		cfg.AllowedSchemes = []string{"https", "http"}
	}
	f.schemes = make(map[string]bool, len(cfg.AllowedSchemes))
	for _, s := range cfg.AllowedSchemes {
		f.schemes[s] = true
	}
	f.resolver = cfg.Resolver
	if f.resolver == nil {
		f.resolver = net.DefaultResolver
	}
	f.cfg = cfg
	return f
}

// Response is a fetched source. The caller must close Body.
type Response struct {
	// Body yields at most MaxBytes bytes, then fails with ErrTooLarge.
	Body io.ReadCloser
	// ContentType is the server's Content-Type header: a hint, not to be
	// trusted for type decisions.
	ContentType string
	// Size is the declared Content-Length, or -1 when unknown. A hint: Body
	// enforces MaxBytes whatever it says.
	Size int64
	// URL is the final URL after redirects.
	URL string
}

// Fetch GETs rawURL and returns the response once its headers arrive. Only
// 2xx answers are returned; others fail with ErrStatus. Timeout keeps
// running while Body is read.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) (*Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	pins := &pinTable{m: make(map[string][]netip.Addr)}
	u, addrs, err := f.checkURL(ctx, rawURL)
	if err != nil {
		cancel()
		return nil, err
	}
	pins.set(u.Hostname(), addrs)

	tr := f.transport(pins)
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > f.cfg.MaxRedirects {
				return fmt.Errorf("%w: more than %d following %s", ErrTooManyRedirects, f.cfg.MaxRedirects, rawURL)
			}
			addrs, err := f.check(req.Context(), req.URL)
			if err != nil {
				return err
			}
			pins.set(req.URL.Hostname(), addrs)
			return nil
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	req.Header.Set("User-Agent", "sluice-ingest/1")
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		tr.CloseIdleConnections()
		return nil, err
	}
	done := func() {
		cancel()
		tr.CloseIdleConnections()
	}
	final := resp.Request.URL.String()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		resp.Body.Close()
		done()
		return nil, fmt.Errorf("%w: %s from %s", ErrStatus, resp.Status, final)
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		resp.Body.Close()
		done()
		return nil, fmt.Errorf("%w: %s declares %d bytes, limit %d", ErrTooLarge, final, resp.ContentLength, f.cfg.MaxBytes)
	}
	return &Response{
		Body:        &body{rc: resp.Body, left: f.cfg.MaxBytes, max: f.cfg.MaxBytes, done: done},
		ContentType: resp.Header.Get("Content-Type"),
		Size:        resp.ContentLength,
		URL:         final,
	}, nil
}

// transport builds a per-fetch transport whose dialer only connects to the
// addresses pinned for this fetch.
func (f *Fetcher) transport(pins *pinTable) *http.Transport {
	var tlsConf *tls.Config
	if f.tlsConfig != nil {
		tlsConf = f.tlsConfig.Clone()
	}
	return &http.Transport{
		Proxy:                  nil, // never from the environment
		DialContext:            f.dialContext(pins),
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    tlsTimeout,
		ResponseHeaderTimeout:  headerTimeout,
		MaxResponseHeaderBytes: maxHeaderSize,
		ForceAttemptHTTP2:      true,
		DisableCompression:     true, // store the source's bytes as served; no gzip inflation
		MaxIdleConnsPerHost:    1,
	}
}

// Client returns an HTTP client for other requests to URLs users chose
// (webhook deliveries): each connection resolves and checks its host as
// Fetch checks a hop (allowlist, forbidden addresses) and connects only
// to an address it checked. It follows no redirects.
func (f *Fetcher) Client() *http.Client {
	t := f.transport(nil)
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if f.err != nil {
			return nil, f.err
		}
		return f.dialContext(&pinTable{m: make(map[string][]netip.Addr)})(ctx, network, addr)
	}
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// dialContext dials the addresses pinned for the requested host, in order,
// until one connects. The transport passes the URL's host, so TLS SNI and
// verification use the name, not the address.
func (f *Fetcher) dialContext(pins *pinTable) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
		}
		host = strings.ToLower(host)
		addrs, ok := pins.get(host)
		if !ok {
			// Every hop is checked and pinned before its request; a miss means
			// the transport spelled the host differently (IDNA). Check it
			// here, allowlist included, so the dial still uses only addresses
			// this code vetted.
			if !f.hostAllowed(host) {
				return nil, fmt.Errorf("%w: %s", ErrHostNotAllowed, host)
			}
			addrs, err = f.checkHost(ctx, host)
			if err != nil {
				return nil, err
			}
			pins.set(host, addrs)
		}
		var errs []error
		for _, ip := range addrs {
			d := net.Dialer{Timeout: dialTimeout, Control: f.control(host, ip)}
			conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return nil, errors.Join(errs...)
	}
}

// control verifies the socket's remote address just before connect: it must
// be the pinned address, and still allowed.
func (f *Fetcher) control(host string, pinned netip.Addr) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot parse dial address %q for %s", ErrForbiddenAddress, address, host)
		}
		a := ap.Addr().Unmap()
		if a != pinned.Unmap() || !f.allowed(host, a) {
			return fmt.Errorf("%w: %s would connect to %s", ErrForbiddenAddress, host, a)
		}
		return nil
	}
}

// Check applies the checks Fetch applies to rawURL's first hop (scheme,
// host allowlist, resolved addresses) without fetching, so that a
// caller can refuse a request at once. Fetch checks again, and pins
// what it checked.
func (f *Fetcher) Check(ctx context.Context, rawURL string) error {
	if f.err != nil {
		return f.err
	}
	_, _, err := f.checkURL(ctx, rawURL)
	return err
}

// checkURL parses rawURL and checks it as the first hop.
func (f *Fetcher) checkURL(ctx context.Context, rawURL string) (*url.URL, []netip.Addr, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	addrs, err := f.check(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	return u, addrs, nil
}

// check applies every URL check and returns the addresses to pin.
func (f *Fetcher) check(ctx context.Context, u *url.URL) ([]netip.Addr, error) {
	if !f.schemes[u.Scheme] || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("%w: %q in %s", ErrScheme, u.Scheme, u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in url", ErrBadURL)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("%w: opaque url %s", ErrBadURL, u)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("%w: no host in %s", ErrBadURL, u)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: bad port in %s", ErrBadURL, u)
		}
	}
	if !f.hostAllowed(host) {
		return nil, fmt.Errorf("%w: %s", ErrHostNotAllowed, host)
	}
	return f.checkHost(ctx, host)
}

// hostAllowed applies the optional allowlist.
func (f *Fetcher) hostAllowed(host string) bool {
	if len(f.cfg.AllowedHosts) == 0 {
		return true
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	for _, p := range f.cfg.AllowedHosts {
		p = strings.TrimSuffix(strings.ToLower(p), ".")
		if suffix, ok := strings.CutPrefix(p, "*."); ok {
			if strings.HasSuffix(h, "."+suffix) {
				return true
			}
		} else if h == p {
			return true
		}
	}
	return false
}

// checkHost turns host into vetted, unmapped addresses to dial: an IP
// literal (in any form a resolver might accept) is checked as is; a name is
// resolved and refused if any of its addresses is forbidden, since an
// attacker controlling the name chooses the order.
func (f *Fetcher) checkHost(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.ToLower(host)
	if a, err := netip.ParseAddr(host); err == nil {
		if !f.allowed(host, a) {
			return nil, fmt.Errorf("%w: %s", ErrForbiddenAddress, host)
		}
		return []netip.Addr{a.Unmap()}, nil
	}
	if a, ok, numeric := parseLegacyIPv4(host); numeric {
		if !ok {
			return nil, fmt.Errorf("%w: ambiguous numeric host %q", ErrForbiddenAddress, host)
		}
		if !f.allowed(host, a) {
			return nil, fmt.Errorf("%w: %s is %s", ErrForbiddenAddress, host, a)
		}
		return []netip.Addr{a}, nil
	}
	if strings.Contains(host, "%") {
		return nil, fmt.Errorf("%w: zone in host %q", ErrForbiddenAddress, host)
	}
	addrs, err := f.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("ingest: resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("ingest: resolve %s: no addresses", host)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if !f.allowed(host, a) {
			return nil, fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, host, a)
		}
		if a = a.Unmap(); !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *Fetcher) allowed(host string, a netip.Addr) bool {
	if f.cfg.AllowPrivate {
		return true
	}
	if f.exempt != nil && f.exempt(host, a.Unmap()) {
		return true
	}
	return !Forbidden(a)
}

// parseLegacyIPv4 reads host the way inet_aton and the WHATWG URL standard
// do: one to four dot-separated parts in decimal, octal (leading 0) or hex
// (0x), the last part filling the remaining bytes, so "2130706433",
// "0x7f.1" and "0177.0.0.1" are all 127.0.0.1. numeric reports whether the
// host's last label is a number, in which case a name lookup could treat it
// as an address and ok=false means it must be refused.
func parseLegacyIPv4(host string) (a netip.Addr, ok, numeric bool) {
	h := strings.TrimSuffix(host, ".")
	parts := strings.Split(h, ".")
	last := parts[len(parts)-1]
	// As WHATWG's "ends in a number": all digits (even "09", not valid
	// octal) or a valid 0x number.
	if _, isNum := parseNum(last); !isNum && (last == "" || strings.Trim(last, "0123456789") != "") {
		return netip.Addr{}, false, false
	}
	if len(parts) > 4 {
		return netip.Addr{}, false, true
	}
	var v uint64
	for i, p := range parts {
		n, isNum := parseNum(p)
		if !isNum {
			return netip.Addr{}, false, true
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false, true
			}
			v = v<<8 | n
			continue
		}
		rest := uint(4 - i) // bytes the last part fills
		if n >= 1<<(8*rest) {
			return netip.Addr{}, false, true
		}
		v = v<<(8*rest) | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, true
}

// parseNum parses one legacy IPv4 part; values are capped so they cannot
// overflow.
func parseNum(s string) (uint64, bool) {
	base := 10
	switch {
	case s == "":
		return 0, false
	case len(s) >= 2 && (s[:2] == "0x" || s[:2] == "0X"):
		s, base = s[2:], 16
		if s == "" {
			return 0, true // "0x" is zero to WHATWG
		}
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return 1 << 40, true // numeric, too big for any part
		}
		return 0, false
	}
	if n > 1<<40 {
		n = 1 << 40
	}
	return n, true
}

var (
	// forbidden4 lists IPv4 ranges that are not public unicast.
	forbidden4 = prefixes(
		"0.0.0.0/8",          // "this network", incl. unspecified
		"10.0.0.0/8",         // RFC 1918
		"100.64.0.0/10",      // CGNAT
		"127.0.0.0/8",        // loopback
		"169.254.0.0/16",     // link-local, incl. cloud metadata 169.254.169.254
		"172.16.0.0/12",      // RFC 1918
		"192.0.0.0/24",       // IETF protocol assignments
		"192.0.2.0/24",       // documentation
		"192.88.99.0/24",     // 6to4 relay anycast
		"192.168.0.0/16",     // RFC 1918
		"198.18.0.0/15",      // benchmarking
		"198.51.100.0/24",    // documentation
		"203.0.113.0/24",     // documentation
		"224.0.0.0/4",        // multicast
		"240.0.0.0/4",        // reserved, incl. broadcast
		"255.255.255.255/32", // broadcast (inside 240/4; listed for clarity)
	)
	// IPv6 must be global unicast (2000::/3), which already excludes ::,
	// ::1, ULA fc00::/7 (incl. fd00:ec2::254), link-local fe80::/10,
	// site-local, multicast ff00::/8, discard 100::/64, local-use NAT64
	// 64:ff9b:1::/48 and the deprecated IPv4-compatible ::/96. These are
	// carved out of 2000::/3:
	global6    = netip.MustParsePrefix("2000::/3")
	forbidden6 = prefixes("2001::/23", "2001:db8::/32", "3fff::/20") // IETF protocol (Teredo, benchmarking, ORCHID), documentation
	nat64      = netip.MustParsePrefix("64:ff9b::/96")               // well-known NAT64: checks the embedded IPv4
	sixToFour  = netip.MustParsePrefix("2002::/16")                  // 6to4: checks the embedded IPv4
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Forbidden reports whether a is anything but public unicast: loopback,
// private (RFC 1918, ULA), link-local (incl. cloud metadata), multicast,
// unspecified, CGNAT, broadcast, reserved, documentation and benchmarking
// ranges, and the IPv4-mapped, NAT64 and 6to4 forms of forbidden IPv4
// addresses. Addresses with a zone are forbidden.
func Forbidden(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return true
	}
	a = a.Unmap()
	if a.Is4() {
		for _, p := range forbidden4 {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	b := a.As16()
	if nat64.Contains(a) {
		return Forbidden(netip.AddrFrom4([4]byte(b[12:16])))
	}
	if !global6.Contains(a) {
		return true
	}
	if sixToFour.Contains(a) && Forbidden(netip.AddrFrom4([4]byte(b[2:6]))) {
		return true
	}
	for _, p := range forbidden6 {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// pinTable maps a host name to the address vetted for it in one fetch.
type pinTable struct {
	mu sync.Mutex
	m  map[string][]netip.Addr
}

func (p *pinTable) set(host string, a []netip.Addr) {
	p.mu.Lock()
	p.m[strings.ToLower(host)] = a
	p.mu.Unlock()
}

func (p *pinTable) get(host string) ([]netip.Addr, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.m[strings.ToLower(host)]
	return a, ok
}

// body bounds a response body to max bytes and releases the fetch's
// context and connections on Close.
type body struct {
	rc   io.ReadCloser
	left int64
	max  int64
	err  error
	once sync.Once
	done func()
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	// Read one byte past the limit so an oversized body is detected rather
	// than silently truncated.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		b.err = fmt.Errorf("%w: more than %d bytes", ErrTooLarge, b.max)
		return n, b.err
	}
	b.left -= int64(n)
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.once.Do(b.done)
	return err
}
