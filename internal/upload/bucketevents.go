package upload

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/store"
)

// CachePrefix is where caches kept in the bucket live (the AI results
// every worker shares).
const CachePrefix = "cache/"

// ownPrefixes are where Sluice keeps objects of its own, which are never
// new content: outputs, tusd's bookkeeping, drivers' temporary objects,
// caches.
var ownPrefixes = []string{"assets/", tusPrefix, blob.TmpPrefix, CachePrefix}

// ObjectCreated takes an object-created notification from the bucket
// itself (an S3 bucket notification, an R2 event from a Cloudflare
// Queue) and completes the upload it belongs to, exactly as Sluice's own
// upload paths do, so every source ends in the same event:
//
//   - a key of an asset awaiting its bytes (uploads/{id}, written through
//     a presigned URL straight to the bucket) completes that asset;
//   - any other key (an object another system put in the bucket) becomes
//     a new asset, whose id is derived from bucket, key and ETag, so a
//     notification delivered twice makes one asset.
//
// Notifications for another bucket, for Sluice's own outputs, or for an
// object version already recorded change nothing. The object is read
// back (Stat, and its first bytes sniffed) rather than trusted from the
// notification.
func (s *Service) ObjectCreated(ctx context.Context, ev event.ObjectCreated) error {
	if ev.Bucket != s.bucket.Name() {
		return fmt.Errorf("%w: notification for bucket %q; this is %q", ErrInvalid, ev.Bucket, s.bucket.Name())
	}
	if slices.ContainsFunc(ownPrefixes, func(p string) bool { return strings.HasPrefix(ev.Key, p) }) {
		return nil // Sluice's own objects
	}
	if err := blob.ValidateKey(ev.Key); err != nil {
		return fmt.Errorf("%w: key %q", ErrInvalid, ev.Key)
	}
	attrs, err := s.bucket.Stat(ctx, ev.Key)
	if errors.Is(err, blob.ErrNotFound) {
		return nil // deleted or replaced since: its own notification follows
	}
	if err != nil {
		return err
	}
	var a store.Asset
	if id, ok := strings.CutPrefix(ev.Key, "uploads/"); ok && !strings.Contains(id, "/") {
		if a, err = s.store.GetAsset(ctx, id); errors.Is(err, store.ErrNotFound) {
			return nil // not ours: presigned keys are only made for assets
		} else if err != nil {
			return err
		}
	} else {
		sum := sha256.Sum256([]byte(ev.Bucket + "\x00" + ev.Key + "\x00" + attrs.ETag))
		id := uuid.NewHash(sha256.New(), uuid.NameSpaceURL, sum[:], 5).String()
		if a, err = s.store.GetAsset(ctx, id); errors.Is(err, store.ErrNotFound) {
			now := s.now()
			a = store.Asset{ID: id, Name: CleanName(path.Base(ev.Key)), Bucket: s.bucket.Name(), Key: ev.Key,
				Size: attrs.Size, Status: store.StatusPending, CreatedAt: now, UpdatedAt: now}
			if err := s.store.CreateAsset(ctx, a); err != nil && !errors.Is(err, store.ErrConflict) {
				return err
			}
		} else if err != nil {
			return err
		}
	}
	if !a.UploadedAt.IsZero() && a.ETag == attrs.ETag {
		return nil // recorded already: a duplicate notification
	}
	if a.Key == SourceKey(a.ID) && a.Size > 0 && attrs.Size != a.Size {
		// The presigned URL signed the length; a store that did not
		// enforce it does not get the object processed.
		_ = s.bucket.Delete(ctx, a.Key)
		return s.store.SetAssetStatus(ctx, a.ID, store.StatusFailed,
			fmt.Sprintf("the stored object is %d bytes, not the %d declared", attrs.Size, a.Size))
	}
	action := ev.Action
	if action == "" {
		action = event.ActionPutObject
	}
	return s.complete(ctx, a, attrs, action, "bucket")
}
