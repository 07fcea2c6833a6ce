package fileblob_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/blobtest"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		b, _ := open(t)
		return b
	})
}

// open opens a bucket in a fresh directory and returns it with its root.
func open(t *testing.T) (*fileblob.Bucket, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "bucket")
	return openAt(t, root), root
}

func openAt(t *testing.T, root string) *fileblob.Bucket {
	t.Helper()
	b, err := fileblob.Open(root, "test")
	if err != nil {
		t.Fatalf("Open(%q) = %v", root, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
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

func TestLayout(t *testing.T) {
	b, root := open(t)
	if got, want := b.Name(), "test"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
	put(t, b, "a/b/c.jpg", []byte("jpeg"), "image/jpeg")
	p, err := b.LocalPath("a/b/c.jpg")
	if err != nil {
		t.Fatalf("LocalPath = %v", err)
	}
	if want := filepath.Join(root, "a", "b", "c.jpg"); p != want {
		t.Errorf("LocalPath = %q, want %q", p, want)
	}
	if got, err := os.ReadFile(p); err != nil || string(got) != "jpeg" {
		t.Errorf("ReadFile(LocalPath) = %q, %v, want %q", got, err, "jpeg")
	}
	if p, err := b.LocalPath("not/yet"); err != nil || p != filepath.Join(root, "not", "yet") {
		t.Errorf("LocalPath of a missing key = %q, %v, want its path", p, err)
	}
	fi, err := os.Stat(root)
	if err != nil || !fi.IsDir() {
		t.Fatalf("Stat(root) = %v, %v, want a directory", fi, err)
	}
	if perm := fi.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("root permissions = %v, want at most 0750", perm)
	}
}

func TestReopenKeepsAttrs(t *testing.T) {
	b, root := open(t)
	want := put(t, b, "v.bin", []byte("not sniffable as video"), "video/mp4")
	b.Close()
	b = openAt(t, root)
	got, err := b.Stat(t.Context(), "v.bin")
	if err != nil {
		t.Fatalf("Stat = %v", err)
	}
	if got.ContentType != want.ContentType || got.ETag != want.ETag || !got.ModTime.Equal(want.ModTime) {
		t.Errorf("Stat after reopening = %+v, want %+v", got, want)
	}
}

// TestSidecarRecovery covers sidecars lost, left stale or torn by a crash
// between the data rename and the sidecar write.
func TestSidecarRecovery(t *testing.T) {
	old := []byte("<!DOCTYPE html><p>old</p>")
	// The same size, so that only the file's identity tells them apart.
	next := []byte("%PDF-1.4 the new content!")
	tests := []struct {
		name   string
		damage func(t *testing.T, b *fileblob.Bucket, root string)
		want   []byte
	}{
		{"missing", func(t *testing.T, b *fileblob.Bucket, root string) {
			removeAll(t, filepath.Join(root, ".meta"))
		}, old},
		{"torn", func(t *testing.T, b *fileblob.Bucket, root string) {
			eachSidecar(t, root, func(p string) {
				if err := os.Truncate(p, 3); err != nil {
					t.Fatal(err)
				}
			})
		}, old},
		{"stale", func(t *testing.T, b *fileblob.Bucket, root string) {
			// Keep the old sidecars, overwrite, and put them back: as if
			// the process died after renaming the new data into place.
			saved := map[string][]byte{}
			eachSidecar(t, root, func(p string) {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				saved[p] = data
			})
			if _, err := b.Put(t.Context(), "k/obj", bytes.NewReader(next), blob.PutOptions{Size: -1, ContentType: "application/pdf"}); err != nil {
				t.Fatal(err)
			}
			for p, data := range saved {
				if err := os.WriteFile(p, data, 0o640); err != nil {
					t.Fatal(err)
				}
			}
		}, next},
	}
	if len(old) != len(next) {
		t.Fatalf("test contents differ in size: %d and %d", len(old), len(next))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, root := open(t)
			put(t, b, "k/obj", old, "text/x-given")
			tt.damage(t, b, root)

			// A fresh Bucket, as after a restart.
			b.Close()
			b = openAt(t, root)
			wantType := http.DetectContentType(tt.want)
			st, err := b.Stat(t.Context(), "k/obj")
			if err != nil {
				t.Fatalf("Stat = %v", err)
			}
			if st.Size != int64(len(tt.want)) || st.ETag != md5hex(tt.want) || st.ContentType != wantType {
				t.Errorf("Stat = size %d, etag %q, type %q, want %d, %q, %q (sniffed: the given one is lost)",
					st.Size, st.ETag, st.ContentType, len(tt.want), md5hex(tt.want), wantType)
			}
			o, err := b.Open(t.Context(), "k/obj")
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			data, err := io.ReadAll(o)
			o.Close()
			if err != nil || !bytes.Equal(data, tt.want) {
				t.Errorf("content = %q, %v, want %q", data, err, tt.want)
			}
			if got := o.Attrs(); got.ETag != md5hex(tt.want) {
				t.Errorf("Open().Attrs().ETag = %q, want %q", got.ETag, md5hex(tt.want))
			}
			l, err := b.List(t.Context(), "")
			if err != nil || len(l) != 1 || l[0].ETag != md5hex(tt.want) {
				t.Errorf("List = %+v, %v, want the object with etag %q", l, err, md5hex(tt.want))
			}

			// The sidecar is rewritten: it now matches, and holds
			// the sniffed type.
			var n int
			eachSidecar(t, root, func(p string) {
				n++
				data, err := os.ReadFile(p)
				if err != nil || !strings.Contains(string(data), md5hex(tt.want)) {
					t.Errorf("sidecar %s = %s, %v, want it to hold etag %s", p, data, err, md5hex(tt.want))
				}
			})
			if n != 1 {
				t.Errorf("found %d sidecars, want 1", n)
			}
		})
	}
}

