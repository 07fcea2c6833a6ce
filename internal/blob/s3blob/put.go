package s3blob

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"

	"github.com/sluice-media/sluice/internal/blob"
)

const (
	readBuf = 64 << 10

	// cleanupTimeout bounds the requests that undo a failed write, which
	// run even when the write's context is cancelled.
	cleanupTimeout = 30 * time.Second
)

// copyMax is the largest object that CopyObject copies in one request;
// larger ones are copied part by part. A variable so that tests can reach
// the part-by-part path with small objects.
var copyMax int64 = 5 << 30

// dirRaceTries bounds the attempts of a write that a file-system backed
// server refused because of a concurrent write or delete nearby.
const dirRaceTries = 4

// putRetrying is put, tried again when the server refuses the write as
// "ExistingObjectIsDirectory" and the body can be rewound: versitygw's
// posix backend answers that when a delete removes an empty directory
// while this write creates a file in it; the write succeeds when tried
// again. Other failures are not retried here (the SDK retries what is
// safe to retry).
func (b *Bucket) putRetrying(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	seeker, _ := r.(io.Seeker)
	var start int64
	if seeker != nil {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			seeker = nil
		}
	}
	for try := 1; ; try++ {
		a, err := b.put(ctx, key, r, opts)
		var ae smithy.APIError
		if err == nil || seeker == nil || try == dirRaceTries || !errors.As(err, &ae) || ae.ErrorCode() != "ExistingObjectIsDirectory" {
			return a, err
		}
		if _, serr := seeker.Seek(start, io.SeekStart); serr != nil {
			return a, err
		}
		select {
		case <-ctx.Done():
			return a, err
		case <-time.After(time.Duration(try) * 10 * time.Millisecond):
		}
	}
}

// Put stores r under key, checked against opts; see the package doc for
// how each size is written. On any failure nothing new is visible under
// key and what was there stays.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader, opts blob.PutOptions) (blob.Attrs, error) {
	a, err := b.putRetrying(ctx, key, r, opts)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			err = ctxErr(err)
		}
		if errors.Is(err, blob.ErrInvalidKey) {
			return blob.Attrs{}, err
		}
		return blob.Attrs{}, fmt.Errorf("s3blob: put %s: %w", quote(key), err)
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
	partSize, err := b.partSizeFor(opts.Size)
	if err != nil {
		return blob.Attrs{}, err
	}
	src := bufio.NewReaderSize(limit(ctx, r, opts.Size), readBuf)
	d := blob.NewDigest(opts)
	if opts.Size > 0 && opts.Size <= partSize {
		return b.putStream(ctx, key, src, d, opts)
	}
	// Of unknown size, or larger than a part: read the first part, and
	// send it as one PUT if that is all there is.
	part, last, err := fill(src, nil, partSize)
	if err != nil {
		return blob.Attrs{}, err
	}
	d.Write(part)
	if last {
		return b.putBuffered(ctx, key, part, d, opts)
	}
	return b.putMultipart(ctx, key, src, part, d, opts)
}

// partSizeFor returns the part size for a write of size bytes: the
// configured one, or a larger one where that would take more than S3's
// 10,000 parts.
func (b *Bucket) partSizeFor(size int64) (int64, error) {
	if size <= b.partSize*maxParts {
		return b.partSize, nil
	}
	const mib = 1 << 20
	p := (size + maxParts - 1) / maxParts
	p = (p + mib - 1) / mib * mib
	if p > maxPartSize {
		return 0, fmt.Errorf("%d bytes is more than an S3 object can hold", size)
	}
	return p, nil
}

// putStream sends a write of known size as one streamed PUT.
func (b *Bucket) putStream(ctx context.Context, key string, src *bufio.Reader, d *blob.Digest, opts blob.PutOptions) (blob.Attrs, error) {
	contentType := opts.ContentType
	if contentType == "" {
		head, err := src.Peek(blob.SniffLen)
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return blob.Attrs{}, err
		}
		contentType = http.DetectContentType(head)
	}
	body := &checkedBody{src: src, left: opts.Size, d: d, opts: opts}
	in := &s3.PutObjectInput{
		Bucket:        &b.name,
		Key:           &key,
		Body:          body,
		ContentLength: aws.Int64(opts.Size),
		ContentType:   &contentType,
	}
	if opts.SHA256 != nil {
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(opts.SHA256))
	}
	out, err := b.client.PutObject(ctx, in, streaming)
	if berr := body.finish(); berr != nil {
		// The body's own verdict, rather than what the transport made of
		// the body ending early.
		return blob.Attrs{}, berr
	}
	if err != nil {
		return blob.Attrs{}, b.writeErr(ctx, err)
	}
	if etag := strings.Trim(aws.ToString(out.ETag), `"`); !strings.EqualFold(etag, d.ETag()) {
		return blob.Attrs{}, fmt.Errorf("stored, but the server's ETag %q is not the content's MD5 %s: buckets with SSE-KMS or SSE-C cannot be used", etag, d.ETag())
	}
	return blob.Attrs{Key: key, Size: d.Size(), ContentType: contentType, ETag: d.ETag(), ModTime: serverTime(out.ResultMetadata)}, nil
}

