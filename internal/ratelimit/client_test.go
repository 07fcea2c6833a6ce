package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/ratelimit"
)

// trusted is the proxy set most cases use.
var trusted = []string{"10.0.0.0/8", "192.168.1.1", "2001:db8:ffff::/48", " ::ffff:172.16.0.0/108 "}

func proxies(t testing.TB, list []string) ratelimit.Proxies {
	t.Helper()
	p, err := ratelimit.ParseProxies(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func request(remote string, xff, fwd []string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	for _, v := range fwd {
		r.Header.Add("Forwarded", v)
	}
	return r
}

func TestClientIP(t *testing.T) {
	const proxy = "10.0.0.1:4321"
	for _, tc := range []struct {
		name    string
		proxies []string
		remote  string
		xff     []string
		fwd     []string
		want    string // "" for the zero Addr
	}{
		// No trusted proxies: headers are never read.
		{name: "no proxies, no headers", remote: "203.0.113.7:5555", want: "203.0.113.7"},
		{name: "no proxies, spoofed xff", remote: "203.0.113.7:5555", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "no proxies, spoofed forwarded", remote: "203.0.113.7:5555", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},
		{name: "no proxies, private peer", remote: proxy, xff: []string{"198.51.100.1"}, want: "10.0.0.1"},

		// Untrusted peer: its headers are ignored.
		{name: "untrusted peer xff", proxies: trusted, remote: "203.0.113.7:5555", xff: []string{"198.51.100.1"}, want: "203.0.113.7"},
		{name: "untrusted peer xff of proxies", proxies: trusted, remote: "203.0.113.7:5555", xff: []string{"10.0.0.2"}, want: "203.0.113.7"},
		{name: "untrusted peer forwarded", proxies: trusted, remote: "203.0.113.7:5555", fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},

		// Trusted peer.
		{name: "trusted, no headers", proxies: trusted, remote: proxy, want: "10.0.0.1"},
		{name: "trusted, one hop", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "trusted single address", proxies: trusted, remote: "192.168.1.1:80", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "neighbor of trusted address", proxies: trusted, remote: "192.168.1.2:80", xff: []string{"203.0.113.7"}, want: "192.168.1.2"},
		{name: "proxy chain", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7, 10.0.0.2,192.168.1.1"}, want: "203.0.113.7"},
		{name: "spoofed leftmost", proxies: trusted, remote: proxy, xff: []string{"198.51.100.1, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "spoofed leftmost, several", proxies: trusted, remote: proxy, xff: []string{"1.1.1.1, 2.2.2.2, 203.0.113.7, 10.0.0.2"}, want: "203.0.113.7"},
		{name: "client claims to be a proxy", proxies: trusted, remote: proxy, xff: []string{"10.9.9.9, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "several lines", proxies: trusted, remote: proxy, xff: []string{"198.51.100.1", "203.0.113.7, 10.0.0.2"}, want: "203.0.113.7"},
		{name: "several lines, hop per line", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7", "10.0.0.2"}, want: "203.0.113.7"},
		{name: "long spoofed prefix", proxies: trusted, remote: proxy, xff: []string{strings.Repeat("198.51.100.1, x, ", 10_000) + "203.0.113.7"}, want: "203.0.113.7"},
		{name: "all hops trusted", proxies: trusted, remote: proxy, xff: []string{"10.0.0.3, 10.0.0.2"}, want: "10.0.0.3"},
		{name: "empty elements", proxies: trusted, remote: proxy, xff: []string{" , 203.0.113.7,, "}, want: "203.0.113.7"},
		{name: "empty line", proxies: trusted, remote: proxy, xff: []string{""}, want: "10.0.0.1"},

		// Malformed hops stop the walk at the last good address.
		{name: "garbage left of client", proxies: trusted, remote: proxy, xff: []string{"garbage, 203.0.113.7"}, want: "203.0.113.7"},
		{name: "garbage between proxies", proxies: trusted, remote: proxy, xff: []string{"198.51.100.1, garbage, 10.0.0.2"}, want: "10.0.0.2"},
		{name: "garbage rightmost", proxies: trusted, remote: proxy, xff: []string{"198.51.100.1, garbage"}, want: "10.0.0.1"},
		{name: "unknown", proxies: trusted, remote: proxy, xff: []string{"198.51.100.1, unknown"}, want: "10.0.0.1"},
		{name: "hostname", proxies: trusted, remote: proxy, xff: []string{"example.com"}, want: "10.0.0.1"},
		{name: "cidr", proxies: trusted, remote: proxy, xff: []string{"203.0.113.0/24"}, want: "10.0.0.1"},
		{name: "leading zeros", proxies: trusted, remote: proxy, xff: []string{"203.0.113.07"}, want: "10.0.0.1"},
		{name: "quoted in xff", proxies: trusted, remote: proxy, xff: []string{`"203.0.113.7"`}, want: "10.0.0.1"},

		// Ports and address forms.
		{name: "ipv4 port", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:8080"}, want: "203.0.113.7"},
		{name: "ipv6 port", proxies: trusted, remote: proxy, xff: []string{"[2001:db8::7]:443"}, want: "2001:db8::7"},
		{name: "ipv6 brackets", proxies: trusted, remote: proxy, xff: []string{"[2001:db8::7]"}, want: "2001:db8::7"},
		{name: "port too big", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:65536"}, want: "10.0.0.1"},
		{name: "port not a number", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:80x"}, want: "10.0.0.1"},
		{name: "port zero", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:0"}, want: "10.0.0.1"},
		{name: "empty port", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:"}, want: "10.0.0.1"},
		{name: "ipv6 port unbracketed", proxies: trusted, remote: proxy, xff: []string{"2001:db8::7:443"}, want: "2001:db8::7:443"},
		{name: "bracket junk", proxies: trusted, remote: proxy, xff: []string{"[2001:db8::7]x"}, want: "10.0.0.1"},
		{name: "obfuscated port not in xff", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7:_a"}, want: "10.0.0.1"},
		{name: "ipv6 peer and hop", proxies: trusted, remote: "[2001:db8:ffff::1]:443", xff: []string{"2001:db8::7"}, want: "2001:db8::7"},
		{name: "ipv6 proxy hop", proxies: trusted, remote: proxy, xff: []string{"2001:db8::7, 2001:db8:ffff::2"}, want: "2001:db8::7"},
		{name: "mapped hop", proxies: trusted, remote: proxy, xff: []string{"::ffff:203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped peer", proxies: trusted, remote: "[::ffff:10.0.0.1]:80", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped cidr entry", proxies: trusted, remote: "172.16.3.4:80", xff: []string{"203.0.113.7"}, want: "203.0.113.7"},
		{name: "mapped proxy hop", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7, ::ffff:10.0.0.2"}, want: "203.0.113.7"},
		{name: "zone dropped", proxies: trusted, remote: proxy, xff: []string{"fe80::1%eth0"}, want: "fe80::1"},

		// RFC 7239 Forwarded, read only when there is no X-Forwarded-For.
		{name: "fwd token", proxies: trusted, remote: proxy, fwd: []string{"for=203.0.113.7"}, want: "203.0.113.7"},
		{name: "fwd quoted port", proxies: trusted, remote: proxy, fwd: []string{`for="203.0.113.7:8080"`}, want: "203.0.113.7"},
		{name: "fwd ipv6", proxies: trusted, remote: proxy, fwd: []string{`For="[2001:db8:cafe::17]:4711"`}, want: "2001:db8:cafe::17"},
		{name: "fwd ipv6 no port", proxies: trusted, remote: proxy, fwd: []string{`for="[2001:db8:cafe::17]"`}, want: "2001:db8:cafe::17"},
		{name: "fwd ipv6 unquoted", proxies: trusted, remote: proxy, fwd: []string{`for=[2001:db8:cafe::17]:4711`}, want: "2001:db8:cafe::17"},
		{name: "fwd obfuscated port", proxies: trusted, remote: proxy, fwd: []string{`for="203.0.113.7:_p1"`}, want: "203.0.113.7"},
		{name: "fwd other params", proxies: trusted, remote: proxy, fwd: []string{"proto=https;for=203.0.113.7;by=10.0.0.1;host=example.com"}, want: "203.0.113.7"},
		{name: "fwd whitespace", proxies: trusted, remote: proxy, fwd: []string{" for=198.51.100.1 ,  for=203.0.113.7 ; proto=http "}, want: "203.0.113.7"},
		{name: "fwd chain", proxies: trusted, remote: proxy, fwd: []string{"for=198.51.100.1, for=203.0.113.7, for=10.0.0.2"}, want: "203.0.113.7"},
		{name: "fwd lines", proxies: trusted, remote: proxy, fwd: []string{"for=198.51.100.1", "for=203.0.113.7", "for=10.0.0.2"}, want: "203.0.113.7"},
		{name: "fwd all trusted", proxies: trusted, remote: proxy, fwd: []string{"for=10.0.0.3, for=10.0.0.2"}, want: "10.0.0.3"},
		{name: "fwd unknown", proxies: trusted, remote: proxy, fwd: []string{"for=unknown"}, want: "10.0.0.1"},
		{name: "fwd unknown left", proxies: trusted, remote: proxy, fwd: []string{"for=unknown, for=203.0.113.7"}, want: "203.0.113.7"},
		{name: "fwd obfuscated", proxies: trusted, remote: proxy, fwd: []string{"for=203.0.113.7, for=_hidden"}, want: "10.0.0.1"},
		{name: "fwd no for", proxies: trusted, remote: proxy, fwd: []string{"for=198.51.100.1, proto=https"}, want: "10.0.0.1"},
		{name: "fwd duplicate for", proxies: trusted, remote: proxy, fwd: []string{"for=198.51.100.1;for=203.0.113.7"}, want: "10.0.0.1"},
		{name: "fwd quoted comma", proxies: trusted, remote: proxy, fwd: []string{`by="a,b";for=203.0.113.7`}, want: "203.0.113.7"},
		{name: "fwd quoted semicolon", proxies: trusted, remote: proxy, fwd: []string{`for=203.0.113.7;ext="x;y=z"`}, want: "203.0.113.7"},
		{name: "fwd unterminated quote", proxies: trusted, remote: proxy, fwd: []string{`for="198.51.100.1, for=203.0.113.7`}, want: "203.0.113.7"},
		{name: "fwd stray quotes left", proxies: trusted, remote: proxy, fwd: []string{`for="6.6.6.6", "for=", ", for=203.0.113.7, for=10.0.0.2`}, want: "203.0.113.7"},
		{name: "fwd long spoofed prefix", proxies: trusted, remote: proxy, fwd: []string{strings.Repeat(`for="198.51.100.1", `, 10_000) + "for=203.0.113.7"}, want: "203.0.113.7"},
		{name: "fwd escape", proxies: trusted, remote: proxy, fwd: []string{`for="203.0.113\.7"`}, want: "10.0.0.1"},
		{name: "fwd bad syntax", proxies: trusted, remote: proxy, fwd: []string{"for 203.0.113.7"}, want: "10.0.0.1"},
		{name: "fwd garbage left", proxies: trusted, remote: proxy, fwd: []string{`"=;;, for=203.0.113.7`}, want: "203.0.113.7"},
		{name: "fwd mapped", proxies: trusted, remote: proxy, fwd: []string{`for="[::ffff:203.0.113.7]"`}, want: "203.0.113.7"},
		{name: "xff wins over fwd", proxies: trusted, remote: proxy, xff: []string{"203.0.113.7"}, fwd: []string{"for=198.51.100.1"}, want: "203.0.113.7"},
		{name: "empty xff, fwd read", proxies: trusted, remote: proxy, xff: []string{" "}, fwd: []string{"for=203.0.113.7"}, want: "203.0.113.7"},

		// RemoteAddr forms.
		{name: "remote without port", proxies: trusted, remote: "203.0.113.7", want: "203.0.113.7"},
		{name: "remote ipv6", remote: "[2001:db8::7]:1", want: "2001:db8::7"},
		{name: "remote zone", remote: "[fe80::1%eth0]:1", want: "fe80::1"},
		{name: "remote empty", proxies: trusted, remote: "", xff: []string{"203.0.113.7"}, want: ""},
		{name: "remote unix socket", proxies: trusted, remote: "@", xff: []string{"203.0.113.7"}, want: ""},
		{name: "remote hostname", proxies: trusted, remote: "localhost:80", xff: []string{"203.0.113.7"}, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := proxies(t, tc.proxies).ClientIP(request(tc.remote, tc.xff, tc.fwd))
			want := netip.Addr{}
			if tc.want != "" {
				want = netip.MustParseAddr(tc.want)
			}
			if got != want {
				t.Errorf("got %v, want %v", got, want)
			}
		})
	}
}

func TestClientIPZeroProxies(t *testing.T) {
	var p ratelimit.Proxies
	if got := p.ClientIP(request("10.0.0.1:1", []string{"203.0.113.7"}, nil)); got != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("zero Proxies: got %v, want the peer", got)
	}
}

func TestParseProxies(t *testing.T) {
	for _, bad := range []string{"", "nope", "10.0.0.0/33", "10.0.0.1/8/1", "fe80::1%eth0", "10.0.0.1:80", "2001:db8::/129", "example.com"} {
		_, err := ratelimit.ParseProxies([]string{"10.0.0.1", bad})
		if err == nil || !strings.Contains(err.Error(), "trusted proxy") {
			t.Errorf("ParseProxies(%q): got error %v, want one naming the entry", bad, err)
		}
	}
	// A non-canonical prefix means its network.
	p := proxies(t, []string{"10.1.2.3/16"})
	if got := p.ClientIP(request("10.1.200.1:1", []string{"203.0.113.7"}, nil)); got != netip.MustParseAddr("203.0.113.7") {
		t.Errorf("10.1.2.3/16: peer 10.1.200.1 not trusted (got %v)", got)
	}
}

func TestAddrKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"fe80::1%eth0", "fe80::/64"},
	} {
		if got := ratelimit.AddrKey(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("AddrKey(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if got := ratelimit.AddrKey(netip.Addr{}); got != "" {
		t.Errorf("AddrKey(zero) = %q, want \"\"", got)
	}
}

// FuzzClientIP checks that ClientIP never panics and never invents an
// address: the result is the peer or an address written in a header.
func FuzzClientIP(f *testing.F) {
	for _, seed := range [][3]string{
		{"10.0.0.1:1", "203.0.113.7, 10.0.0.2", ""},
		{"10.0.0.1:1", "198.51.100.1\n203.0.113.7:80", ""},
		{"[2001:db8:ffff::1]:443", "[2001:db8::7]:443, ::ffff:10.0.0.2", ""},
		{"10.0.0.1:1", "", `for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2`},
		{"10.0.0.1:1", "", `for="198.51.100.1, for=_x;by="a,b", for=unknown`},
		{"10.0.0.1:1", "garbage,,fe80::1%eth0", "for=203.0.113.7"},
		{"[::ffff:10.0.0.1]:1", "1.2.3.4:", `for=[::1]:_p`},
		{"@", "203.0.113.7", ""},
		{"203.0.113.7:1", "10.0.0.2", "for=10.0.0.3"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	p := proxies(f, trusted)
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		var xffLines, fwdLines []string
		if xff != "" {
			xffLines = strings.Split(xff, "\n")
		}
		if fwd != "" {
			fwdLines = strings.Split(fwd, "\n")
		}
		r := request(remote, xffLines, fwdLines)
		got := p.ClientIP(r)
		peer := ratelimit.Proxies{}.ClientIP(r)
		if got == peer {
			return
		}
		if !got.IsValid() || got.Zone() != "" || got.Is4In6() {
			t.Fatalf("got %#v", got)
		}
		if !written(got, xff+"\n"+fwd) {
			t.Fatalf("remote %q xff %q fwd %q: got %v, not the peer %v nor in a header", remote, xff, fwd, got, peer)
		}
	})
}

// written reports whether a appears in s: as a run of address characters,
// up to an optional ":port", IPv4-mapped or not.
func written(a netip.Addr, s string) bool {
	isAddrChar := func(r rune) bool {
		return r < 128 && (r == '.' || r == ':' || '0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
	}
	for _, run := range strings.FieldsFunc(s, func(r rune) bool { return !isAddrChar(r) }) {
		for i := range len(run) + 1 {
			if i < len(run) && run[i] != ':' {
				continue
			}
			if b, err := netip.ParseAddr(run[:i]); err == nil && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}
