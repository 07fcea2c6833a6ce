// Package blobtest holds the conformance suite that every blob driver
// passes. A driver's test only builds a harness:
//
//	func TestConformance(t *testing.T) {
//		blobtest.Run(t, func(t *testing.T) blob.Bucket {
//			// a fresh, empty bucket, closed by t.Cleanup
//		})
//	}
//
// The suite checks the contract written in package blob, and nothing that
// a remote driver could not do: local paths and renames are left to each
// driver's own tests, and Import is checked through blob.Import, which
// uses the bucket's Importer when it has one and a copy otherwise.
package blobtest

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
)

// Run runs the suite, one subtest per property, each on a bucket from open.
func Run(t *testing.T, open func(t *testing.T) blob.Bucket) {
	tests := []struct {
		name string
		fn   func(*testing.T, blob.Bucket)
	}{
		{"Name", testName},
		{"RoundTrip", testRoundTrip},
		{"OverwriteKeepsOpenReader", testOverwriteKeepsOpenReader},
		{"RejectedPut", testRejectedPut},
		{"OversizeStopsReading", testOversizeStopsReading},
		{"Cancel", testCancel},
		{"InvalidKeys", testInvalidKeys},
		{"LongKey", testLongKey},
		{"NotFound", testNotFound},
		{"Delete", testDelete},
		{"DeletePrefix", testDeletePrefix},
		{"List", testList},
		{"SeekAndRange", testSeekAndRange},
		{"ConcurrentKeys", testConcurrentKeys},
		{"ConcurrentSameKey", testConcurrentSameKey},
		{"LargeStream", testLargeStream},
		{"Import", testImport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

func testName(t *testing.T, b blob.Bucket) {
	if got := b.Name(); got == "" {
		t.Errorf("Name() = %q, want a name", got)
	}
}

func testRoundTrip(t *testing.T, b blob.Bucket) {
	html := []byte("<!DOCTYPE html><html><body>hi</body></html>")
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{0}, 600)...)
	bin := []byte{0, 1, 2, 3, 0xff, 0xfe}
	tests := []struct {
		name     string
		key      string
		data     []byte
		opts     blob.PutOptions
		oneByte  bool // read one byte at a time, so sniffing spans reads
		wantType string
	}{
		{"given type", "a/b/c.mp4", []byte("not really a video"), blob.PutOptions{ContentType: "video/mp4", Size: 18}, false, "video/mp4"},
		{"sniffed html", "page", html, blob.PutOptions{Size: -1}, false, "text/html; charset=utf-8"},
		{"sniffed png", "img/x.png", png, blob.PutOptions{Size: int64(len(png))}, false, "image/png"},
		{"sniffed across reads", "img/y", png, blob.PutOptions{Size: -1}, true, "image/png"},
		{"sniffed binary", "bin", bin, blob.PutOptions{Size: -1}, false, "application/octet-stream"},
		{"empty", "empty", nil, blob.PutOptions{Size: 0}, false, "text/plain; charset=utf-8"},
		{"sha256", "sum", html, blob.PutOptions{Size: int64(len(html)), SHA256: sha(html)}, false, "text/html; charset=utf-8"},
		{"unicode key", "ünï/кл ю ч.txt", []byte("plain text"), blob.PutOptions{Size: -1}, false, "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			var r io.Reader = bytes.NewReader(tt.data)
			if tt.oneByte {
				r = iotest.OneByteReader(r)
			}
			put, err := b.Put(ctx, tt.key, r, tt.opts)
			if err != nil {
				t.Fatalf("Put(%q) = %v", tt.key, err)
			}
			want := blob.Attrs{Key: tt.key, Size: int64(len(tt.data)), ContentType: tt.wantType, ETag: md5hex(tt.data)}
			checkAttrs(t, "Put", put, want)
			if put.ModTime.IsZero() {
				t.Errorf("Put(%q).ModTime is zero", tt.key)
			}

			st, err := b.Stat(ctx, tt.key)
			if err != nil {
				t.Fatalf("Stat(%q) = %v", tt.key, err)
			}
			checkAttrs(t, "Stat", st, want)
			if d := st.ModTime.Sub(put.ModTime).Abs(); d > time.Second {
				t.Errorf("Stat(%q).ModTime = %v, want about %v from Put", tt.key, st.ModTime, put.ModTime)
			}

			o, err := b.Open(ctx, tt.key)
			if err != nil {
				t.Fatalf("Open(%q) = %v", tt.key, err)
			}
			defer o.Close()
			checkAttrs(t, "Open", o.Attrs(), want)
			if got := o.Attrs().ModTime; !got.Equal(st.ModTime) {
				t.Errorf("Open(%q).Attrs().ModTime = %v, want %v as from Stat", tt.key, got, st.ModTime)
			}
			got, err := io.ReadAll(o)
			if err != nil {
				t.Fatalf("reading %q: %v", tt.key, err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("content of %q = %q, want %q", tt.key, trim(got), trim(tt.data))
			}
			if err := o.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
	}
}

// testOverwriteKeepsOpenReader checks that a reader opened before an
// overwrite reads the version it opened, to the end and after seeking
// back. A POSIX rename gives fileblob this; an S3 GET reads a whole
// version too, and an S3 driver keeps the property across the ranged GETs
// a Seek needs by pinning them to the first one's ETag (If-Match) or
// version.
func testOverwriteKeepsOpenReader(t *testing.T, b blob.Bucket) {
	ctx := t.Context()
	const key = "v/ideo"
	old := pattern(300_000, 1)
	put(t, b, key, old, "video/mp4")
	o, err := b.Open(ctx, key)
	if err != nil {
		t.Fatalf("Open(%q) = %v", key, err)
	}
	defer o.Close()
	head := make([]byte, 10)
	if _, err := io.ReadFull(o, head); err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}

	next := pattern(1000, 2)
	newAttrs := put(t, b, key, next, "video/webm")

	rest, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading on after overwrite: %v", err)
	}
	if got := append(head, rest...); !bytes.Equal(got, old) {
		t.Errorf("reader opened before overwrite read %d bytes (md5 %s), want the old %d (md5 %s)", len(got), md5hex(got), len(old), md5hex(old))
	}
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		t.Fatalf("Seek(0, io.SeekStart) = %v", err)
	}
	again, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading again after seek: %v", err)
	}
	if !bytes.Equal(again, old) {
		t.Errorf("after Seek(0) read %d bytes (md5 %s), want the old %d (md5 %s)", len(again), md5hex(again), len(old), md5hex(old))
	}
	if got, want := o.Attrs().ETag, md5hex(old); got != want {
		t.Errorf("Attrs().ETag of old reader = %q, want %q", got, want)
	}

	st, err := b.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q) = %v", key, err)
	}
	checkAttrs(t, "Stat", st, newAttrs)
	if got := read(t, b, key); !bytes.Equal(got, next) {
		t.Errorf("content after overwrite = %d bytes (md5 %s), want %d (md5 %s)", len(got), md5hex(got), len(next), md5hex(next))
	}
}