// streaming adapts a PutObject or UploadPart whose body can be read only
// once: the payload goes unsigned, since signing it would mean reading it
// twice, and the request is not retried, since it cannot be rewound.
func streaming(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
	o.Retryer = aws.NopRetryer{}
}

// checkedBody is the body of a streamed PUT. It withholds the last bytes
// until it has seen that the reader ends there and that the content
// matches the options; if not, it fails instead, so the server gets fewer
// bytes than the Content-Length and stores nothing.
//
// The transport may read a body on after the request has returned, when
// the server answered early; the mutex and done keep it from reading the
// caller's reader then.
type checkedBody struct {
	mu   sync.Mutex
	src  *bufio.Reader
	left int64
	d    *blob.Digest
	opts blob.PutOptions
	err  error
	done bool
}

var errBodyDone = errors.New("request finished")

func (c *checkedBody) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return 0, errBodyDone
	}
	if c.err != nil {
		return 0, c.err
	}
	if c.left == 0 {
		return 0, io.EOF
	}
	n, err := c.src.Read(p[:min(int64(len(p)), c.left)])
	c.d.Write(p[:n])
	c.left -= int64(n)
	switch {
	case c.left == 0:
		if _, err := c.src.Peek(1); err != io.EOF {
			if err == nil {
				err = fmt.Errorf("%w: more than the %d bytes declared", blob.ErrSizeMismatch, c.opts.Size)
			}
			c.err = err
		} else {
			c.err = c.d.Verify(c.opts)
		}
		if c.err != nil {
			return 0, c.err
		}
		return n, io.EOF
	case err == io.EOF:
		c.err = c.d.Verify(c.opts)
		return 0, c.err
	case err != nil:
		c.err = err
		return 0, err
	}
	return n, nil
}

// finish stops further reads and returns the body's verdict on the
// content, nil if it found nothing wrong.
func (c *checkedBody) finish() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done = true
	return c.err
}

// putBuffered writes a whole, already checked, content in one PUT.
func (b *Bucket) putBuffered(ctx context.Context, key string, data []byte, d *blob.Digest, opts blob.PutOptions) (blob.Attrs, error) {
	if err := d.Verify(opts); err != nil {
		return blob.Attrs{}, err
	}
	contentType := d.ContentType(opts.ContentType)
	in := &s3.PutObjectInput{
		Bucket:        &b.name,
		Key:           &key,
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   &contentType,
		ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(d.MD5())),
		Metadata:      map[string]string{metaMD5: d.ETag()},
	}
	if opts.SHA256 != nil {
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(opts.SHA256))
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return blob.Attrs{}, b.writeErr(ctx, err)
	}
	return blob.Attrs{Key: key, Size: d.Size(), ContentType: contentType, ETag: d.ETag(), ModTime: serverTime(out.ResultMetadata)}, nil
}

// putMultipart uploads src, whose first part is read already, in parts of
// that size to a temporary key, checks it, and copies it onto key.
func (b *Bucket) putMultipart(ctx context.Context, key string, src *bufio.Reader, part []byte, d *blob.Digest, opts blob.PutOptions) (blob.Attrs, error) {
	contentType := d.ContentType(opts.ContentType)
	tmp := blob.TmpPrefix + "put-" + rand.Text()
	up, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.name, Key: &tmp, ContentType: &contentType})
	if err != nil {
		return blob.Attrs{}, b.writeErr(ctx, err)
	}
	done := false
	defer func() {
		if !done {
			b.abort(ctx, tmp, up.UploadId)
		}
	}()

	var parts []types.CompletedPart
	partSize := int64(len(part)) // full, or it would have been a single PUT
	for num := int32(1); len(part) > 0; num++ {
		if num > maxParts {
			return blob.Attrs{}, fmt.Errorf("more than %d parts of %d bytes", maxParts, partSize)
		}
		sum := md5.Sum(part)
		out, err := b.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        &b.name,
			Key:           &tmp,
			UploadId:      up.UploadId,
			PartNumber:    aws.Int32(num),
			Body:          bytes.NewReader(part),
			ContentLength: aws.Int64(int64(len(part))),
			ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum[:])),
		})
		if err != nil {
			return blob.Attrs{}, b.writeErr(ctx, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
		if int64(len(part)) < partSize {
			break // a short part is the last
		}
		part, _, err = fill(src, part, partSize)
		if err != nil {
			return blob.Attrs{}, err
		}
		d.Write(part)
	}
	if err := d.Verify(opts); err != nil {
		return blob.Attrs{}, err
	}
	if err := ctx.Err(); err != nil {
		return blob.Attrs{}, err
	}
	if _, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.name,
		Key:             &tmp,
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		return blob.Attrs{}, b.writeErr(ctx, err)
	}
	done = true
	defer b.cleanup(ctx, func(ctx context.Context) error {
		_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.name, Key: &tmp})
		return err
	})
	mod, err := b.copyIn(ctx, tmp, key, d.Size(), partSize, contentType, d.ETag())
	if err != nil {
		return blob.Attrs{}, b.writeErr(ctx, err)
	}
	return blob.Attrs{Key: key, Size: d.Size(), ContentType: contentType, ETag: d.ETag(), ModTime: mod}, nil
}

