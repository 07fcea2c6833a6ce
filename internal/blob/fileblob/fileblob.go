// Package fileblob is the embedded blob driver: a bucket kept as plain
// files in a directory, by default one under Sluice's data dir, so that a
// single binary runs without an object store. Key "a/b/c.jpg" is the file
// root/a/b/c.jpg, which FFmpeg reads in place (blob.LocalPather) and into
// which a finished upload is renamed (blob.Importer).
//
// Writes are streamed to root/.tmp and renamed into place, so a reader
// sees the old object or the whole new one. Each object's size, content
// type and MD5 ETag are kept in a sidecar under root/.meta so that Stat
// and Open need not rehash. A sidecar is trusted only while it matches the
// file's inode, size and modification time; otherwise (after a crash
// between the rename and the sidecar write, say) it is rebuilt from the
// data, and the content type is sniffed, since the one given is lost.
//
// Keys whose first segment starts with '.' are refused, as the driver's
// own files live there, and so are keys that pass through a symbolic link.
// A file system cannot hold both "a" and "a/b", which S3 can: such a Put
// fails with blob.ErrInvalidKey. A root should be used by one Bucket at a
// time, since the locks that keep objects and sidecars in step are the
// Bucket's.
package fileblob

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-media/sluice/internal/blob"
)

const (
	tmpDir   = ".tmp"
	metaDir  = ".meta"
	dirPerm  = 0o750
	filePerm = 0o640

	// staleTemp is the age at which Open removes a temporary file left by
	// a crash: far longer than any live write stays idle.
	staleTemp = 24 * time.Hour

	copyBuf = 256 << 10
)

var (
	_ blob.Bucket      = (*Bucket)(nil)
	_ blob.LocalPather = (*Bucket)(nil)
	_ blob.Importer    = (*Bucket)(nil)
)

// errNotDir reports that a parent on a key's path is a file.
var errNotDir = errors.New("fileblob: a parent of the key is not a directory")

// Bucket is a bucket of plain files. Its methods are safe for concurrent use.
type Bucket struct {
	name string
	dir  string   // absolute path of the root
	root *os.Root // keeps every operation inside dir, whatever links appear
	dev  uint64   // device of dir/.tmp, to tell whether Import can rename
	seed maphash.Seed

	// keys, striped by key, are held for writing across the rename of an
	// object and its sidecar write, and for reading while both are read,
	// so that the two match whenever no crash came between.
	keys [64]sync.RWMutex
	// dirs is held for reading while a write creates parent directories
	// and renames into them, and for writing while Delete removes empty
	// ones, which would otherwise vanish between the two.
	dirs sync.RWMutex
}

// Open opens the bucket stored under root, creating root if it is missing.
// name is the bucket's name as it appears in events. Call Close when done.
func Open(root, name string) (*Bucket, error) {
	if name == "" {
		return nil, errors.New("fileblob: empty bucket name")
	}
	dir, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("fileblob: %w", err)
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("fileblob: %w", err)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fileblob: %w", err)
	}
	b := &Bucket{name: name, dir: dir, root: r, seed: maphash.MakeSeed()}
	for _, d := range []string{tmpDir, metaDir} {
		if err := r.Mkdir(d, dirPerm); err != nil && !errors.Is(err, fs.ErrExist) {
			r.Close()
			return nil, fmt.Errorf("fileblob: %w", err)
		}
		fi, err := r.Lstat(d)
		if err != nil || !fi.IsDir() {
			r.Close()
			return nil, fmt.Errorf("fileblob: %s is not a directory", filepath.Join(dir, d))
		}
		if d == tmpDir {
			b.dev, _ = device(fi)
		}
	}
	b.removeStaleTemps(time.Now().Add(-staleTemp))
	return b, nil
}

// Close releases the root directory; the bucket is unusable afterwards.
func (b *Bucket) Close() error { return b.root.Close() }

// Name returns the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Put streams r into a temporary file, checks it against opts, and renames
// it over key. On any failure the temporary file is removed and whatever
// was stored under key is left as it was. Cancelling ctx is noticed
// between reads of r, not during one.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	a, err := b.put(ctx, key, r, opts)
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("fileblob: put %s: %w", quote(key), err)
	}
	return a, nil
}

