package delivery

import (
	"net/http"
	"strconv"
	"strings"
)

// maxRanges bounds the ranges of one request: many tiny ranges make a
// multipart answer far larger than the object (a known amplification).
const maxRanges = 16

// normalizeRange rewrites the request's Range header into one
// http.ServeContent answers correctly, or answers the request itself. It
// reports whether the request was answered.
//
// ServeContent, as of Go 1.26, answers "bytes=-0" with an empty 206
// whose Content-Range is inverted, and malformed headers with a 416 that
// lacks Content-Range. RFC 9110 lets a server ignore a Range it cannot
// parse or whose unit it does not know (then the whole object is sent),
// and requires a 416 to name the size. So: unparsable, unknown-unit or
// over-long headers are dropped; ranges that cannot be satisfied are
// dropped from the list; a list left empty is a 416 with
// "Content-Range: bytes */size" (or the whole object when If-Range is
// present, since the range may not apply at all).
func normalizeRange(w http.ResponseWriter, r *http.Request, size int64) bool {
	h := r.Header.Get("Range")
	if h == "" {
		return false
	}
	specs, ok := strings.CutPrefix(h, "bytes=")
	parts := strings.Split(specs, ",")
	if !ok || len(parts) > maxRanges {
		r.Header.Del("Range")
		return false
	}
	var keep []string
	for _, p := range parts {
		p = strings.TrimSpace(p)
		start, end, ok := parseSpec(p)
		if !ok {
			r.Header.Del("Range")
			return false
		}
		switch {
		case start < 0: // suffix: the last end bytes; none is nothing
			if end == 0 || size == 0 {
				continue
			}
		case start >= size:
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) > 0 {
		r.Header.Set("Range", "bytes="+strings.Join(keep, ","))
		return false
	}
	if r.Header.Get("If-Range") != "" {
		r.Header.Del("Range")
		return false
	}
	w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
	http.Error(w, "requested range not satisfiable", http.StatusRequestedRangeNotSatisfiable)
	return true
}

// parseSpec reads one range spec: "a-b", "a-" (end -1) or "-n" (start
// -1, end n). Numbers are plain decimal digits.
func parseSpec(p string) (start, end int64, ok bool) {
	a, b, found := strings.Cut(p, "-")
	if !found {
		return 0, 0, false
	}
	if a == "" {
		n, ok := rangeNum(b)
		return -1, n, ok
	}
	s, ok := rangeNum(a)
	if !ok {
		return 0, 0, false
	}
	if b == "" {
		return s, -1, true
	}
	e, ok := rangeNum(b)
	if !ok || e < s {
		return 0, 0, false
	}
	return s, e, true
}

func rangeNum(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