// copyIn copies the completed temporary object tmp onto key with its
// content type and MD5, and returns the new object's modification time.
func (b *Bucket) copyIn(ctx context.Context, tmp, key string, size, partSize int64, contentType, md5hex string) (time.Time, error) {
	source := b.name + "/" + url.PathEscape(tmp)
	meta := map[string]string{metaMD5: md5hex}
	if size <= copyMax {
		out, err := b.client.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:            &b.name,
			Key:               &key,
			CopySource:        &source,
			MetadataDirective: types.MetadataDirectiveReplace,
			ContentType:       &contentType,
			Metadata:          meta,
		})
		if err != nil {
			return time.Time{}, err
		}
		if out.CopyObjectResult != nil && out.CopyObjectResult.LastModified != nil {
			return *out.CopyObjectResult.LastModified, nil
		}
		return serverTime(out.ResultMetadata), nil
	}

	// Too large for one CopyObject: a multipart upload onto key whose
	// parts are copied from tmp, equal in size like those of tmp.
	up, err := b.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.name, Key: &key, ContentType: &contentType, Metadata: meta})
	if err != nil {
		return time.Time{}, err
	}
	done := false
	defer func() {
		if !done {
			b.abort(ctx, key, up.UploadId)
		}
	}()
	var parts []types.CompletedPart
	for num, off := int32(1), int64(0); off < size; num, off = num+1, off+partSize {
		out, err := b.client.UploadPartCopy(ctx, &s3.UploadPartCopyInput{
			Bucket:          &b.name,
			Key:             &key,
			UploadId:        up.UploadId,
			PartNumber:      aws.Int32(num),
			CopySource:      &source,
			CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, min(off+partSize, size)-1)),
		})
		if err != nil {
			return time.Time{}, err
		}
		if out.CopyPartResult == nil {
			return time.Time{}, fmt.Errorf("copying part %d: the server returned no part ETag", num)
		}
		parts = append(parts, types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(num)})
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	out, err := b.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &b.name,
		Key:             &key,
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return time.Time{}, err
	}
	done = true
	return serverTime(out.ResultMetadata), nil
}

// abort aborts a multipart upload, even when ctx is cancelled.
func (b *Bucket) abort(ctx context.Context, key string, uploadID *string) {
	b.cleanup(ctx, func(ctx context.Context) error {
		_, err := b.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.name, Key: &key, UploadId: uploadID})
		return err
	})
}

// cleanup runs an undo request, detached from ctx's cancellation. Its
// failure leaves only garbage that no key names, for the bucket's
// lifecycle rules to remove.
func (b *Bucket) cleanup(ctx context.Context, undo func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	undo(ctx) //nolint:errcheck // see above
}

// writeErr maps a failed write request, preferring ctx's own error.
func (b *Bucket) writeErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if status(err) == http.StatusNotFound {
		return fmt.Errorf("bucket %q is gone: %w", b.name, err)
	}
	// The checks the body makes come first; these are the server's own.
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch":
			return fmt.Errorf("%w: the server refused the content: %w", blob.ErrChecksumMismatch, err)
		case "IncompleteBody":
			return fmt.Errorf("%w: the server got fewer bytes than declared: %w", blob.ErrSizeMismatch, err)
		}
	}
	return err
}

// serverTime is the Date of a response, which for a write is the time of
// the new object to within the second that Last-Modified has anyway.
func serverTime(m middleware.Metadata) time.Time {
	if t, ok := awsmiddleware.GetServerTime(m); ok {
		return t
	}
	return time.Now()
}

// fill reads from src into buf, reusing its memory, until it holds size
// bytes or src ends. It grows buf as it goes, so that a short content of
// unknown size does not take a whole part's memory. last reports that src
// has nothing after the bytes read.
func fill(src *bufio.Reader, buf []byte, size int64) (_ []byte, last bool, err error) {
	buf = buf[:0]
	for int64(len(buf)) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(size-int64(len(buf)), max(int64(cap(buf)), readBuf))))
		}
		n, err := src.Read(buf[len(buf):int(min(int64(cap(buf)), size))])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, true, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
	if _, err := src.Peek(1); err != nil {
		if err == io.EOF {
			return buf, true, nil
		}
		return buf, false, err
	}
	return buf, false, nil
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
