// Package blob holds Sluice's view of object storage: a small Bucket
// interface that drivers implement, the errors they return, and helpers
// shared by all drivers. Uploads, workers and delivery use only this
// interface, so the embedded file bucket and an S3-compatible bucket are
// interchangeable; blobtest holds the conformance suite every driver passes.
//
// The interface is ours rather than gocloud.dev/blob's because Sluice needs
// three things that API does not give together: a local path to hand to
// FFmpeg without copying (LocalPather), a move-into-bucket for files that
// already sit on the same disk (Importer), and MD5 ETags computed while
// streaming so that the idempotency key of an object is known when its
// write returns.
package blob

import (
	"context"
	"errors"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Errors every driver maps its failures to; callers test with errors.Is.
// TmpPrefix is where drivers put objects of their own while they work
// (an S3 driver's parts of a large write); they are never content.
const TmpPrefix = ".tmp/"

var (
	ErrNotFound         = errors.New("blob: object not found")
	ErrInvalidKey       = errors.New("blob: invalid key")
	ErrChecksumMismatch = errors.New("blob: checksum mismatch")
	ErrSizeMismatch     = errors.New("blob: size mismatch")
)

// Attrs describe a stored object.
type Attrs struct {
	Key         string
	Size        int64
	ContentType string
	// ETag is the hex MD5 of the content, unquoted, as S3 reports it for
	// objects written in one part.
	ETag    string
	ModTime time.Time
}

// PutOptions constrain a write. A write that violates one is discarded:
// nothing becomes visible under the key.
type PutOptions struct {
	ContentType string
	// Size, when >= 0, is the exact number of bytes the reader must yield.
	// Use -1 for unknown.
	Size int64
	// SHA256, when set, is the raw 32-byte digest the content must have.
	SHA256 []byte
}

// Object is an open object: seekable, so that delivery can serve ranges.
type Object interface {
	io.ReadSeekCloser
	Attrs() Attrs
}

// Bucket is the driver interface. Writes are atomic: readers see either
// the old object or the whole new one, never a partial write.
type Bucket interface {
	// Name is the bucket name as it appears in events.
	Name() string
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (Attrs, error)
	Open(ctx context.Context, key string) (Object, error)
	Stat(ctx context.Context, key string) (Attrs, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the attributes of objects whose key starts with prefix,
	// in lexical key order.
	List(ctx context.Context, prefix string) ([]Attrs, error)
}

// LocalPather is implemented by buckets whose objects are plain local
// files, so that FFmpeg can read them in place instead of from a copy.
type LocalPather interface {
	LocalPath(key string) (string, error)
}

// Importer is implemented by buckets that can take over a local file,
// by rename when it is on the same file system, instead of copying it.
// The file is gone from path when Import succeeds.
type Importer interface {
	Import(ctx context.Context, key, path string, opts PutOptions) (Attrs, error)
}

// ValidateKey rejects keys that could escape a bucket's root or be
// misread by a driver: empty, absolute, with "." or ".." segments, empty
// segments, backslashes, control characters (C0 and C1), invalid UTF-8, or
// longer than 1024 bytes (S3's limit).
func ValidateKey(key string) error {
	if !utf8.ValidString(key) || key == "" || len(key) > 1024 || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return ErrInvalidKey
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return ErrInvalidKey
		}
	}
	for _, r := range key {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\\' {
			return ErrInvalidKey
		}
	}
	return nil
}

// Import stores the file at path under key, through the bucket's Importer
// when it has one and by streaming otherwise; the file is removed either way.
func Import(ctx context.Context, b Bucket, key, path string, opts PutOptions) (Attrs, error) {
	if im, ok := b.(Importer); ok {
		return im.Import(ctx, key, path, opts)
	}
	return importByCopy(ctx, b, key, path, opts)
}

// DeletePrefix deletes every object whose key starts with prefix and
// returns how many it deleted; one already gone counts as deleted. It
// goes on past a failed delete and reports every failure.
func DeletePrefix(ctx context.Context, b Bucket, prefix string) (int, error) {
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return 0, err
	}
	n := 0
	var errs []error
	for _, o := range objs {
		if err := b.Delete(ctx, o.Key); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
