// Package s3blob is the blob driver for S3-compatible object stores: AWS
// S3, Cloudflare R2, MinIO, Ceph, versitygw. Key "a/b/c.jpg" is the object
// "a/b/c.jpg" in the configured bucket.
//
// It is built on aws-sdk-go-v2's service/s3 rather than minio-go because
// that client does no more than it is asked: each call is one request,
// and the driver decides per request between a signed and an unsigned
// payload, sets the exact Content-Length and the checksum headers, and
// presigns a PUT whose signature covers content-length and
// x-amz-checksum-sha256. minio-go's PutObject picks multipart and
// streaming-signature modes by itself, which would hide the equal part
// sizes and atomicity this driver has to guarantee. The driver needs only
// the SDK's core, service/s3 and smithy-go, not its config or
// credential-chain modules.
//
// # Writes
//
// A Put of known size up to Config.PartSize is one streamed PUT with that
// Content-Length. The body hands over its last bytes only after the whole
// content has been hashed and checked against the PutOptions: a write that
// is too long, too short or has the wrong SHA-256 ends before its declared
// length, and no S3 server stores a PUT whose body falls short, so nothing
// becomes visible and an existing object stays. This is the client-side
// half; the server checks x-amz-checksum-sha256 too when a SHA-256 is
// given. Doing it this way, rather than writing every object to a
// temporary key and copying it into place, costs no extra request or
// server-side copy for the common small object. Its ETag is the server's,
// which for a single PUT is the MD5 of the content; where it is not (a
// bucket with SSE-KMS or SSE-C), the Put reports an error, though the
// object is stored, since such a bucket cannot be used.
//
// A write of unknown size is read into memory, up to a part's size; if it
// fits, it is checked and then sent as one PUT with Content-MD5. Anything larger is
// a multipart upload of equal parts of Config.PartSize (R2 requires equal
// non-trailing parts) to a temporary key under ".tmp/", which is checked
// before it is completed and aborted if it fails. Only then is it copied
// server-side onto its key, since S3's multipart ETag is not an MD5 and
// the MD5, known only at the end, has to go into the object's metadata
// (x-amz-meta-md5), which is fixed when an upload starts. A crash can leave
// an incomplete upload or a ".tmp/" object behind: give the bucket a
// lifecycle rule that aborts incomplete multipart uploads and expires
// ".tmp/" after a day.
//
// A listing carries no content type, so List sends a HEAD for each object
// it returns, a few at a time.
//
// Keys whose first segment starts with '.' are refused, as in fileblob, so
// that keys mean the same on both drivers and ".tmp/" stays the driver's.
//
// # Reads
//
// Open sends one GET, whose response gives the attributes and the data.
// An object of up to 1 MiB is read from that response only, and the bytes
// read are kept for seeks back, so a reader sees one version whatever
// happens to the key. For a larger object a seek that the open response
// cannot serve by reading on starts a ranged GET pinned to the opened
// version: by its version ID where the bucket is versioned, and always by
// If-Match on its ETag, so a reader gets ErrChanged, never bytes of
// another version, when the key was overwritten meanwhile in an
// unversioned bucket.
package s3blob

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/sluice-media/sluice/internal/blob"
)

const (
	// DefaultPartSize is the part size of multipart uploads when Config
	// sets none.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part but the last.
	MinPartSize = 5 << 20
	// maxPartSize and maxParts are S3's limits on a multipart upload.
	maxPartSize = 5 << 30
	maxParts    = 10_000

	// DefaultRegion is used when Config sets none; most S3-compatible
	// servers accept any region, and R2 also "auto".
	DefaultRegion = "us-east-1"

	// metaMD5 is the user metadata key, x-amz-meta-md5, that holds the
	// hex MD5 of an object written by a multipart upload.
	metaMD5 = "md5"

	// listHeads bounds the HEAD requests List sends at once to learn
	// content types, which a listing does not carry.
	listHeads = 8
)

// ErrChanged is returned by a read of an open object that needed another
// request and found that the object had been overwritten or deleted since
// it was opened.
var ErrChanged = errors.New("s3blob: object changed since it was opened")

var _ blob.Bucket = (*Bucket)(nil)