func (b *Bucket) put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	if err := checkPut(key, opts); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, err
	}
	// Fail before streaming what could never be stored.
	if err := b.checkWritable(key); err != nil {
		return blob.Attrs{}, err
	}
	st, err := b.stage(ctx, r, opts)
	if err != nil {
		return blob.Attrs{}, err
	}
	a, err := b.commit(ctx, key, st)
	if err != nil {
		b.root.Remove(st.name)
		return blob.Attrs{}, err
	}
	return a, nil
}

// staged is a checked, synced temporary file ready to become an object.
type staged struct {
	name        string      // relative to the root
	info        fs.FileInfo // of the file, which a rename keeps
	etag        string
	contentType string
}

func (b *Bucket) stage(ctx context.Context, r io.Reader, opts blob.PutOptions) (staged, error) {
	name := path.Join(tmpDir, "put-"+rand.Text())
	f, err := b.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, filePerm)
	if err != nil {
		return staged{}, err
	}
	st, err := func() (staged, error) {
		d := blob.NewDigest(opts)
		if _, err := io.CopyBuffer(io.MultiWriter(f, d), limit(ctx, r, opts.Size), make([]byte, copyBuf)); err != nil {
			return staged{}, err
		}
		if err := d.Verify(opts); err != nil {
			return staged{}, err
		}
		if err := ctx.Err(); err != nil {
			return staged{}, err
		}
		if err := f.Sync(); err != nil {
			return staged{}, err
		}
		fi, err := f.Stat()
		if err != nil {
			return staged{}, err
		}
		return staged{name: name, info: fi, etag: d.ETag(), contentType: d.ContentType(opts.ContentType)}, nil
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.root.Remove(name)
		return staged{}, err
	}
	return st, nil
}

// commit renames a staged file over key, records its sidecar, and makes
// the rename durable. Once the rename is done the object is stored, so
// only a failure of that last step is reported after it.
func (b *Bucket) commit(ctx context.Context, key string, st staged) (blob.Attrs, error) {
	a, newDir, err := b.rename(ctx, key, st)
	if err != nil {
		return blob.Attrs{}, err
	}
	// Outside the locks, so that readers of key do not wait for the disk.
	// A directory that a Delete has removed meanwhile needs no sync.
	for dir := path.Dir(key); ; dir = path.Dir(dir) {
		if err := b.syncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return blob.Attrs{}, err
		}
		// A directory MkdirAll made is durable once its parent is synced.
		if !newDir || dir == "." {
			break
		}
	}
	return a, nil
}

// rename does commit's work under the locks. newDir reports that it had
// to create key's parent directory.
func (b *Bucket) rename(ctx context.Context, key string, st staged) (a blob.Attrs, newDir bool, err error) {
	mu := b.lock(key)
	mu.Lock()
	defer mu.Unlock()
	b.dirs.RLock()
	defer b.dirs.RUnlock()

	// Again, since the tree may have changed while the data came in.
	if err := b.checkWritable(key); err != nil {
		return blob.Attrs{}, false, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, false, err
	}
	if dir := path.Dir(key); dir != "." {
		if _, err := b.root.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			newDir = true
		}
		if err := b.root.MkdirAll(dir, dirPerm); err != nil {
			return blob.Attrs{}, false, conflictOr(key, err)
		}
	}
	if err := b.root.Rename(st.name, key); err != nil {
		return blob.Attrs{}, false, conflictOr(key, err)
	}
	a = blob.Attrs{
		Key:         key,
		Size:        st.info.Size(),
		ContentType: st.contentType,
		ETag:        st.etag,
		ModTime:     st.info.ModTime(),
	}
	b.writeMeta(a, st.info)
	return a, newDir, nil
}

