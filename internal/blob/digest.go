package blob

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
)

// SniffLen is how many leading bytes Digest keeps for content-type
// sniffing: all that http.DetectContentType looks at.
const SniffLen = 512

// Digest hashes a stream as a driver writes it (the MD5 that becomes the
// ETag, and the SHA-256 when PutOptions asks for one), counts it and
// keeps its first bytes, so that every driver checks writes the same way.
type Digest struct {
	md5  hash.Hash
	sha  hash.Hash // nil unless a SHA-256 is to be checked
	head []byte
	n    int64
}

// NewDigest returns a Digest for a write with opts.
func NewDigest(opts PutOptions) *Digest {
	d := &Digest{md5: md5.New(), head: make([]byte, 0, SniffLen)}
	if len(opts.SHA256) > 0 {
		d.sha = sha256.New()
	}
	return d
}

// Write hashes p; it never fails.
func (d *Digest) Write(p []byte) (int, error) {
	d.md5.Write(p)
	if d.sha != nil {
		d.sha.Write(p)
	}
	if len(d.head) < SniffLen {
		d.head = append(d.head, p[:min(len(p), SniffLen-len(d.head))]...)
	}
	d.n += int64(len(p))
	return len(p), nil
}

// Size is how many bytes were written.
func (d *Digest) Size() int64 { return d.n }

// Verify checks what was written against opts' size and SHA-256.
func (d *Digest) Verify(opts PutOptions) error {
	switch {
	case opts.Size >= 0 && d.n > opts.Size:
		return fmt.Errorf("%w: more than the %d bytes declared", ErrSizeMismatch, opts.Size)
	case opts.Size >= 0 && d.n < opts.Size:
		return fmt.Errorf("%w: got %d bytes, declared %d", ErrSizeMismatch, d.n, opts.Size)
	case d.sha != nil:
		if sum := d.sha.Sum(nil); string(sum) != string(opts.SHA256) {
			return fmt.Errorf("%w: sha256 is %x, want %x", ErrChecksumMismatch, sum, opts.SHA256)
		}
	}
	return nil
}

// MD5 is the MD5 of what was written.
func (d *Digest) MD5() []byte { return d.md5.Sum(nil) }

// ETag is the hex MD5 of what was written.
func (d *Digest) ETag() string { return hex.EncodeToString(d.MD5()) }

// ContentType is given, or, when empty, the type sniffed from the first
// bytes written.
func (d *Digest) ContentType(given string) string {
	if given != "" {
		return given
	}
	return http.DetectContentType(d.head)
}
