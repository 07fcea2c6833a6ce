package delivery_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// FuzzRange serves a known object with a fuzzed Range header (and
// If-Range) and checks the response against the object's bytes:
//   - the status is 200, 206 or 416;
//   - 200 carries the whole object, as does any request whose If-Range
//     names neither the object's ETag nor its Last-Modified time;
//   - a single-range 206 body is the slice its Content-Range names, and
//     Content-Length is its length;
//   - a multipart/byteranges 206 parses with mime/multipart, and every
//     part is the slice its own Content-Range names;
//   - 416 carries "Content-Range: bytes */SIZE" (RFC 9110, 15.5.17).
func FuzzRange(f *testing.F) {
	const size = 5000
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.UintN(256))
	}
	b, err := fileblob.Open(f.TempDir(), "media")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	const key = "assets/a1/outputs/video.mp4"
	attrs, err := b.Put(context.Background(), key, bytes.NewReader(data), blob.PutOptions{Size: size, ContentType: "video/mp4"})
	if err != nil {
		f.Fatal(err)
	}
	s := delivery.New(b, telemetry.New())
	etag := `"` + attrs.ETag + `"`
	lastMod := attrs.ModTime.UTC().Format(http.TimeFormat)

	for _, seed := range []struct{ rng, ifRange string }{
		{"", ""},
		{"bytes=0-0", ""},
		{"bytes=0-99", ""},
		{"bytes=4900-", ""},
		{"bytes=-100", ""},
		{"bytes=0-", ""},
		{"bytes=4999-4999", ""},
		{"bytes=5000-", ""},
		{"bytes=0-99999", ""},
		{"bytes=0-1,3-4", ""},
		{"bytes=0-1, 10-20, -5", ""},
		{"bytes=0-4999,0-4999", ""},
		{"bytes=0-10,5000-6000", ""},
		{"bytes=,", ""},
		{"bytes=", ""},
		{"bytes=0-1", etag},
		{"bytes=0-1", `"other"`},
		{"bytes=0-1", "W/" + etag},
		{"bytes=0-1", lastMod},
		{"bytes=0-1", "Mon, 02 Jan 2006 15:04:05 GMT"},
		{"bytes=0-1,2-3", etag},
	} {
		f.Add(seed.rng, seed.ifRange)
	}
	f.Fuzz(func(t *testing.T, rng, ifRange string) {
		req := httptest.NewRequest(http.MethodGet, delivery.Prefix+key, nil)
		// Header values the client library would refuse to send cannot
		// arrive; skip them rather than test the impossible.
		for _, v := range []string{rng, ifRange} {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Skip()
			}
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		if ifRange != "" {
			req.Header.Set("If-Range", ifRange)
		}
		w := httptest.NewRecorder()
		if err := s.Serve(context.Background(), w, req, key); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		res := w.Result()
		body, _ := io.ReadAll(res.Body)
		where := fmt.Sprintf("Range %q, If-Range %q: %d", rng, ifRange, res.StatusCode)

		if rng != "" && ifRange != "" && !mayName(ifRange, attrs) && res.StatusCode != http.StatusOK {
			t.Fatalf("%s, want 200 for an If-Range that does not match", where)
		}
		switch res.StatusCode {
		case http.StatusOK:
			if !bytes.Equal(body, data) {
				t.Fatalf("%s: body of %d bytes is not the object", where, len(body))
			}
			checkLength(t, where, res, len(body))
		case http.StatusPartialContent:
			if rng == "" {
				t.Fatalf("%s without a Range header", where)
			}
			ct, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
			if err != nil {
				t.Fatalf("%s: Content-Type %q: %v", where, res.Header.Get("Content-Type"), err)
			}
			if ct != "multipart/byteranges" {
				checkSlice(t, where, data, res.Header.Get("Content-Range"), body)
				checkLength(t, where, res, len(body))
				return
			}
			checkLength(t, where, res, len(body))
			mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
			parts := 0
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: multipart part %d: %v", where, parts, err)
				}
				pb, err := io.ReadAll(p)
				if err != nil {
					t.Fatalf("%s: multipart part %d: %v", where, parts, err)
				}
				if got := p.Header.Get("Content-Type"); got != "video/mp4" {
					t.Fatalf("%s: part %d has Content-Type %q, want video/mp4", where, parts, got)
				}
				checkSlice(t, fmt.Sprintf("%s: part %d", where, parts), data, p.Header.Get("Content-Range"), pb)
				parts++
			}
			if parts < 2 {
				t.Fatalf("%s: multipart/byteranges with %d parts", where, parts)
			}
		case http.StatusRequestedRangeNotSatisfiable:
			if rng == "" {
				t.Fatalf("%s without a Range header", where)
			}
			if got, want := res.Header.Get("Content-Range"), "bytes */"+strconv.Itoa(size); got != want {
				t.Fatalf("%s: Content-Range %q, want %q", where, got, want)
			}
		default:
			t.Fatalf("%s: unexpected status", where)
		}
	})
}

// checkSlice checks that body is the part of data that contentRange
// ("bytes FIRST-LAST/SIZE") names.
func checkSlice(t *testing.T, where string, data []byte, contentRange string, body []byte) {
	t.Helper()
	var first, last, total int
	if _, err := fmt.Sscanf(contentRange, "bytes %d-%d/%d", &first, &last, &total); err != nil {
		t.Fatalf("%s: Content-Range %q: %v", where, contentRange, err)
	}
	if want := fmt.Sprintf("bytes %d-%d/%d", first, last, total); contentRange != want {
		t.Fatalf("%s: Content-Range %q is not in canonical form %q", where, contentRange, want)
	}
	if total != len(data) || first < 0 || first > last || last >= len(data) {
		t.Fatalf("%s: Content-Range %q is outside the %d-byte object", where, contentRange, len(data))
	}
	if !bytes.Equal(body, data[first:last+1]) {
		t.Fatalf("%s: body of %d bytes is not bytes %d-%d of the object", where, len(body), first, last)
	}
}

// checkLength checks that Content-Length is the body's length.
func checkLength(t *testing.T, where string, res *http.Response, n int) {
	t.Helper()
	if cl := res.Header.Get("Content-Length"); cl != strconv.Itoa(n) {
		t.Fatalf("%s: Content-Length %q for a body of %d bytes", where, cl, n)
	}
}

// mayName reports whether an If-Range value could name the object's
// current version: it holds the ETag, or is an HTTP date of its
// modification time. Any other value must get the whole object.
func mayName(ifRange string, a blob.Attrs) bool {
	if strings.Contains(ifRange, a.ETag) {
		return true
	}
	for _, v := range []string{ifRange, strings.TrimSpace(ifRange)} {
		if t, err := http.ParseTime(v); err == nil && t.Unix() == a.ModTime.Unix() {
			return true
		}
	}
	return false
}