// Config says which bucket to use and how to reach it.
type Config struct {
	// Endpoint is the server's base URL, such as
	// "https://ACCOUNT.r2.cloudflarestorage.com" or "http://127.0.0.1:7070";
	// empty for AWS S3, which is then found by Region.
	Endpoint string
	// Region is the signing region; DefaultRegion when empty.
	Region string
	// Bucket is the bucket's name, which must exist.
	Bucket string
	// AccessKeyID and SecretAccessKey are the credentials; the caller reads
	// them from the environment. String and LogValue leave the secret out.
	AccessKeyID     string
	SecretAccessKey string
	// PathStyle puts the bucket in the URL's path rather than its host
	// name, as MinIO, versitygw and most self-hosted servers need.
	PathStyle bool
	// PartSize is the size of every part of a multipart upload but the
	// last, and the largest object written in one PUT; DefaultPartSize
	// when 0, at least MinPartSize.
	PartSize int64
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Bucket == "":
		return errors.New("s3blob: no bucket name")
	case c.AccessKeyID == "" || c.SecretAccessKey == "":
		return errors.New("s3blob: no credentials: both an access key ID and a secret access key are needed")
	case c.PartSize != 0 && (c.PartSize < MinPartSize || c.PartSize > maxPartSize):
		return fmt.Errorf("s3blob: part size %d is outside S3's limits of %d to %d bytes", c.PartSize, MinPartSize, maxPartSize)
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("s3blob: endpoint %q is not an http or https URL", c.Endpoint)
		}
	}
	return nil
}

// String describes the configuration without the secret.
func (c Config) String() string {
	return fmt.Sprintf("s3blob.Config{Endpoint:%q Region:%q Bucket:%q AccessKeyID:%q SecretAccessKey:%s PathStyle:%t PartSize:%d}",
		c.Endpoint, c.Region, c.Bucket, c.AccessKeyID, redact(c.SecretAccessKey), c.PathStyle, c.PartSize)
}

// GoString is String, so that %#v does not print the secret either.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration without the secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("region", c.Region),
		slog.String("bucket", c.Bucket),
		slog.String("access_key_id", c.AccessKeyID),
		slog.String("secret_access_key", redact(c.SecretAccessKey)),
		slog.Bool("path_style", c.PathStyle),
		slog.Int64("part_size", c.PartSize),
	)
}

func redact(secret string) string {
	if secret == "" {
		return `""`
	}
	return "[redacted]"
}

// Bucket is an S3 bucket. Its methods are safe for concurrent use.
type Bucket struct {
	name     string
	client   *s3.Client
	presign  *s3.PresignClient
	partSize int64
}

// Open checks that the configured bucket can be reached with the given
// credentials and returns it.
func Open(ctx context.Context, cfg Config) (*Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = DefaultRegion
	}
	opts := s3.Options{
		Region:       region,
		UsePathStyle: cfg.PathStyle,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey, Source: "s3blob.Config"}, nil
		})),
		Retryer: retry.NewStandard(),
		// The driver sets the checksums it wants itself; the SDK's default
		// CRC32 trailer would need aws-chunked bodies, which not every
		// S3-compatible server takes.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	client := s3.New(opts)
	b := &Bucket{
		name:     cfg.Bucket,
		client:   client,
		presign:  s3.NewPresignClient(client),
		partSize: cfg.PartSize,
	}
	if b.partSize == 0 {
		b.partSize = DefaultPartSize
	}
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.name}); err != nil {
		switch status(err) {
		case http.StatusNotFound:
			return nil, fmt.Errorf("s3blob: bucket %q does not exist", b.name)
		case http.StatusForbidden:
			return nil, fmt.Errorf("s3blob: access to bucket %q denied: check the credentials: %w", b.name, err)
		}
		return nil, fmt.Errorf("s3blob: bucket %q: %w", b.name, err)
	}
	return b, nil
}

// Name returns the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Stat returns the attributes of the object under key.
func (b *Bucket) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	if err := checkKey(key); err != nil {
		return blob.Attrs{}, err
	}
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.name, Key: &key})
	if err != nil {
		return blob.Attrs{}, b.mapErr("stat", key, err)
	}
	return attrs(key, out.ContentLength, out.ContentType, out.ETag, out.LastModified, out.Metadata), nil
}

// Delete removes the object under key; a missing object is no error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	_, err := b.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.name, Key: &key})
	if err != nil && status(err) != http.StatusNotFound {
		return b.mapErr("delete", key, err)
	}
	return nil
}