// testRejectedPut checks that a write violating its options is discarded:
// no object appears, and an existing one is untouched.
func testRejectedPut(t *testing.T, b blob.Bucket) {
	data := []byte("the content that arrives")
	n := int64(len(data))
	tests := []struct {
		name string
		opts blob.PutOptions
		want error
	}{
		{"size too large", blob.PutOptions{Size: n - 1}, blob.ErrSizeMismatch},
		{"size too small", blob.PutOptions{Size: n + 1}, blob.ErrSizeMismatch},
		{"size zero", blob.PutOptions{}, blob.ErrSizeMismatch},
		{"checksum", blob.PutOptions{Size: -1, SHA256: sha([]byte("other"))}, blob.ErrChecksumMismatch},
		{"checksum with size", blob.PutOptions{Size: n, SHA256: sha([]byte("other"))}, blob.ErrChecksumMismatch},
	}
	for i, tt := range tests {
		for _, existing := range []bool{false, true} {
			name := tt.name
			if existing {
				name += " over existing"
			}
			t.Run(name, func(t *testing.T) {
				ctx := t.Context()
				key := fmt.Sprintf("rejected/%d/%t", i, existing)
				var old blob.Attrs
				if existing {
					old = put(t, b, key, []byte("old"), "text/x-old")
				}
				_, err := b.Put(ctx, key, bytes.NewReader(data), tt.opts)
				if !errors.Is(err, tt.want) {
					t.Fatalf("Put(%q) = %v, want %v", key, err, tt.want)
				}
				checkUnchanged(t, b, key, existing, old, []byte("old"))
			})
		}
	}
}