func (b *Bucket) syncDir(dir string) error {
	if !syncDirs {
		return nil
	}
	d, err := b.root.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Open opens the object under key for reading.
func (b *Bucket) Open(ctx context.Context, key string) (blob.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mu := b.lock(key)
	mu.RLock()
	f, fi, err := b.openData(key)
	if err != nil {
		mu.RUnlock()
		return nil, err
	}
	a, ok := b.readMeta(key, fi)
	mu.RUnlock()
	if !ok {
		if a, err = b.rebuild(ctx, key, f, fi); err != nil {
			f.Close()
			return nil, fmt.Errorf("fileblob: open %s: %w", quote(key), err)
		}
	}
	return &object{f: f, attrs: a}, nil
}

func (b *Bucket) openData(key string) (*os.File, fs.FileInfo, error) {
	if _, err := b.objectInfo(key); err != nil {
		return nil, nil, err
	}
	f, err := b.root.Open(key)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil, notFound(key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fileblob: open %s: %w", quote(key), err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("fileblob: open %s: %w", quote(key), err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, notFound(key)
	}
	return f, fi, nil
}

// Stat returns the attributes of the object under key.
func (b *Bucket) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	if err := checkKey(key); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, err
	}
	mu := b.lock(key)
	mu.RLock()
	fi, err := b.objectInfo(key)
	if err != nil {
		mu.RUnlock()
		return blob.Attrs{}, err
	}
	a, ok := b.readMeta(key, fi)
	mu.RUnlock()
	if ok {
		return a, nil
	}
	o, err := b.Open(ctx, key)
	if err != nil {
		return blob.Attrs{}, err
	}
	defer o.Close()
	return o.Attrs(), nil
}

// objectInfo returns the Lstat of the file holding key, or ErrNotFound
// where there is none.
func (b *Bucket) objectInfo(key string) (fs.FileInfo, error) {
	fi, err := b.inspect(key)
	if errors.Is(err, errNotDir) || (err == nil && (fi == nil || !fi.Mode().IsRegular())) {
		return nil, notFound(key)
	}
	return fi, err
}

// Delete removes the object under key and then its parent directories,
// up to the root, that are left empty, so that they do not stand in the
// way of a later key equal to one of their paths.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	mu := b.lock(key)
	mu.Lock()
	fi, err := b.inspect(key)
	if errors.Is(err, errNotDir) {
		fi, err = nil, nil
	}
	if err != nil {
		mu.Unlock()
		return fmt.Errorf("fileblob: delete %s: %w", quote(key), err)
	}
	removed := false
	if fi != nil && !fi.IsDir() {
		if err := b.root.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			mu.Unlock()
			return fmt.Errorf("fileblob: delete %s: %w", quote(key), err)
		}
		removed = true
	}
	if err := b.root.Remove(metaPath(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		mu.Unlock()
		return fmt.Errorf("fileblob: delete %s: %w", quote(key), err)
	}
	mu.Unlock()
	if removed {
		b.prune(path.Dir(key))
	}
	return nil
}

func (b *Bucket) prune(dir string) {
	b.dirs.Lock()
	defer b.dirs.Unlock()
	for ; dir != "."; dir = path.Dir(dir) {
		// A write may have put an object where the directory was.
		if fi, err := b.root.Lstat(dir); err != nil || !fi.IsDir() {
			return
		}
		if b.root.Remove(dir) != nil {
			return // not empty
		}
	}
}

// List returns the attributes of the objects whose key starts with prefix,
// in lexical key order. Only the directory named by prefix up to its last
// '/' is walked.
func (b *Bucket) List(ctx context.Context, prefix string) ([]blob.Attrs, error) {
	start := "."
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
		if checkKey(start) != nil {
			return nil, nil // no key can start with prefix
		}
		fi, err := b.inspect(start)
		if errors.Is(err, errNotDir) || errors.Is(err, blob.ErrInvalidKey) || (err == nil && (fi == nil || !fi.IsDir())) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("fileblob: list %s: %w", quote(prefix), err)
		}
	}
	var out []blob.Attrs
	err := fs.WalkDir(b.root.FS(), start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Deleted while we walked.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case p == start:
			return nil
		case start == "." && strings.HasPrefix(p, "."):
			if d.IsDir() {
				return fs.SkipDir // the driver's own files
			}
			return nil
		case d.IsDir():
			if !strings.HasPrefix(p+"/", prefix) {
				return fs.SkipDir
			}
			return nil
		case !d.Type().IsRegular() || !strings.HasPrefix(p, prefix) || checkKey(p) != nil:
			return nil
		}
		a, err := b.Stat(ctx, p)
		if errors.Is(err, blob.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fileblob: list %s: %w", quote(prefix), err)
	}
	// A walk is in order per directory, which is not key order: "a.txt"
	// sorts before "a/b" but is visited after it.
	slices.SortFunc(out, func(x, y blob.Attrs) int { return strings.Compare(x.Key, y.Key) })
	return out, nil
}

