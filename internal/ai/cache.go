package ai

import (
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

func (c *FileCache) path(key string) (string, error) {
	// Keys become file names: only lower-case hex, so a key can never
	// name a path outside the directory.
	if len(key) < 4 || len(key) > 128 {
		return "", fmt.Errorf("ai: cache: invalid key %q", key)
	}
	for _, r := range key {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return "", fmt.Errorf("ai: cache: invalid key %q", key)
		}
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