// checkUnchanged checks that key holds old when existing, and nothing
// otherwise.
func checkUnchanged(t *testing.T, b blob.Bucket, key string, existing bool, old blob.Attrs, oldData []byte) {
	t.Helper()
	ctx := t.Context()
	st, err := b.Stat(ctx, key)
	if !existing {
		if !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q) after failed Put = %+v, %v, want %v", key, st, err, blob.ErrNotFound)
		}
		if l, err := b.List(ctx, key); err != nil || len(l) != 0 {
			t.Errorf("List(%q) after failed Put = %v, %v, want nothing", key, keys(l), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("Stat(%q) after failed Put = %v", key, err)
	}
	checkAttrs(t, "Stat", st, old)
	if got := read(t, b, key); !bytes.Equal(got, oldData) {
		t.Errorf("content after failed Put = %q, want %q", trim(got), oldData)
	}
}

// testOversizeStopsReading checks that a reader longer than declared is
// not drained: one byte past the size tells enough.
func testOversizeStopsReading(t *testing.T, b blob.Bucket) {
	const size = 1000
	r := &countingReader{r: &patternReader{size: 1 << 40}}
	_, err := b.Put(t.Context(), "oversize", r, blob.PutOptions{Size: size})
	if !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("Put of an endless reader with Size %d = %v, want %v", size, err, blob.ErrSizeMismatch)
	}
	if got := r.n.Load(); got > size+1 {
		t.Errorf("Put read %d bytes, want at most %d", got, size+1)
	}
	checkUnchanged(t, b, "oversize", false, blob.Attrs{}, nil)
}

func testCancel(t *testing.T, b blob.Bucket) {
	for _, existing := range []bool{false, true} {
		for _, mid := range []bool{false, true} {
			name := "before"
			if mid {
				name = "mid-write"
			}
			if existing {
				name += " over existing"
			}
			t.Run(name, func(t *testing.T) {
				key := fmt.Sprintf("cancel/%t/%t", mid, existing)
				var old blob.Attrs
				if existing {
					old = put(t, b, key, []byte("old"), "text/x-old")
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				var r io.Reader = &patternReader{size: 1 << 20}
				if mid {
					r = &cancelReader{r: r, after: 64 << 10, cancel: cancel}
				} else {
					cancel()
				}
				_, err := b.Put(ctx, key, r, blob.PutOptions{Size: -1})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Put(%q) with cancelled context = %v, want %v", key, err, context.Canceled)
				}
				checkUnchanged(t, b, key, existing, old, []byte("old"))
			})
		}
	}
}