// LocalPath returns the path of the file that holds key's object, without
// checking that there is one. The path is for reading: writing to it
// loses the object's content type. It names the current object only until
// the next Put, Import or Delete of key, though a file opened through it
// keeps its content.
func (b *Bucket) LocalPath(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	// Unlike the bucket's own methods, FFmpeg would follow a link.
	if _, err := b.inspect(key); err != nil && !errors.Is(err, errNotDir) {
		return "", fmt.Errorf("fileblob: local path %s: %w", quote(key), err)
	}
	return filepath.Join(b.dir, filepath.FromSlash(key)), nil
}

// Import moves the regular file at src under key. It reads the file once
// to compute its ETag and check it against opts, then renames it into
// place; across file systems it copies it and removes src instead. When
// Import fails, src is where it was.
func (b *Bucket) Import(ctx context.Context, key, src string, opts blob.PutOptions) (blob.Attrs, error) {
	a, err := b.importRename(ctx, key, src, opts)
	if errors.Is(err, errCrossDevice) {
		a, err = b.importCopy(ctx, key, src, opts)
	}
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("fileblob: import %s: %w", quote(key), err)
	}
	return a, nil
}

var errCrossDevice = errors.New("fileblob: source is on another file system")

func (b *Bucket) importRename(ctx context.Context, key, src string, opts blob.PutOptions) (blob.Attrs, error) {
	if err := checkPut(key, opts); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, err
	}
	if err := b.checkWritable(key); err != nil {
		return blob.Attrs{}, err
	}
	li, err := os.Lstat(src)
	if err != nil {
		return blob.Attrs{}, err
	}
	if !li.Mode().IsRegular() {
		return blob.Attrs{}, fmt.Errorf("%s is not a regular file", src)
	}
	if dev, ok := device(li); ok && dev != b.dev {
		return blob.Attrs{}, errCrossDevice
	}
	f, err := os.Open(src)
	if err != nil {
		return blob.Attrs{}, err
	}
	d := blob.NewDigest(opts)
	_, err = io.CopyBuffer(d, limit(ctx, f, opts.Size), make([]byte, copyBuf))
	if err == nil {
		err = d.Verify(opts)
	}
	if err == nil {
		// The file becomes the object as it is; make it as durable as a
		// staged one.
		err = f.Sync()
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	f.Close()
	if err != nil {
		return blob.Attrs{}, err
	}

	tmp := path.Join(tmpDir, "import-"+rand.Text())
	tmpPath := filepath.Join(b.dir, filepath.FromSlash(tmp))
	if err := os.Rename(src, tmpPath); err != nil {
		if errors.Is(err, syscall.EXDEV) {
			return blob.Attrs{}, errCrossDevice
		}
		return blob.Attrs{}, err
	}
	moved, err := b.root.Lstat(tmp)
	if err == nil && !sameVersion(moved, fi) {
		err = fmt.Errorf("%s changed while it was imported", src)
	}
	var a blob.Attrs
	if err == nil {
		a, err = b.commit(ctx, key, staged{name: tmp, info: moved, etag: d.ETag(), contentType: d.ContentType(opts.ContentType)})
	}
	if err != nil {
		// The caller still owns the file when Import fails.
		// If the rename over key happened, only its sync failed, and the
		// file is now the object.
		if rerr := os.Rename(tmpPath, src); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = fmt.Errorf("%w (and could not move it back from %s: %v)", err, tmpPath, rerr)
		}
		return blob.Attrs{}, err
	}
	return a, nil
}