func TestSymlinksRefused(t *testing.T) {
	ctx := t.Context()
	b, root := open(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	put(t, b, "real/x", []byte("x"), "")
	links := map[string]string{
		"out":     outside,                                // a directory outside
		"alias":   filepath.Join(outside, "secret"),       // a file outside
		"inside":  filepath.Join(root, "real"),            // a directory inside
		"in/file": filepath.Join(root, "real", "x"),       // a file inside, one level down
		"meta":    filepath.Join(root, ".meta"),           // the driver's own files
		"dangle":  filepath.Join(outside, "nothing-here"), // a dangling link
	}
	for name, target := range links {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Skipf("cannot make symbolic links here: %v", err)
		}
	}
	refused := func(err error) bool { return errors.Is(err, blob.ErrInvalidKey) || errors.Is(err, blob.ErrNotFound) }
	for _, key := range []string{"out/secret", "alias", "inside/x", "in/file", "dangle", "dangle/x", "meta/x"} {
		if o, err := b.Open(ctx, key); !refused(err) {
			if err == nil {
				o.Close()
			}
			t.Errorf("Open(%q) = %v, want %v or %v", key, err, blob.ErrInvalidKey, blob.ErrNotFound)
		}
		if _, err := b.Stat(ctx, key); !refused(err) {
			t.Errorf("Stat(%q) = %v, want %v or %v", key, err, blob.ErrInvalidKey, blob.ErrNotFound)
		}
		if p, err := b.LocalPath(key); !refused(err) {
			t.Errorf("LocalPath(%q) = %q, %v, want %v or %v", key, p, err, blob.ErrInvalidKey, blob.ErrNotFound)
		}
		if err := b.Delete(ctx, key); err != nil && !refused(err) {
			t.Errorf("Delete(%q) = %v, want nil, %v or %v", key, err, blob.ErrInvalidKey, blob.ErrNotFound)
		}
	}
	for _, key := range []string{"out/new", "out/secret", "alias", "inside/y", "dangle", "dangle/x"} {
		if _, err := b.Put(ctx, key, strings.NewReader("evil"), blob.PutOptions{Size: 4}); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
	}
	if got, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(got) != "secret" {
		t.Errorf("file outside after attempts = %q, %v, want it untouched", got, err)
	}
	for _, name := range []string{"new", "nothing-here"} {
		if _, err := os.Lstat(filepath.Join(outside, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Lstat(outside/%s) = %v, want %v", name, err, fs.ErrNotExist)
		}
	}
	if got := read(t, b, "real/x"); string(got) != "x" {
		t.Errorf("real/x = %q, want %q", got, "x")
	}
	l, err := b.List(ctx, "")
	if err != nil {
		t.Fatalf("List = %v", err)
	}
	if len(l) != 1 || l[0].Key != "real/x" {
		t.Errorf("List(\"\") = %+v, want only real/x", l)
	}
	for _, prefix := range []string{"out/", "inside/", "meta/"} {
		if l, err := b.List(ctx, prefix); err != nil || len(l) != 0 {
			t.Errorf("List(%q) = %+v, %v, want nothing", prefix, l, err)
		}
	}
}

func TestDotKeysRefused(t *testing.T) {
	ctx := t.Context()
	b, root := open(t)
	for _, key := range []string{".meta/x", ".tmp/x", ".hidden", ".a/b", "..."} {
		if _, err := b.Put(ctx, key, strings.NewReader("x"), blob.PutOptions{Size: 1}); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
		if _, err := b.Open(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Open(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
		if _, err := b.LocalPath(key); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("LocalPath(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
	}
	// Below the first level a dot is an ordinary name.
	put(t, b, "a/.hidden", []byte("h"), "")
	if got := read(t, b, "a/.hidden"); string(got) != "h" {
		t.Errorf("a/.hidden = %q, want %q", got, "h")
	}
	for _, d := range []string{".tmp", ".meta"} {
		if fi, err := os.Lstat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("Lstat(%s) = %v, want the driver's directory", d, err)
		}
	}
}

// TestKeyConflicts covers what S3 allows and a file system cannot hold.
func TestKeyConflicts(t *testing.T) {
	ctx := t.Context()
	b, _ := open(t)
	put(t, b, "a", []byte("a"), "")
	put(t, b, "x/y", []byte("y"), "")
	for _, key := range []string{"a/b", "a/b/c", "x"} {
		if _, err := b.Put(ctx, key, strings.NewReader("new"), blob.PutOptions{Size: 3}); !errors.Is(err, blob.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want %v", key, err, blob.ErrInvalidKey)
		}
	}
	if got := read(t, b, "a"); string(got) != "a" {
		t.Errorf("a = %q, want %q", got, "a")
	}
	if got := read(t, b, "x/y"); string(got) != "y" {
		t.Errorf("x/y = %q, want %q", got, "y")
	}
	if err := b.Delete(ctx, "x"); err != nil {
		t.Errorf("Delete of a directory's key = %v, want nil", err)
	}
	if got := read(t, b, "x/y"); string(got) != "y" {
		t.Errorf("x/y after Delete(\"x\") = %q, want %q", got, "y")
	}
}

func TestDeletePrunesDirectories(t *testing.T) {
	ctx := t.Context()
	b, root := open(t)
	put(t, b, "a/b/c", []byte("c"), "")
	put(t, b, "a/d", []byte("d"), "")
	if err := b.Delete(ctx, "a/b/c"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "a", "b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(a/b) after deleting its last object = %v, want %v", err, fs.ErrNotExist)
	}
	if err := b.Delete(ctx, "a/d"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(a) after deleting its last object = %v, want %v", err, fs.ErrNotExist)
	}
	if _, err := os.Lstat(root); err != nil {
		t.Errorf("Lstat(root) = %v, want the root kept", err)
	}
	var n int
	eachSidecar(t, root, func(string) { n++ })
	if n != 0 {
		t.Errorf("%d sidecars left after deleting everything, want 0", n)
	}
}

func TestImportRenames(t *testing.T) {
	b, root := open(t)
	src := filepath.Join(filepath.Dir(root), "upload")
	data := []byte("uploaded video")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	before, err := os.Lstat(src)
	if err != nil {
		t.Fatal(err)
	}
	a, err := b.Import(t.Context(), "v/original", src, blob.PutOptions{Size: int64(len(data)), ContentType: "video/mp4"})
	if err != nil {
		t.Fatalf("Import = %v", err)
	}
	if a.ETag != md5hex(data) || a.Size != int64(len(data)) || a.ContentType != "video/mp4" {
		t.Errorf("Import = %+v, want etag %q, size %d, video/mp4", a, md5hex(data), len(data))
	}
	if _, err := os.Lstat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(source) = %v, want %v", err, fs.ErrNotExist)
	}
	p, _ := b.LocalPath("v/original")
	after, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("object is not the imported file itself: it was copied, not renamed")
	}
	st, err := b.Stat(t.Context(), "v/original")
	if err != nil || st.ContentType != "video/mp4" || st.ETag != a.ETag {
		t.Errorf("Stat = %+v, %v, want %+v", st, err, a)
	}
}

