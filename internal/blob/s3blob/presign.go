package s3blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

const (
	maxPresignSize    = 5 << 30 // S3's limit on one PUT
	maxPresignExpires = 7 * 24 * time.Hour
)

// PresignPut returns a URL through which a client uploads the object for
// key with one HTTP PUT straight to the bucket, and the headers that PUT
// must carry. The signature covers the Content-Length, so the body must
// have exactly size bytes, and, when sha256 is given (the raw 32-byte
// digest), the x-amz-checksum-sha256 header, which makes the server refuse
// content with another digest; contentType, when given, is signed too.
// headers includes Content-Length, which HTTP clients set from the body.
//
// Such an object has no x-amz-meta-md5: its ETag, from a single PUT, is
// its MD5 already.
func (b *Bucket) PresignPut(ctx context.Context, key string, size int64, contentType string, sha256sum []byte, expires time.Duration) (url string, headers map[string]string, err error) {
	if err := checkKey(key); err != nil {
		return "", nil, err
	}
	switch {
	case size < 0 || size > maxPresignSize:
		return "", nil, fmt.Errorf("s3blob: presign %s: size %d is outside 0 to %d bytes", quote(key), size, maxPresignSize)
	case len(sha256sum) != 0 && len(sha256sum) != sha256.Size:
		return "", nil, fmt.Errorf("s3blob: presign %s: sha256 has %d bytes, want %d", quote(key), len(sha256sum), sha256.Size)
	case expires <= 0 || expires > maxPresignExpires:
		return "", nil, fmt.Errorf("s3blob: presign %s: expiry %v is outside 0 to %v", quote(key), expires, maxPresignExpires)
	}
	in := &s3.PutObjectInput{Bucket: &b.name, Key: &key, ContentLength: aws.Int64(size)}
	if contentType != "" {
		in.ContentType = &contentType
	}
	if len(sha256sum) != 0 {
		in.ChecksumSHA256 = aws.String(base64.StdEncoding.EncodeToString(sha256sum))
	}
	req, err := b.presign.PresignPutObject(ctx, in, s3.WithPresignExpires(expires))
	if err != nil {
		return "", nil, fmt.Errorf("s3blob: presign %s: %w", quote(key), err)
	}
	headers = make(map[string]string, len(req.SignedHeader))
	for k, v := range req.SignedHeader {
		// net/http and browsers set Host from the URL.
		if http.CanonicalHeaderKey(k) != "Host" && len(v) > 0 {
			headers[http.CanonicalHeaderKey(k)] = v[0]
		}
	}
	return req.URL, headers, nil
}