func testInvalidKeys(t *testing.T, b blob.Bucket) {
	tests := []struct{ name, key string }{
		{"empty", ""},
		{"absolute", "/abs"},
		{"dot dot", "a/../b"},
		{"leading dot dot", "../a"},
		{"only dot dot", ".."},
		{"double slash", "a//b"},
		{"dot", "a/./b"},
		{"backslash", `a\b`},
		{"trailing slash", "trailing/"},
		{"control char", "a\x01b"},
		{"newline", "a\nb"},
		{"nul", "a\x00b"},
		{"del", "a\x7fb"},
		{"1025 bytes", strings.Repeat("k", 1025)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if _, err := b.Put(ctx, tt.key, strings.NewReader("x"), blob.PutOptions{Size: 1}); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Put(%q) = %v, want %v", tt.key, err, blob.ErrInvalidKey)
			}
			if o, err := b.Open(ctx, tt.key); !errors.Is(err, blob.ErrInvalidKey) {
				if err == nil {
					o.Close()
				}
				t.Errorf("Open(%q) = %v, want %v", tt.key, err, blob.ErrInvalidKey)
			}
			if _, err := b.Stat(ctx, tt.key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Stat(%q) = %v, want %v", tt.key, err, blob.ErrInvalidKey)
			}
			if err := b.Delete(ctx, tt.key); !errors.Is(err, blob.ErrInvalidKey) {
				t.Errorf("Delete(%q) = %v, want %v", tt.key, err, blob.ErrInvalidKey)
			}
			if lp, ok := b.(blob.LocalPather); ok {
				if p, err := lp.LocalPath(tt.key); !errors.Is(err, blob.ErrInvalidKey) {
					t.Errorf("LocalPath(%q) = %q, %v, want %v", tt.key, p, err, blob.ErrInvalidKey)
				}
			}
		})
	}
	if l, err := b.List(t.Context(), ""); err != nil || len(l) != 0 {
		t.Errorf("List(\"\") after invalid Puts = %v, %v, want nothing", keys(l), err)
	}
}

// testLongKey checks that a key of the full 1024 bytes works when its
// segments are of ordinary length.
func testLongKey(t *testing.T, b blob.Bucket) {
	segs := make([]string, 10)
	for i := range segs {
		segs[i] = strings.Repeat(string(rune('a'+i)), 100)
	}
	key := strings.Join(segs, "/")
	key += strings.Repeat("z", 1024-len(key))
	if len(key) != 1024 {
		t.Fatalf("test key has %d bytes, want 1024", len(key))
	}
	data := []byte("long")
	put(t, b, key, data, "")
	if got := read(t, b, key); !bytes.Equal(got, data) {
		t.Errorf("content = %q, want %q", got, data)
	}
	if got := keys(list(t, b, "")); !slices.Equal(got, []string{key}) {
		t.Errorf("List(\"\") = %q, want the long key", got)
	}
	if err := b.Delete(t.Context(), key); err != nil {
		t.Errorf("Delete = %v", err)
	}
}

func testNotFound(t *testing.T, b blob.Bucket) {
	put(t, b, "file", []byte("f"), "")
	put(t, b, "dir/x", []byte("x"), "")
	for _, key := range []string{
		"missing",
		"no/such/dir/key",
		"file/child", // below an object
		"dir",        // only a prefix of objects
		"fil",        // a prefix of an object's key
	} {
		ctx := t.Context()
		if _, err := b.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Stat(%q) = %v, want %v", key, err, blob.ErrNotFound)
		}
		o, err := b.Open(ctx, key)
		if !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("Open(%q) = %v, want %v", key, err, blob.ErrNotFound)
		}
		if err == nil {
			o.Close()
		}
	}
}

func testDelete(t *testing.T, b blob.Bucket) {
	ctx := t.Context()
	put(t, b, "d/a", []byte("a"), "")
	put(t, b, "d/b", []byte("b"), "")
	for i := range 2 { // the second time it is already gone
		if err := b.Delete(ctx, "d/a"); err != nil {
			t.Fatalf("Delete(\"d/a\") #%d = %v, want nil", i+1, err)
		}
	}
	if _, err := b.Stat(ctx, "d/a"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat(\"d/a\") after Delete = %v, want %v", err, blob.ErrNotFound)
	}
	if got := read(t, b, "d/b"); string(got) != "b" {
		t.Errorf("sibling content after Delete = %q, want %q", got, "b")
	}
	if err := b.Delete(ctx, "never/was"); err != nil {
		t.Errorf("Delete(\"never/was\") = %v, want nil", err)
	}
	if got, want := keys(list(t, b, "")), []string{"d/b"}; !slices.Equal(got, want) {
		t.Errorf("List(\"\") after Delete = %q, want %q", got, want)
	}

	// Once "p/q/r" is gone, "p" can be an object.
	put(t, b, "p/q/r", []byte("r"), "")
	if err := b.Delete(ctx, "p/q/r"); err != nil {
		t.Fatalf("Delete(\"p/q/r\") = %v", err)
	}
	put(t, b, "p", []byte("p"), "")
	if got := read(t, b, "p"); string(got) != "p" {
		t.Errorf("content of \"p\" = %q, want %q", got, "p")
	}
}