// TestImportAcrossFileSystems imports from a tmpfs, where a rename fails.
func TestImportAcrossFileSystems(t *testing.T) {
	other, err := os.MkdirTemp("/dev/shm", "fileblob")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	b, root := open(t)
	src := filepath.Join(other, "upload")
	data := []byte("uploaded elsewhere")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(src, filepath.Join(root, "probe")); err == nil {
		t.Skip("/dev/shm is on the same file system as the bucket")
	}

	// A mismatch leaves the source in place.
	if _, err := b.Import(t.Context(), "v/x", src, blob.PutOptions{Size: 1}); !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("Import with wrong size = %v, want %v", err, blob.ErrSizeMismatch)
	}
	if _, err := os.Lstat(src); err != nil {
		t.Fatalf("source after failed Import: %v", err)
	}

	a, err := b.Import(t.Context(), "v/x", src, blob.PutOptions{Size: -1})
	if err != nil {
		t.Fatalf("Import = %v", err)
	}
	if a.ETag != md5hex(data) {
		t.Errorf("Import().ETag = %q, want %q", a.ETag, md5hex(data))
	}
	if _, err := os.Lstat(src); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(source) = %v, want %v", err, fs.ErrNotExist)
	}
	if got := read(t, b, "v/x"); !bytes.Equal(got, data) {
		t.Errorf("content = %q, want %q", got, data)
	}
}

