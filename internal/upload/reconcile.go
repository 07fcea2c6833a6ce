package upload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/store"
)

// ReconcileStats says what one Reconcile pass did.
type ReconcileStats struct {
	Requeued  int // stalled uploads queued again
	Completed int // stored uploads that had not been recorded
	Expired   int // uploads abandoned before completion
}

// Reconcile repairs what lost events and crashes leave behind. It is safe
// to run from any number of processes at once: every repair is idempotent.
func (s *Service) Reconcile(ctx context.Context) (ReconcileStats, error) {
	var st ReconcileStats
	errs := []error{
		s.requeueStalled(ctx, &st),
		s.completeOrExpire(ctx, &st),
		s.expireTus(ctx, &st),
	}
	return st, errors.Join(errs...)
}

// requeueStalled publishes again the events of uploads whose job has not
// finished, that no worker holds and that have no event in the queue: an
// asset merely waiting behind a long backlog is left alone.
func (s *Service) requeueStalled(ctx context.Context, st *ReconcileStats) error {
	now := s.now()
	stalled, err := s.store.ListStalled(ctx, now, now.Add(-s.cfg.StaleAfter), 100)
	if err != nil {
		return err
	}
	for _, a := range stalled {
		queued, err := s.pub.Queued(ctx, a.ID)
		if err != nil {
			return err
		}
		if !queued {
			ev := event.ObjectCreated{Action: event.ActionReconcile, Bucket: a.Bucket, Key: a.Key,
				Size: a.Size, ETag: a.ETag, EventTime: now.UTC(), AssetID: a.ID}
			if err := s.pub.Publish(ctx, ev); err != nil {
				return err
			}
			s.metrics.EventsPublished.WithLabelValues("reconcile").Inc()
			s.log.Info("upload: requeued stalled asset", "asset", a.ID, "status", a.Status)
			st.Requeued++
		}
		// Touch it so that the next pass waits StaleAfter again.
		if err := s.store.SetAssetStatus(ctx, a.ID, a.Status, a.Error); err != nil {
			return err
		}
	}
	return nil
}

// completeOrExpire looks at assets whose upload was never recorded after
// their URL expired: if the bytes are in the bucket (a crash between
// storing and recording) the upload is completed, else the asset fails.
// Resumable uploads still in progress are left to expireTus.
func (s *Service) completeOrExpire(ctx context.Context, st *ReconcileStats) error {
	waiting, err := s.store.ListAwaitingUpload(ctx, s.now().Add(-s.cfg.URLExpiry-time.Minute), 100)
	if err != nil {
		return err
	}
	for _, a := range waiting {
		if s.tusInProgress(ctx, a.ID) {
			continue
		}
		attrs, err := s.bucket.Stat(ctx, a.Key)
		switch {
		case err == nil:
			if err := s.complete(ctx, a, attrs, event.ActionPutObject, "recovered"); err != nil {
				return err
			}
			st.Completed++
		case errors.Is(err, blob.ErrNotFound):
			if err := s.store.SetAssetStatus(ctx, a.ID, store.StatusFailed, "upload was not completed before its URL expired"); err != nil {
				return err
			}
			st.Expired++
		default:
			return err
		}
	}
	return nil
}

// tusInProgress reports whether the asset has a resumable upload under
// way: its tusd info, in the tus dir or (S3) under tus/ in the bucket.
func (s *Service) tusInProgress(ctx context.Context, id string) bool {
	if s.tusS3 {
		_, err := s.bucket.Stat(ctx, tusPrefix+id+".info")
		return !errors.Is(err, blob.ErrNotFound) // unsure: leave it be
	}
	if s.cfg.TusDir == "" {
		return false
	}
	_, err := os.Stat(filepath.Join(s.cfg.TusDir, id+".info"))
	return err == nil
}

// expireTus deletes resumable uploads that received no data for TusExpiry
// and fails their assets.
func (s *Service) expireTus(ctx context.Context, st *ReconcileStats) error {
	if s.tusS3 {
		return s.expireTusS3(ctx, st)
	}
	if s.cfg.TusDir == "" {
		return nil
	}
	infos, err := filepath.Glob(filepath.Join(s.cfg.TusDir, "*.info"))
	if err != nil {
		return err
	}
	cutoff := s.now().Add(-s.cfg.TusExpiry)
	for _, infoPath := range infos {
		var info tusd.FileInfo
		data, err := os.ReadFile(infoPath)
		if err != nil || json.Unmarshal(data, &info) != nil {
			continue
		}
		bin := strings.TrimSuffix(infoPath, ".info")
		fi, err := os.Stat(bin)
		if err == nil && fi.ModTime().After(cutoff) {
			continue
		}
		// A PATCH in flight keeps the file's mtime fresh, so only uploads
		// idle for TusExpiry get here.
		_ = os.Remove(bin)
		_ = os.Remove(infoPath)
		reason := fmt.Sprintf("resumable upload abandoned: no data received for %s", s.cfg.TusExpiry)
		if err := s.store.SetAssetStatus(ctx, info.ID, store.StatusFailed, reason); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		s.metrics.Uploads.WithLabelValues("tus", "expired").Inc()
		st.Expired++
	}
	return nil
}

// RunReconciler calls Reconcile every interval until ctx is done.
func (s *Service) RunReconciler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st, err := s.Reconcile(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("upload: reconcile", "err", err)
			}
			if st != (ReconcileStats{}) {
				s.log.Info("upload: reconcile", "requeued", st.Requeued, "completed", st.Completed, "expired", st.Expired)
			}
		}
	}
}