func testDeletePrefix(t *testing.T, b blob.Bucket) {
	for _, k := range []string{"assets/a1/x/1.jpg", "assets/a1/hls/seg.m4s", "assets/a10/t.jpg", "assets/a2/t.jpg"} {
		put(t, b, k, []byte(k), "")
	}
	n, err := blob.DeletePrefix(t.Context(), b, "assets/a1/")
	if err != nil || n != 2 {
		t.Fatalf("DeletePrefix = %d, %v; want 2 deleted", n, err)
	}
	if got, want := keys(list(t, b, "assets/")), []string{"assets/a10/t.jpg", "assets/a2/t.jpg"}; !slices.Equal(got, want) {
		t.Errorf("List after DeletePrefix = %q, want %q", got, want)
	}
	if n, err := blob.DeletePrefix(t.Context(), b, "assets/a1/"); err != nil || n != 0 {
		t.Errorf("DeletePrefix(nothing left) = %d, %v", n, err)
	}
}

func testList(t *testing.T, b blob.Bucket) {
	all := []string{"a.txt", "a/b/1", "a/b/2", "a/bc", "a/c", "ab", "b"}
	for _, i := range []int{4, 1, 6, 0, 3, 5, 2} { // not in order
		put(t, b, all[i], []byte(all[i]), "")
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", all},
		{"a", []string{"a.txt", "a/b/1", "a/b/2", "a/bc", "a/c", "ab"}},
		{"a/", []string{"a/b/1", "a/b/2", "a/bc", "a/c"}},
		{"a/b", []string{"a/b/1", "a/b/2", "a/bc"}},
		{"a/b/", []string{"a/b/1", "a/b/2"}},
		{"a/b/1", []string{"a/b/1"}},
		{"b", []string{"b"}},
		{"zzz", nil},
		{"a/zzz/", nil},
		{"b/", nil},
		{"a//", nil},
	}
	for _, tt := range tests {
		got := list(t, b, tt.prefix)
		if !slices.Equal(keys(got), tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, keys(got), tt.want)
		}
		for _, a := range got {
			checkAttrs(t, "List", a, blob.Attrs{Key: a.Key, Size: int64(len(a.Key)), ContentType: "text/plain; charset=utf-8", ETag: md5hex([]byte(a.Key))})
		}
	}
	if err := b.Delete(t.Context(), "a/bc"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if got, want := keys(list(t, b, "a/b")), []string{"a/b/1", "a/b/2"}; !slices.Equal(got, want) {
		t.Errorf("List(\"a/b\") after Delete(\"a/bc\") = %q, want %q", got, want)
	}
}