func TestImportRefusesSymlink(t *testing.T) {
	b, root := open(t)
	target := filepath.Join(filepath.Dir(root), "target")
	if err := os.WriteFile(target, []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(filepath.Dir(root), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("cannot make symbolic links here: %v", err)
	}
	if _, err := b.Import(t.Context(), "k", link, blob.PutOptions{Size: -1}); err == nil {
		t.Errorf("Import of a symbolic link = nil error, want one")
	}
	if _, err := os.Lstat(link); err != nil {
		t.Errorf("link after failed Import: %v", err)
	}
}

// TestTempEmptyAfterFailures checks that no failed write leaves a
// temporary file behind.
func TestTempEmptyAfterFailures(t *testing.T) {
	ctx := t.Context()
	b, root := open(t)
	put(t, b, "exists", []byte("old"), "")
	put(t, b, "file", []byte("f"), "")
	data := []byte("some content")
	for _, opts := range []blob.PutOptions{
		{Size: 1},
		{Size: 100},
		{Size: -1, SHA256: make([]byte, 32)},
	} {
		for _, key := range []string{"new", "exists"} {
			if _, err := b.Put(ctx, key, bytes.NewReader(data), opts); err == nil {
				t.Errorf("Put(%q, %+v) = nil error, want one", key, opts)
			}
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	r := &cancelAfter{r: bytes.NewReader(make([]byte, 1<<20)), cancel: cancel}
	if _, err := b.Put(cctx, "new", r, blob.PutOptions{Size: -1}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Put = %v, want %v", err, context.Canceled)
	}
	if _, err := b.Put(ctx, "new", iotest.ErrReader(errors.New("network gone")), blob.PutOptions{Size: -1}); err == nil {
		t.Errorf("Put from a failing reader = nil error, want one")
	}
	if _, err := b.Put(ctx, "file/below", bytes.NewReader(data), blob.PutOptions{Size: -1}); err == nil {
		t.Errorf("Put below an object = nil error, want one")
	}
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Import(ctx, "new", src, blob.PutOptions{Size: 1}); err == nil {
		t.Errorf("Import with wrong size = nil error, want one")
	}
	entries, err := os.ReadDir(filepath.Join(root, ".tmp"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in .tmp: %s", e.Name())
	}
	if got := read(t, b, "exists"); string(got) != "old" {
		t.Errorf("exists = %q, want %q", got, "old")
	}
}

func TestOpenRemovesStaleTemps(t *testing.T) {
	b, root := open(t)
	b.Close()
	stale := filepath.Join(root, ".tmp", "put-stale")
	fresh := filepath.Join(root, ".tmp", "put-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	openAt(t, root)
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lstat(stale temp) = %v, want %v", err, fs.ErrNotExist)
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("Lstat(fresh temp) = %v, want it kept: it may be a live write", err)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := fileblob.Open(t.TempDir(), ""); err == nil {
		t.Errorf("Open with an empty name = nil error, want one")
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fileblob.Open(f, "test"); err == nil {
		t.Errorf("Open on a file = nil error, want one")
	}
}

func eachSidecar(t *testing.T, root string, fn func(path string)) {
	t.Helper()
	err := filepath.WalkDir(filepath.Join(root, ".meta"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fn(p)
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
}

func removeAll(t *testing.T, p string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
}

func md5hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.n > 64<<10 {
		c.cancel()
	}
	n, err := c.r.Read(p[:min(len(p), 4096)])
	c.n += n
	return n, err
}
