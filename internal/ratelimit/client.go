package ratelimit

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// Proxies is the set of reverse proxies (load balancers, CDNs) whose
// forwarding headers are believed. The zero Proxies trusts none: the
// client is always the peer.
type Proxies struct {
	prefixes []netip.Prefix
}

// ParseProxies parses trusted proxies given as addresses ("10.0.0.1",
// "::1") or CIDR prefixes ("10.0.0.0/8", "2001:db8::/32").
func ParseProxies(list []string) (Proxies, error) {
	var p Proxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		var pfx netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if pfx, err = netip.ParsePrefix(s); err != nil {
				return Proxies{}, fmt.Errorf("ratelimit: trusted proxy %q: not an address or CIDR prefix", s)
			}
			if a := pfx.Addr(); a.Is4In6() && pfx.Bits() >= 96 {
				pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				return Proxies{}, fmt.Errorf("ratelimit: trusted proxy %q: not an address or CIDR prefix", s)
			}
			a = a.Unmap()
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		p.prefixes = append(p.prefixes, pfx.Masked())
	}
	return p, nil
}

func (p Proxies) trusted(a netip.Addr) bool {
	for _, pfx := range p.prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// ClientIP returns the address of the client that sent r.
//
// That is the peer (r.RemoteAddr) unless the peer is a trusted proxy.
// Then it is the nearest untrusted hop in X-Forwarded-For (every line,
// read from the right, since each proxy appends the address it received
// from), or, where X-Forwarded-For has no entries, in the for= parameters
// of the RFC 7239 Forwarded header. Whatever a client writes itself lies
// to the left of what the proxies append, and reading from the right
// means it is neither reached nor even parsed while the hops to its
// right are well formed. If every hop is trusted the leftmost is the
// client. A malformed hop ("unknown", an obfuscated identifier, garbage)
// stops the walk and the last good hop is the client.
//
// Proxies that only write Forwarded must drop an X-Forwarded-For sent by
// the client, or it would be read instead.
//
// IPv4-mapped IPv6 addresses are returned as IPv4, and zones are
// dropped. An unparsable RemoteAddr gives the zero Addr.
func (p Proxies) ClientIP(r *http.Request) netip.Addr {
	client := parseRemoteAddr(r.RemoteAddr)
	if !client.IsValid() || !p.trusted(client) {
		return client
	}
	lines, forwarded := r.Header.Values("X-Forwarded-For"), false
	if !hasElements(lines) {
		lines, forwarded = r.Header.Values("Forwarded"), true
	}
	for i := len(lines) - 1; i >= 0; i-- {
		for rest, more := lines[i], true; more; {
			var elem string
			rest, elem, more = cutLast(rest, forwarded)
			if elem = strings.Trim(elem, " \t"); elem == "" {
				continue // RFC 9110 lists may have empty elements
			}
			var a netip.Addr
			if forwarded {
				a = forwardedFor(elem)
			} else {
				a = parseNode(elem, false)
			}
			if !a.IsValid() {
				return client
			}
			client = a
			if !p.trusted(a) {
				return client
			}
		}
	}
	return client
}

func parseRemoteAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return normalize(ap.Addr())
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return normalize(a)
	}
	return netip.Addr{}
}

func normalize(a netip.Addr) netip.Addr { return a.Unmap().WithZone("") }

func hasElements(lines []string) bool {
	for _, l := range lines {
		if strings.Trim(l, " \t,") != "" {
			return true
		}
	}
	return false
}

// cutLast cuts the last element off a list: s is before, the element is
// after, and found reports whether there was a comma. With quotes, a
// comma inside a quoted string does not count; quotes are paired from
// the right, so the elements proxies append are read correctly whatever
// a client wrote before them (a stray quote of its own makes only its
// own element malformed).
func cutLast(s string, quotes bool) (before, after string, found bool) {
	in := false
	for i := len(s) - 1; i >= 0; i-- {
		switch {
		case quotes && s[i] == '"':
			in = !in
		case s[i] == ',' && !in:
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

// splitQuoted splits s at sep outside quoted strings; an unterminated
// quote is an ordinary character.
func splitQuoted(s string, sep byte) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			if end := closingQuote(s, i); end > 0 {
				i = end
			}
		case sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// closingQuote returns the index of the quote that ends the quoted
// string opening at s[open], or -1.
func closingQuote(s string, open int) int {
	for i := open + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// forwardedFor parses one forwarded-element (pairs separated by ';') and
// returns its for= node, or the zero Addr.
func forwardedFor(elem string) netip.Addr {
	var node string
	found := false
	for _, pair := range splitQuoted(elem, ';') {
		pair = strings.Trim(pair, " \t")
		name, value, ok := strings.Cut(pair, "=")
		if !ok || !isToken(name) {
			return netip.Addr{}
		}
		if strings.HasPrefix(value, `"`) {
			if len(value) < 2 || closingQuote(value, 0) != len(value)-1 {
				return netip.Addr{}
			}
			value = value[1 : len(value)-1]
			if strings.Contains(value, `\`) {
				return netip.Addr{} // no address needs escapes
			}
		} else if !isNodeChars(value) {
			return netip.Addr{}
		}
		if strings.EqualFold(name, "for") {
			if found {
				return netip.Addr{} // RFC 7239: at most once per element
			}
			node, found = value, true
		}
	}
	return parseNode(node, true)
}

// parseNode parses a hop: an address, optionally with a port, IPv6 in
// brackets when it has one. RFC 7239 nodes may have obfuscated ports
// ("_abc"); "unknown" and obfuscated identifiers are not addresses and
// give the zero Addr, as does anything else.
func parseNode(s string, forwarded bool) netip.Addr {
	var host, port string
	hasPort := false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}
		}
		var rest string
		host, rest = s[1:end], s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return netip.Addr{}
			}
			port, hasPort = rest[1:], true
		}
	} else {
		if a, err := netip.ParseAddr(s); err == nil {
			return normalize(a)
		}
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return netip.Addr{}
		}
		host, port, hasPort = s[:i], s[i+1:], true
		if strings.Contains(host, ":") {
			return netip.Addr{} // only IPv4 takes a port without brackets
		}
	}
	if hasPort && !validPort(port, forwarded) {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return normalize(a)
}

func validPort(p string, obfuscated bool) bool {
	if obfuscated && len(p) > 1 && p[0] == '_' {
		for i := 1; i < len(p); i++ {
			if c := p[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
				return false
			}
		}
		return true
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return err == nil && n > 0
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// isNodeChars reports whether s is a token, or would be but for the
// brackets and colons of a node that its sender forgot to quote.
func isNodeChars(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isTchar(c) && c != '[' && c != ']' && c != ':' {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// AddrKey returns the rate-limit key for a client address: the address
// itself for IPv4, its /64 prefix for IPv6, since one host usually holds
// a whole /64 and could otherwise take a fresh bucket per request. The
// zero Addr gives "".
func AddrKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = normalize(a)
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}