// testSeekAndRange reads the way delivery serves a Range request.
func testSeekAndRange(t *testing.T, b blob.Bucket) {
	data := pattern(10_000, 3)
	put(t, b, "range", data, "")
	o, err := b.Open(t.Context(), "range")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer o.Close()
	steps := []struct {
		offset  int64
		whence  int
		wantPos int64
		n       int
	}{
		{500, io.SeekStart, 500, 100},
		{100, io.SeekCurrent, 700, 50},
		{-10, io.SeekEnd, 9990, 10},
		{0, io.SeekStart, 0, 1},
		{9999, io.SeekStart, 9999, 1},
	}
	for _, s := range steps {
		pos, err := o.Seek(s.offset, s.whence)
		if err != nil || pos != s.wantPos {
			t.Fatalf("Seek(%d, %d) = %d, %v, want %d", s.offset, s.whence, pos, err, s.wantPos)
		}
		got := make([]byte, s.n)
		if _, err := io.ReadFull(o, got); err != nil {
			t.Fatalf("reading %d bytes at %d: %v", s.n, pos, err)
		}
		if want := data[pos : pos+int64(s.n)]; !bytes.Equal(got, want) {
			t.Errorf("%d bytes at %d = %x, want %x", s.n, pos, trim(got), trim(want))
		}
	}
	if pos, err := o.Seek(0, io.SeekCurrent); err != nil || pos != int64(len(data)) {
		t.Errorf("Seek(0, io.SeekCurrent) at the end = %d, %v, want %d", pos, err, len(data))
	}
	if n, err := o.Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v, want 0, EOF", n, err)
	}
	if pos, err := o.Seek(0, io.SeekEnd); err != nil || pos != int64(len(data)) {
		t.Errorf("Seek(0, io.SeekEnd) = %d, %v, want %d", pos, err, len(data))
	}
	if _, err := o.Seek(-1, io.SeekStart); err == nil {
		t.Errorf("Seek(-1, io.SeekStart) = nil error, want one")
	}
}

// testConcurrentKeys writes and deletes different keys at once, under
// shared parent prefixes, so that a driver with directories creates and
// removes them under its own feet.
func testConcurrentKeys(t *testing.T, b blob.Bucket) {
	ctx := t.Context()
	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("shared/w%d/k%d", w, i)
				data := []byte(key)
				if _, err := b.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{Size: int64(len(data))}); err != nil {
					t.Errorf("Put(%q) = %v", key, err)
					return
				}
				if err := b.Delete(ctx, key); err != nil {
					t.Errorf("Delete(%q) = %v", key, err)
					return
				}
			}
			key := fmt.Sprintf("shared/w%d/final", w)
			if _, err := b.Put(ctx, key, strings.NewReader(key), blob.PutOptions{Size: int64(len(key))}); err != nil {
				t.Errorf("Put(%q) = %v", key, err)
			}
		})
	}
	wg.Wait()
	var want []string
	for w := range workers {
		want = append(want, fmt.Sprintf("shared/w%d/final", w))
	}
	if got := keys(list(t, b, "shared/")); !slices.Equal(got, want) {
		t.Errorf("List(\"shared/\") = %q, want %q", got, want)
	}
	for _, key := range want {
		if got := read(t, b, key); string(got) != key {
			t.Errorf("content of %q = %q, want %q", key, got, key)
		}
	}
}

// testConcurrentSameKey overwrites one key from several writers while
// readers open it: every read is one whole version, described by the
// attributes it was opened with.
func testConcurrentSameKey(t *testing.T, b blob.Bucket) {
	ctx := t.Context()
	const key = "hot"
	versions := make([][]byte, 6)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i)}, 10_000+i*7919)
	}
	check := func(what string, data []byte, a blob.Attrs) {
		if len(data) == 0 {
			t.Errorf("%s: empty content", what)
			return
		}
		i := int(data[0] - 'a')
		if i < 0 || i >= len(versions) || !bytes.Equal(data, versions[i]) {
			t.Errorf("%s: %d bytes starting %q are no single version", what, len(data), trim(data))
			return
		}
		if a.Size != int64(len(data)) || a.ETag != md5hex(data) {
			t.Errorf("%s: Attrs() = size %d, etag %q, want %d, %q", what, a.Size, a.ETag, len(data), md5hex(data))
		}
	}

	var writers, readers sync.WaitGroup
	done := make(chan struct{})
	for _, v := range versions {
		writers.Go(func() {
			for range 5 {
				if _, err := b.Put(ctx, key, bytes.NewReader(v), blob.PutOptions{Size: int64(len(v))}); err != nil {
					t.Errorf("Put(%q) = %v", key, err)
					return
				}
			}
		})
	}
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				o, err := b.Open(ctx, key)
				if errors.Is(err, blob.ErrNotFound) {
					continue // no write has finished yet
				}
				if err != nil {
					t.Errorf("Open(%q) = %v", key, err)
					return
				}
				data, err := io.ReadAll(o)
				o.Close()
				if err != nil {
					t.Errorf("reading %q: %v", key, err)
					return
				}
				check("concurrent read", data, o.Attrs())
			}
		})
	}
	writers.Wait()
	close(done)
	readers.Wait()

	o, err := b.Open(ctx, key)
	if err != nil {
		t.Fatalf("Open(%q) = %v", key, err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	check("final read", data, o.Attrs())
	st, err := b.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat(%q) = %v", key, err)
	}
	check("final Stat", data, st)
}

