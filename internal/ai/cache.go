package ai

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/sluice-media/sluice/internal/blob"
)

// Cache stores results of provider calls by key (a hex SHA-256 of the
// task, provider, model, parameters and input). A miss is (nil, false,
// nil); errors are for a store that cannot answer, and the gateway treats
// them as a miss.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Put(ctx context.Context, key string, value []byte) error
}

// MaxCacheValue bounds what FileCache stores for one key. Results are
// text (a transcript of an hour of speech is about 100 KB as JSON).
const MaxCacheValue = 4 << 20

// ErrCacheValueTooLarge is returned by FileCache.Put for a value over
// MaxCacheValue.
var ErrCacheValueTooLarge = errors.New("ai: cache value too large")

// FileCache is a Cache in a directory: one file per key, under
// subdirectories named by the key's first two hex digits so that no
// directory grows past a few thousand entries. Writes go to a temporary
// file renamed into place, so readers see a whole value or none, also
// across processes sharing the directory. Nothing is evicted: the results
// are small, and the directory can be emptied at any time.
type FileCache struct {
	dir string
}

var _ Cache = (*FileCache)(nil)

// NewFileCache returns a cache in dir, creating it if needed.
func NewFileCache(dir string) (*FileCache, error) {
	if dir == "" {
		return nil, errors.New("ai: cache directory not set")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("ai: cache: %w", err)
	}
	return &FileCache{dir: dir}, nil
}

// checkKey accepts only the keys cacheKey makes: lower-case hex, so
// that a key can never name a path or object outside the cache.
func checkKey(key string) error {
	if len(key) < 4 || len(key) > 128 {
		return fmt.Errorf("ai: cache: invalid key %q", key)
	}
	for _, r := range key {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return fmt.Errorf("ai: cache: invalid key %q", key)
		}
	}
	return nil
}

func (c *FileCache) path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(c.dir, key[:2], key[2:]), nil
}

// Get returns the value stored for key. A file larger than MaxCacheValue
// (not written by Put) reads as a miss.
func (c *FileCache) Get(_ context.Context, key string) ([]byte, bool, error) {
	p, err := c.path(key)
	if err != nil {
		return nil, false, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ai: cache: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxCacheValue+1))
	if err != nil {
		return nil, false, fmt.Errorf("ai: cache: %w", err)
	}
	if len(data) > MaxCacheValue {
		return nil, false, nil
	}
	return data, true, nil
}

// Put stores value under key, replacing any earlier value.
func (c *FileCache) Put(_ context.Context, key string, value []byte) error {
	if len(value) > MaxCacheValue {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrCacheValueTooLarge, len(value), MaxCacheValue)
	}
	p, err := c.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("ai: cache: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("ai: cache: %w", err)
	}
	_, werr := tmp.Write(value)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("ai: cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("ai: cache: %w", err)
	}
	return nil
}

// BucketCache is a Cache in an object store: one object per key under a
// prefix. With a bucket every worker shares (S3, R2), every worker reuses
// every result, where FileCache serves one machine. Objects under the
// prefix are never delivered (delivery serves assets/ only); a bucket
// lifecycle rule on the prefix is the eviction policy.
type BucketCache struct {
	Bucket blob.Bucket
	Prefix string // e.g. "cache/ai/"
}

var _ Cache = BucketCache{}

// Get returns the value stored for key; an object larger than
// MaxCacheValue reads as a miss.
func (c BucketCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := checkKey(key); err != nil {
		return nil, false, err
	}
	o, err := c.Bucket.Open(ctx, c.Prefix+key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("ai: cache: %w", err)
	}
	defer o.Close()
	if o.Attrs().Size > MaxCacheValue {
		return nil, false, nil
	}
	data, err := io.ReadAll(io.LimitReader(o, MaxCacheValue+1))
	if err != nil {
		return nil, false, fmt.Errorf("ai: cache: %w", err)
	}
	if len(data) > MaxCacheValue {
		return nil, false, nil
	}
	return data, true, nil
}

// Put stores value under key, replacing any earlier value.
func (c BucketCache) Put(ctx context.Context, key string, value []byte) error {
	if len(value) > MaxCacheValue {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrCacheValueTooLarge, len(value), MaxCacheValue)
	}
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := c.Bucket.Put(ctx, c.Prefix+key, bytes.NewReader(value),
		blob.PutOptions{ContentType: "application/json", Size: int64(len(value))})
	if err != nil {
		return fmt.Errorf("ai: cache: %w", err)
	}
	return nil
}

// keyHasher builds the hash of a request: every field is written with its
// length first, so that no two different requests encode alike.
type keyHasher struct{ h hash.Hash }

func newKeyHasher() keyHasher { return keyHasher{sha256.New()} }

func (d keyHasher) bytes(b []byte) keyHasher {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	d.h.Write(n[:])
	d.h.Write(b)
	return d
}

func (d keyHasher) str(s string) keyHasher { return d.bytes([]byte(s)) }

func (d keyHasher) int(i int) keyHasher {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(i))
	return d.bytes(n[:])
}

func (d keyHasher) float(f float64) keyHasher {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], math.Float64bits(f))
	return d.bytes(n[:])
}

func (d keyHasher) strs(ss []string) keyHasher {
	d.int(len(ss))
	for _, s := range ss {
		d.str(s)
	}
	return d
}

// content writes the SHA-256 of large input, so that the request keyHasher
// is over a fixed-size summary of it.
func (d keyHasher) content(b []byte) keyHasher {
	sum := sha256.Sum256(b)
	return d.bytes(sum[:])
}

func (d keyHasher) image(im Image) keyHasher { return d.str(im.ContentType).content(im.Data) }

func (d keyHasher) sum() []byte { return d.h.Sum(nil) }

// cacheKey is the key of one task's result from one provider and model
// for a request whose keyHasher is req.
func cacheKey(t Task, provider, model string, req []byte) string {
	return hex.EncodeToString(newKeyHasher().str("sluice-ai/1").str(string(t)).str(provider).str(model).bytes(req).sum())
}