func (b *Bucket) importCopy(ctx context.Context, key, src string, opts blob.PutOptions) (blob.Attrs, error) {
	f, err := os.Open(src)
	if err != nil {
		return blob.Attrs{}, err
	}
	st, err := b.stage(ctx, f, opts)
	f.Close()
	if err != nil {
		return blob.Attrs{}, err
	}
	a, err := b.commit(ctx, key, st)
	if err != nil {
		b.root.Remove(st.name)
		return blob.Attrs{}, err
	}
	if err := os.Remove(src); err != nil {
		return blob.Attrs{}, fmt.Errorf("stored, but the source remains: %w", err)
	}
	return a, nil
}

// object is an open object file.
type object struct {
	f     *os.File
	attrs blob.Attrs
}

func (o *object) Read(p []byte) (int, error)                   { return o.f.Read(p) }
func (o *object) Seek(offset int64, whence int) (int64, error) { return o.f.Seek(offset, whence) }
func (o *object) Close() error                                 { return o.f.Close() }
func (o *object) Attrs() blob.Attrs                            { return o.attrs }

func (b *Bucket) lock(key string) *sync.RWMutex {
	return &b.keys[maphash.String(b.seed, key)%uint64(len(b.keys))]
}

// inspect Lstats each element of key's path. It returns the final
// element's info, nil if it does not exist, and errNotDir where a parent
// is a file. Any symbolic link on the path makes the key invalid: os.Root
// would follow one that stays inside the root, but a key should name one
// file only, and FFmpeg, reading a LocalPath, would follow any link.
func (b *Bucket) inspect(key string) (fs.FileInfo, error) {
	p := b.dir
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		p = filepath.Join(p, seg)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, nil
		case errors.Is(err, syscall.ENOTDIR):
			return nil, errNotDir
		case errors.Is(err, syscall.ENAMETOOLONG):
			return nil, invalidKey(key, "too long for this file system")
		case err != nil:
			return nil, err
		case fi.Mode()&fs.ModeSymlink != 0:
			return nil, invalidKey(key, "it passes through a symbolic link")
		case i == len(segs)-1:
			return fi, nil
		case !fi.IsDir():
			return nil, errNotDir
		}
	}
	return nil, nil // not reached: segs is never empty
}

// checkWritable reports whether a file could be renamed to key's path.
func (b *Bucket) checkWritable(key string) error {
	fi, err := b.inspect(key)
	switch {
	case errors.Is(err, errNotDir):
		return conflict(key)
	case err != nil:
		return err
	case fi != nil && fi.IsDir():
		return conflict(key)
	}
	return nil
}

func (b *Bucket) removeStaleTemps(before time.Time) {
	entries, err := fs.ReadDir(b.root.FS(), tmpDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().Before(before) {
			b.root.Remove(path.Join(tmpDir, e.Name()))
		}
	}
}

// sidecar is the JSON kept for each object under .meta. Size, ModTime and
// Inode identify the data file it describes.
type sidecar struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
	ETag        string `json:"etag"`
	ModTime     int64  `json:"mod_time_ns"`
	Inode       uint64 `json:"inode,omitempty"`
}

// metaPath names a key's sidecar by a hash of the key rather than by the
// key itself, so that the sidecars of "a" and "a.json/b" cannot collide as
// file and directory, and a long key segment cannot overflow a file name.
func metaPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	return path.Join(metaDir, h[:2], h+".json")
}

func (b *Bucket) readMeta(key string, fi fs.FileInfo) (blob.Attrs, bool) {
	data, err := b.root.ReadFile(metaPath(key))
	if err != nil {
		return blob.Attrs{}, false
	}
	var m sidecar
	if json.Unmarshal(data, &m) != nil ||
		m.Key != key || m.Size != fi.Size() || m.ModTime != fi.ModTime().UnixNano() ||
		m.Inode != inode(fi) || len(m.ETag) != 2*md5.Size {
		return blob.Attrs{}, false
	}
	return blob.Attrs{Key: key, Size: m.Size, ContentType: m.ContentType, ETag: m.ETag, ModTime: fi.ModTime()}, true
}