// testLargeStream puts 64 MiB from a generator. A driver must stream it:
// no test can see a process's memory reliably, so this only shows that a
// large write works and hashes right.
func testLargeStream(t *testing.T, b blob.Bucket) {
	if testing.Short() {
		t.Skip("64 MiB write")
	}
	const size = 64 << 20
	m, s := md5.New(), sha256.New()
	if _, err := io.Copy(io.MultiWriter(m, s), &patternReader{size: size}); err != nil {
		t.Fatal(err)
	}
	wantETag := hex.EncodeToString(m.Sum(nil))
	ctx := t.Context()
	a, err := b.Put(ctx, "large", &patternReader{size: size}, blob.PutOptions{Size: size, SHA256: s.Sum(nil), ContentType: "video/mp4"})
	if err != nil {
		t.Fatalf("Put = %v", err)
	}
	if a.Size != size || a.ETag != wantETag {
		t.Errorf("Put = size %d, etag %q, want %d, %q", a.Size, a.ETag, size, wantETag)
	}
	o, err := b.Open(ctx, "large")
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer o.Close()
	m.Reset()
	n, err := io.Copy(m, o)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if got := hex.EncodeToString(m.Sum(nil)); n != size || got != wantETag {
		t.Errorf("read %d bytes with md5 %q, want %d, %q", n, got, size, wantETag)
	}
}

// testImport checks blob.Import: the file is stored and gone on success,
// and left where it was on failure.
func testImport(t *testing.T, b blob.Bucket) {
	dir := t.TempDir()
	data := []byte("<!DOCTYPE html><p>imported</p>")
	n := int64(len(data))
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name     string
		key      string
		opts     blob.PutOptions
		ctx      context.Context
		existing bool
		want     error // nil for success
	}{
		{"success", "imp/ok", blob.PutOptions{Size: n, SHA256: sha(data)}, nil, false, nil},
		{"unknown size", "imp/unknown", blob.PutOptions{Size: -1, ContentType: "text/x-given"}, nil, false, nil},
		{"over existing", "imp/over", blob.PutOptions{Size: -1}, nil, true, nil},
		{"size too large", "imp/large", blob.PutOptions{Size: n - 1}, nil, false, blob.ErrSizeMismatch},
		{"size too small", "imp/small", blob.PutOptions{Size: n + 1}, nil, true, blob.ErrSizeMismatch},
		{"checksum", "imp/sum", blob.PutOptions{Size: -1, SHA256: sha([]byte("other"))}, nil, true, blob.ErrChecksumMismatch},
		{"invalid key", "imp//bad", blob.PutOptions{Size: -1}, nil, false, blob.ErrInvalidKey},
		{"cancelled", "imp/cancelled", blob.PutOptions{Size: -1}, cancelled, false, context.Canceled},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			src := filepath.Join(dir, fmt.Sprintf("src%d", i))
			if err := os.WriteFile(src, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var old blob.Attrs
			if tt.existing {
				old = put(t, b, tt.key, []byte("old"), "text/x-old")
			}
			a, err := blob.Import(ctx, b, tt.key, src, tt.opts)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Import(%q) = %v, want %v", tt.key, err, tt.want)
				}
				if got, err := os.ReadFile(src); err != nil || !bytes.Equal(got, data) {
					t.Errorf("source after failed Import = %q, %v, want it unchanged", got, err)
				}
				if tt.want != blob.ErrInvalidKey {
					checkUnchanged(t, b, tt.key, tt.existing, old, []byte("old"))
				}
				return
			}
			if err != nil {
				t.Fatalf("Import(%q) = %v", tt.key, err)
			}
			wantType := tt.opts.ContentType
			if wantType == "" {
				wantType = "text/html; charset=utf-8"
			}
			want := blob.Attrs{Key: tt.key, Size: n, ContentType: wantType, ETag: md5hex(data)}
			checkAttrs(t, "Import", a, want)
			if _, err := os.Lstat(src); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Lstat(source) after Import = %v, want %v", err, os.ErrNotExist)
			}
			st, err := b.Stat(t.Context(), tt.key)
			if err != nil {
				t.Fatalf("Stat(%q) = %v", tt.key, err)
			}
			checkAttrs(t, "Stat", st, want)
			if got := read(t, b, tt.key); !bytes.Equal(got, data) {
				t.Errorf("content = %q, want %q", got, data)
			}
		})
	}
	t.Run("missing source", func(t *testing.T) {
		if _, err := blob.Import(t.Context(), b, "imp/missing", filepath.Join(dir, "missing"), blob.PutOptions{Size: -1}); err == nil {
			t.Fatalf("Import of a missing file = nil error, want one")
		}
		checkUnchanged(t, b, "imp/missing", false, blob.Attrs{}, nil)
	})
}

