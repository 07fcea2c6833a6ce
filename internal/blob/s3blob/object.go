package s3blob

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-media/sluice/internal/blob"
)

const (
	// keepMax is the size up to which an open object is read from the
	// open response alone, keeping what it read for seeks back.
	keepMax = 1 << 20
	// skipMax is how far a seek ahead is served by reading on and
	// discarding, rather than by a new request.
	skipMax = 256 << 10
)

// Open opens the object under key for reading. See the package doc for
// how reads stay on the version opened.
func (b *Bucket) Open(ctx context.Context, key string) (blob.Object, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &b.name, Key: &key})
	if err != nil {
		return nil, b.mapErr("open", key, err)
	}
	o := &object{
		ctx:   ctx,
		b:     b,
		attrs: attrs(key, out.ContentLength, out.ContentType, out.ETag, out.LastModified, out.Metadata),
		etag:  aws.ToString(out.ETag),
		body:  out.Body,
	}
	// "null" names the one unversioned object of a bucket whose
	// versioning is suspended, which an overwrite replaces.
	if v := aws.ToString(out.VersionId); v != "null" {
		o.version = v
	}
	o.keep = o.attrs.Size <= keepMax
	if o.keep {
		// A small object is read whole now, and described by what was
		// read: a server that updates an object's data and its stored
		// ETag in two steps (versitygw's posix backend) can answer a GET
		// racing an overwrite with one version's bytes and the other's
		// ETag.
		data, err := io.ReadAll(io.LimitReader(out.Body, keepMax+1))
		out.Body.Close()
		o.body = nil
		if err != nil {
			return nil, b.mapErr("open", key, err)
		}
		sum := md5.Sum(data)
		o.kept = data
		o.attrs.Size, o.attrs.ETag = int64(len(data)), hex.EncodeToString(sum[:])
	}
	return o, nil
}

// object is an open object: the open response's body, and ranged GETs
// pinned to its version where that cannot serve a read.
type object struct {
	// ctx is Open's. The first body is bound to it already, and the
	// ranged GETs that later reads send belong to the same use.
	ctx     context.Context
	b       *Bucket
	attrs   blob.Attrs
	etag    string // as the server sent it, for If-Match
	version string

	pos     int64
	body    io.ReadCloser // nil once closed or finished
	bodyPos int64         // the offset of body's next byte

	// keep is set for small objects, which are read from the first body
	// only; kept holds what was read of it, kept[i] the byte at i.
	keep   bool
	kept   []byte
	closed bool
}

func (o *object) Attrs() blob.Attrs { return o.attrs }

func (o *object) Read(p []byte) (int, error) {
	switch {
	case o.closed:
		return 0, fmt.Errorf("s3blob: read %s: object is closed", quote(o.attrs.Key))
	case o.pos >= o.attrs.Size:
		return 0, io.EOF
	case len(p) == 0:
		return 0, nil
	case o.keep:
		return o.readKept(p)
	}
	if err := o.position(); err != nil {
		return 0, err
	}
	n, err := o.body.Read(p[:min(int64(len(p)), o.attrs.Size-o.pos)])
	o.pos += int64(n)
	o.bodyPos += int64(n)
	if err == io.EOF {
		o.body.Close()
		o.body = nil
		if n == 0 && o.pos < o.attrs.Size {
			return 0, fmt.Errorf("s3blob: read %s: %w at %d of %d bytes", quote(o.attrs.Key), io.ErrUnexpectedEOF, o.pos, o.attrs.Size)
		}
		return n, nil
	}
	if err != nil {
		return n, o.readErr(err)
	}
	return n, nil
}

// readKept serves a small object's read from the bytes kept, reading on
// in the first body as far as it needs.
func (o *object) readKept(p []byte) (int, error) {
	for int64(len(o.kept)) <= o.pos {
		if o.body == nil {
			return 0, fmt.Errorf("s3blob: read %s: %w at %d of %d bytes", quote(o.attrs.Key), io.ErrUnexpectedEOF, len(o.kept), o.attrs.Size)
		}
		if o.kept == nil {
			o.kept = make([]byte, 0, o.attrs.Size)
		}
		n, err := o.body.Read(o.kept[len(o.kept):cap(o.kept)])
		o.kept = o.kept[:len(o.kept)+n]
		if err == io.EOF || int64(len(o.kept)) >= o.attrs.Size {
			o.body.Close()
			o.body = nil
			err = nil
		}
		if err != nil {
			return 0, o.readErr(err)
		}
	}
	n := copy(p, o.kept[o.pos:])
	o.pos += int64(n)
	return n, nil
}

// position makes body the one that yields the byte at pos: the current
// body, read on to pos when that is near, or a new ranged GET.
func (o *object) position() error {
	if o.body != nil && o.pos > o.bodyPos && o.pos-o.bodyPos <= skipMax {
		n, err := io.CopyN(io.Discard, o.body, o.pos-o.bodyPos)
		o.bodyPos += n
		if err != nil {
			o.body.Close()
			o.body = nil
		}
	}
	if o.body != nil && o.bodyPos == o.pos {
		return nil
	}
	if o.body != nil {
		o.body.Close()
		o.body = nil
	}
	in := &s3.GetObjectInput{
		Bucket:  &o.b.name,
		Key:     &o.attrs.Key,
		Range:   aws.String(fmt.Sprintf("bytes=%d-", o.pos)),
		IfMatch: &o.etag,
	}
	if o.version != "" {
		in.VersionId = &o.version
	}
	out, err := o.b.client.GetObject(o.ctx, in)
	if err != nil {
		if s := status(err); s == http.StatusPreconditionFailed || s == http.StatusNotFound {
			return fmt.Errorf("s3blob: read %s at %d: %w", quote(o.attrs.Key), o.pos, ErrChanged)
		}
		return o.readErr(err)
	}
	// A server that ignored the range would send the object from the start.
	if want := fmt.Sprintf("bytes %d-", o.pos); !strings.HasPrefix(aws.ToString(out.ContentRange), want) {
		out.Body.Close()
		return fmt.Errorf("s3blob: read %s: asked for bytes from %d, got range %q", quote(o.attrs.Key), o.pos, aws.ToString(out.ContentRange))
	}
	o.body, o.bodyPos = out.Body, o.pos
	return nil
}

func (o *object) readErr(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3blob: read %s: %w", quote(o.attrs.Key), ctxErr(err))
	}
	return fmt.Errorf("s3blob: read %s: %w", quote(o.attrs.Key), err)
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	if o.closed {
		return 0, fmt.Errorf("s3blob: seek %s: object is closed", quote(o.attrs.Key))
	}
	pos := offset
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		pos += o.pos
	case io.SeekEnd:
		pos += o.attrs.Size
	default:
		return 0, fmt.Errorf("s3blob: seek %s: invalid whence %d", quote(o.attrs.Key), whence)
	}
	if pos < 0 {
		return 0, fmt.Errorf("s3blob: seek %s: negative position %d", quote(o.attrs.Key), pos)
	}
	o.pos = pos
	return pos, nil
}

func (o *object) Close() error {
	if o.closed {
		return nil
	}
	o.closed = true
	o.kept = nil
	if o.body != nil {
		err := o.body.Close()
		o.body = nil
		return err
	}
	return nil
}