// List returns the attributes of the objects whose key starts with prefix,
// in lexical key order, which is S3's listing order. A listing carries no
// content type, so each object is also asked for with a HEAD request, a
// few at a time; objects deleted meanwhile are left out.
func (b *Bucket) List(ctx context.Context, prefix string) ([]blob.Attrs, error) {
	var keys []string
	pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: &b.name, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, b.mapErr("list", prefix, err)
		}
		for _, o := range page.Contents {
			// Not ours to show: the driver's temporary objects and keys
			// that another tool wrote and no Sluice key can name.
			if k := aws.ToString(o.Key); checkKey(k) == nil {
				keys = append(keys, k)
			}
		}
	}

	out := make([]blob.Attrs, len(keys))
	found := make([]bool, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, listHeads)
	var wg sync.WaitGroup
	for i, k := range keys {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			a, err := b.Stat(ctx, k)
			switch {
			case errors.Is(err, blob.ErrNotFound):
			case err != nil:
				errs[i] = err
			default:
				out[i], found[i] = a, true
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("s3blob: list %s: %w", quote(prefix), err)
	}
	var res []blob.Attrs
	for i, a := range out {
		if found[i] {
			res = append(res, a)
		}
	}
	return res, nil
}

// attrs builds an object's attributes from a response's headers. The MD5
// is the x-amz-meta-md5 that a multipart write stores, or else the ETag,
// which is the MD5 for an object written in one PUT; an object written in
// parts by another tool keeps S3's "…-N" ETag.
func attrs(key string, size *int64, contentType, etag *string, mod *time.Time, meta map[string]string) blob.Attrs {
	a := blob.Attrs{
		Key:         key,
		Size:        aws.ToInt64(size),
		ContentType: aws.ToString(contentType),
		ETag:        strings.Trim(aws.ToString(etag), `"`),
		ModTime:     aws.ToTime(mod),
	}
	for k, v := range meta {
		if strings.EqualFold(k, metaMD5) && isMD5(v) {
			a.ETag = strings.ToLower(v)
		}
	}
	return a
}

func isMD5(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == md5.Size
}

// mapErr maps a failed request on key to blob's errors.
func (b *Bucket) mapErr(op, key string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("s3blob: %s %s: %w", op, quote(key), ctxErr(err))
	}
	var ae smithy.APIError
	switch {
	case status(err) == http.StatusNotFound && errors.As(err, &ae) && ae.ErrorCode() == "NoSuchBucket":
		return fmt.Errorf("s3blob: %s %s: bucket %q does not exist: %w", op, quote(key), b.name, err)
	case status(err) == http.StatusNotFound:
		return fmt.Errorf("%w: %s", blob.ErrNotFound, quote(key))
	}
	return fmt.Errorf("s3blob: %s %s: %w", op, quote(key), err)
}

// ctxErr returns the context error that err wraps, for errors.Is callers
// that test against the sentinel.
func ctxErr(err error) error {
	if errors.Is(err, context.Canceled) {
		return context.Canceled
	}
	return context.DeadlineExceeded
}

// status returns the HTTP status of a failed request, or 0.
func status(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func checkKey(key string) error {
	if blob.ValidateKey(key) != nil {
		return fmt.Errorf("%w %s", blob.ErrInvalidKey, quote(key))
	}
	if key[0] == '.' {
		return fmt.Errorf("%w %s: a first segment starting with '.' is reserved for the driver", blob.ErrInvalidKey, quote(key))
	}
	return nil
}

func checkPut(key string, opts blob.PutOptions) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if n := len(opts.SHA256); n != 0 && n != sha256.Size {
		return fmt.Errorf("SHA256 option has %d bytes, want %d", n, sha256.Size)
	}
	return nil
}

// quote quotes a key for an error message, shortening a long one.
func quote(key string) string {
	const maxLen = 80
	if len(key) > maxLen {
		return fmt.Sprintf("%q...", key[:maxLen])
	}
	return fmt.Sprintf("%q", key)
}

// Client is the S3 client, for code that speaks S3 itself to the same
// bucket (tusd's S3 store for resumable uploads).
func (b *Bucket) Client() *s3.Client { return b.client }

// PartSize is the size of every multipart part but the last.
func (b *Bucket) PartSize() int64 { return b.partSize }
