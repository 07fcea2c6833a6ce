package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/store"
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

// deleteTusInfo removes what tusd keeps of a finished upload in the
// bucket (its .info, and the .part of a remainder, empty by then).
func (s *Service) deleteTusInfo(ctx context.Context, assetID string) {
	for _, suffix := range []string{".info", ".part"} {
		if err := s.bucket.Delete(ctx, tusPrefix+assetID+suffix); err != nil && !errors.Is(err, blob.ErrNotFound) {
			s.log.WarnContext(ctx, "upload: delete tus bookkeeping", "asset", assetID, "err", err)
		}
	}
}

// expireTusS3 aborts resumable uploads into the bucket that received no
// data for TusExpiry (their last part, their remainder and their info are
// all older than that) and fails their assets. An upload another request
// holds the lock of is busy, and left alone.
func (s *Service) expireTusS3(ctx context.Context, st *ReconcileStats) error {
	// Listing every upload in progress costs requests: look a few times
	// per TusExpiry, at most every ten minutes.
	now := s.now()
	if last := time.Unix(0, s.tusSwept.Load()); now.Sub(last) < min(s.cfg.TusExpiry/4, 10*time.Minute) {
		return nil
	}
	s.tusSwept.Store(now.UnixNano())
	objs, err := s.bucket.List(ctx, tusPrefix)
	if err != nil {
		return err
	}
	touched := map[string]time.Time{} // asset id -> newest .info or .part
	for _, o := range objs {
		name := strings.TrimPrefix(o.Key, tusPrefix)
		id := strings.TrimSuffix(strings.TrimSuffix(name, ".info"), ".part")
		if id != name && o.ModTime.After(touched[id]) {
			touched[id] = o.ModTime
		}
	}
	cutoff := now.Add(-s.cfg.TusExpiry)
	for id, last := range touched {
		if last.After(cutoff) {
			continue
		}
		if err := s.expireTusUpload(ctx, id, cutoff, st); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) expireTusUpload(ctx context.Context, id string, cutoff time.Time, st *ReconcileStats) error {
	a, err := s.store.GetAsset(ctx, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (a.Status != store.StatusPending || !a.UploadedAt.IsZero())) {
		s.deleteTusInfo(ctx, id) // finished (or its asset is gone): only bookkeeping is left
		return nil
	}
	if err != nil {
		return err
	}
	info, err := s.readTusInfo(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return nil // finished or expired meanwhile, by another gateway
	}
	if err != nil {
		return err
	}
	objectID, multipartID, _ := strings.Cut(info.ID, "+")
	if objectID != id || multipartID == "" {
		return fmt.Errorf("upload: tus info of %s names upload %q", id, info.ID)
	}
	// Parts uploaded since count as data received.
	pages := s3.NewListPartsPaginator(s.bucket.(s3Bucket).Client(), &s3.ListPartsInput{
		Bucket: aws.String(s.tusStore.Bucket), Key: aws.String(info.Storage["Key"]), UploadId: aws.String(multipartID)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("upload: parts of the resumable upload of %s: %w", id, err)
		}
		for _, p := range page.Parts {
			if p.LastModified != nil && p.LastModified.After(cutoff) {
				return nil
			}
		}
	}
	if s.locks != nil {
		lockCtx, cancel := context.WithTimeout(ctx, time.Second)
		release, err := s.locks.Acquire(lockCtx, "tus/"+info.ID, func() {})
		cancel()
		if err != nil {
			return nil // a request holds it: busy, not abandoned
		}
		defer func() { _ = release() }()
	}
	up, err := s.tusStore.GetUpload(ctx, info.ID)
	if errors.Is(err, tusd.ErrNotFound) {
		return nil // expired meanwhile, by another gateway
	}
	if err != nil {
		return fmt.Errorf("upload: resumable upload of %s: %w", id, err)
	}
	if err := s.tusStore.AsTerminatableUpload(up).Terminate(ctx); err != nil {
		return fmt.Errorf("upload: abort the resumable upload of %s: %w", id, err)
	}
	reason := fmt.Sprintf("resumable upload abandoned: no data received for %s", s.cfg.TusExpiry)
	if err := s.store.SetAssetStatus(ctx, id, store.StatusFailed, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	s.log.InfoContext(ctx, "upload: resumable upload expired", "asset", id)
	s.metrics.Uploads.WithLabelValues("tus", "expired").Inc()
	st.Expired++
	return nil
}

// readTusInfo reads tusd's .info object of an upload into the bucket.
func (s *Service) readTusInfo(ctx context.Context, id string) (tusd.FileInfo, error) {
	var info tusd.FileInfo
	r, err := s.bucket.Open(ctx, tusPrefix+id+".info")
	if err != nil {
		return info, err
	}
	defer r.Close()
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&info); err != nil {
		return info, fmt.Errorf("upload: tus info of %s: %w", id, err)
	}
	return info, nil
}
