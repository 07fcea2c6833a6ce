package upload

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// SniffLen is how many leading bytes Sniff looks at: the detector's
// default read limit. Passing more changes nothing.
const SniffLen = 3072

// Sniff returns the media type, without parameters, of content that
// starts with head (its first SniffLen bytes or all of it when shorter).
// Uploads are accepted by what their bytes are, never by their name or
// the Content-Type a client claims: FFmpeg picks its demuxer by probing
// the content too, so that is what has to be checked.
//
// Content it cannot name is "application/octet-stream".
func Sniff(head []byte) string {
	if len(head) > SniffLen {
		head = head[:SniffLen]
	}
	// Playlists and concat scripts are named explicitly, whatever the
	// detector would call them, so that TypeAllowed can refuse them by
	// name: FFmpeg's own probes look for exactly these prefixes.
	switch {
	case hasTextPrefix(head, "#EXTM3U"):
		return "application/vnd.apple.mpegurl"
	case hasTextPrefix(head, "ffconcat version"):
		return "text/x-ffconcat"
	}
	t := mimetype.Detect(head).String()
	if mt, _, err := mime.ParseMediaType(t); err == nil {
		t = mt
	}
	if t == "application/octet-stream" && isMPEGTS(head) {
		// The detector knows no transport streams; FFmpeg writes them
		// (and HLS carries them), so recognize their packet structure.
		return "video/mp2t"
	}
	return strings.ToLower(t)
}

// hasTextPrefix reports whether head starts with prefix, after an
// optional UTF-8 byte order mark, as FFmpeg's text probes allow.
func hasTextPrefix(head []byte, prefix string) bool {
	head = bytes.TrimPrefix(head, []byte("\xef\xbb\xbf"))
	return bytes.HasPrefix(head, []byte(prefix))
}

// isMPEGTS reports whether head is a run of MPEG transport stream
// packets: a 0x47 sync byte every 188 bytes (or every 192, for the
// time-stamped packets of M2TS), at least three packets in a row.
func isMPEGTS(head []byte) bool {
	for _, p := range []struct{ size, sync int }{{188, 0}, {192, 4}} {
		n := 0
		for off := p.sync; off < len(head); off += p.size {
			if head[off] != 0x47 {
				n = -1
				break
			}
			n++
		}
		if n >= 3 {
			return true
		}
	}
	return false
}

// DefaultAllowedTypes are the upload types accepted unless configured
// otherwise: any audio, video or still picture.
var DefaultAllowedTypes = []string{"video/*", "audio/*", "image/*"}

// refused are types TypeAllowed refuses whatever the patterns say. They
// are not media, and each would make something read more than the upload:
// an HLS or M3U playlist makes FFmpeg open every URL or path it lists
// (file:///etc/passwd, internal addresses); SVG, HTML and XML are
// documents a browser runs scripts in and fetches resources for when an
// output is served from Sluice's origin; and text is where playlists,
// ffconcat scripts and other FFmpeg directives live. An "image/*" or
// "audio/*" pattern would otherwise let SVG and audio/x-mpegurl through.
var refused = map[string]bool{
	"image/svg+xml":                 true,
	"application/vnd.apple.mpegurl": true,
	"application/mpegurl":           true,
	"application/x-mpegurl":         true,
	"audio/mpegurl":                 true,
	"audio/x-mpegurl":               true,
	"video/x-mpegurl":               true,
	"audio/x-scpls":                 true,
	"application/xml":               true,
	"application/xhtml+xml":         true,
	"text/html":                     true,
}

// TypeAllowed reports whether the media type ctype matches one of
// patterns: exact types ("video/mp4") or wildcards over a top-level type
// ("video/*"), compared case-insensitively; parameters in ctype are
// ignored. Whatever the patterns say, it refuses playlists, SVG, HTML,
// XML of any kind and text/* (see refused for why).
func TypeAllowed(patterns []string, ctype string) bool {
	t, _, err := mime.ParseMediaType(ctype)
	if err != nil {
		return false
	}
	top, sub, ok := strings.Cut(t, "/")
	if !ok || top == "" || sub == "" || strings.Contains(t, "*") || alwaysRefused(t) {
		return false
	}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == t || (strings.HasSuffix(p, "/*") && strings.TrimSuffix(p, "/*") == top) {
			return true
		}
	}
	return false
}

// alwaysRefused reports whether TypeAllowed refuses the media type t
// (lower-case, without parameters) whatever the patterns.
func alwaysRefused(t string) bool {
	return refused[t] || strings.HasPrefix(t, "text/") || strings.HasSuffix(t, "+xml")
}

// ValidateTypePatterns checks configured upload type patterns: each must
// be a media type without parameters ("video/mp4") or a top-level
// wildcard ("video/*"). "*/*" is refused, since allowing every type would
// admit archives and executables as media, and so are patterns that could
// only name types TypeAllowed always refuses ("text/*", "image/svg+xml"),
// rather than be silently ignored.
func ValidateTypePatterns(patterns []string) error {
	for _, p := range patterns {
		top, sub, ok := strings.Cut(p, "/")
		if !ok || !isToken(top) || (sub != "*" && !isToken(sub)) {
			return fmt.Errorf("upload: type pattern %q: want type/subtype or type/*", p)
		}
		if lp := strings.ToLower(p); lp == "text/*" || (sub != "*" && alwaysRefused(lp)) {
			return fmt.Errorf("upload: type pattern %q: playlists, SVG, HTML, XML and text are never accepted as uploads", p)
		}
	}
	return nil
}

// isToken reports whether s is a non-empty RFC 9110 token without "*",
// the characters a media type's names may use.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
