package upload

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// detachedS3 is the S3 client tusd's S3 store uses, with every call's
// context detached from tusd's request context: tusd (v2.8.0) passes its
// per-request context, whose fields it keeps writing, into the store,
// and the HTTP client's goroutines read that context while cancelling a
// finished request, a data race. A detached call keeps the context's
// values but not its cancellation, so an S3 request tusd started runs to
// its end (under the SDK's own timeouts and retries) instead of being
// cut off when the client goes away.
type detachedS3 struct{ c *s3.Client }

var _ s3store.S3API = detachedS3{}

func (d detachedS3) PutObject(ctx context.Context, in *s3.PutObjectInput, opt ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return d.c.PutObject(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) ListParts(ctx context.Context, in *s3.ListPartsInput, opt ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	return d.c.ListParts(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opt ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	return d.c.UploadPart(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opt ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return d.c.GetObject(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opt ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	return d.c.HeadObject(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opt ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	return d.c.CreateMultipartUpload(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opt ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return d.c.AbortMultipartUpload(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opt ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return d.c.DeleteObject(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, opt ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error) {
	return d.c.DeleteObjects(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opt ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	return d.c.CompleteMultipartUpload(context.WithoutCancel(ctx), in, opt...)
}

func (d detachedS3) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opt ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	return d.c.UploadPartCopy(context.WithoutCancel(ctx), in, opt...)
}