func put(t *testing.T, b blob.Bucket, key string, data []byte, contentType string) blob.Attrs {
	t.Helper()
	a, err := b.Put(t.Context(), key, bytes.NewReader(data), blob.PutOptions{Size: int64(len(data)), ContentType: contentType})
	if err != nil {
		t.Fatalf("Put(%q) = %v", key, err)
	}
	return a
}

func read(t *testing.T, b blob.Bucket, key string) []byte {
	t.Helper()
	o, err := b.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q) = %v", key, err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("reading %q: %v", key, err)
	}
	return data
}

func list(t *testing.T, b blob.Bucket, prefix string) []blob.Attrs {
	t.Helper()
	l, err := b.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q) = %v", prefix, err)
	}
	return l
}

func keys(l []blob.Attrs) []string {
	var ks []string
	for _, a := range l {
		ks = append(ks, a.Key)
	}
	return ks
}

// checkAttrs compares all but ModTime, which drivers round differently.
func checkAttrs(t *testing.T, what string, got, want blob.Attrs) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.ContentType != want.ContentType || got.ETag != want.ETag {
		t.Errorf("%s attrs = {%q %d %q %q}, want {%q %d %q %q}", what,
			got.Key, got.Size, got.ContentType, got.ETag, want.Key, want.Size, want.ContentType, want.ETag)
	}
}

func md5hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

func sha(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// trim shortens content for a message.
func trim(data []byte) []byte {
	if len(data) > 32 {
		return data[:32]
	}
	return data
}

// pattern returns n bytes that differ from those of another seed and
// whose period, 251, matches no buffer size.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i%251) ^ seed
	}
	return p
}

// patternBlock backs patternReader: pattern(…, 0) long enough that any
// read is one copy from it.
var patternBlock = pattern(251*1024, 0)

// patternReader yields size bytes of pattern(size, 0) without holding them.
type patternReader struct{ off, size int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	start := int(p.off % 251)
	n := min(int64(len(b)), p.size-p.off, int64(len(patternBlock)-start))
	copy(b, patternBlock[start:start+int(n)])
	p.off += n
	return int(n), nil
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// cancelReader cancels its context once after bytes have been read, and
// reads on: a driver must notice the context, not an error from r.
type cancelReader struct {
	r      io.Reader
	n      int
	after  int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n >= c.after {
		c.cancel()
	}
	n, err := c.r.Read(p[:min(len(p), 4096)])
	c.n += n
	return n, err
}