// writeMeta records a's sidecar. Failure is ignored: a missing or stale
// sidecar is rebuilt from the data, which is what counts. Nor is the
// sidecar synced, for the same reason.
func (b *Bucket) writeMeta(a blob.Attrs, fi fs.FileInfo) {
	data, err := json.Marshal(sidecar{
		Key:         a.Key,
		Size:        a.Size,
		ContentType: a.ContentType,
		ETag:        a.ETag,
		ModTime:     fi.ModTime().UnixNano(),
		Inode:       inode(fi),
	})
	if err != nil {
		return
	}
	tmp := path.Join(tmpDir, "meta-"+rand.Text())
	p := metaPath(a.Key)
	err = b.root.WriteFile(tmp, data, filePerm)
	if err == nil {
		err = b.root.MkdirAll(path.Dir(p), dirPerm)
	}
	if err == nil {
		err = b.root.Rename(tmp, p)
	}
	if err != nil {
		b.root.Remove(tmp)
	}
}

// rebuild computes the attributes of the open object file f from its
// content and records them, unless the file was replaced meanwhile.
func (b *Bucket) rebuild(ctx context.Context, key string, f *os.File, fi fs.FileInfo) (blob.Attrs, error) {
	d := blob.NewDigest(blob.PutOptions{})
	// A SectionReader leaves f's offset at 0 for the caller.
	if _, err := io.CopyBuffer(d, limit(ctx, io.NewSectionReader(f, 0, fi.Size()), -1), make([]byte, copyBuf)); err != nil {
		return blob.Attrs{}, err
	}
	a := blob.Attrs{Key: key, Size: fi.Size(), ContentType: d.ContentType(""), ETag: d.ETag(), ModTime: fi.ModTime()}
	if d.Size() != fi.Size() {
		return a, nil // changed in place while we read it
	}
	mu := b.lock(key)
	mu.Lock()
	defer mu.Unlock()
	if cur, err := b.objectInfo(key); err == nil && sameVersion(cur, fi) {
		b.writeMeta(a, fi)
	}
	return a, nil
}

func sameVersion(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// limit makes r stop at ctx's cancellation and, when size is known, after
// size+1 bytes: one more than declared tells that r is too long without
// draining it.
func limit(ctx context.Context, r io.Reader, size int64) io.Reader {
	var lr io.Reader = readFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return r.Read(p)
	})
	if size >= 0 && size < math.MaxInt64 {
		lr = io.LimitReader(lr, size+1)
	}
	return lr
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

func checkKey(key string) error {
	if blob.ValidateKey(key) != nil {
		return invalidKey(key, "")
	}
	if key[0] == '.' {
		return invalidKey(key, "a first segment starting with '.' is reserved for the driver")
	}
	return nil
}

func checkPut(key string, opts blob.PutOptions) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if n := len(opts.SHA256); n != 0 && n != sha256.Size {
		return fmt.Errorf("fileblob: SHA256 option has %d bytes, want %d", n, sha256.Size)
	}
	return nil
}

func invalidKey(key, why string) error {
	if why == "" {
		return fmt.Errorf("%w %s", blob.ErrInvalidKey, quote(key))
	}
	return fmt.Errorf("%w %s: %s", blob.ErrInvalidKey, quote(key), why)
}

func conflict(key string) error {
	return invalidKey(key, "a file system cannot hold both a key and keys under it")
}

// conflictOr maps the errors of creating key's path over an object that
// is in the way to a conflict.
func conflictOr(key string, err error) error {
	if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) ||
		errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, fs.ErrExist) {
		return conflict(key)
	}
	if errors.Is(err, syscall.ENAMETOOLONG) {
		return invalidKey(key, "too long for this file system")
	}
	return err
}

func notFound(key string) error {
	return fmt.Errorf("%w: %s", blob.ErrNotFound, quote(key))
}

// quote quotes a key for an error message, shortening a long one.
func quote(key string) string {
	const maxLen = 80
	if len(key) > maxLen {
		return fmt.Sprintf("%q...", key[:maxLen])
	}
	return fmt.Sprintf("%q", key)
}
