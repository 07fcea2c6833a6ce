package upload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/store"
)

// DeleteAsset deletes an asset and everything of it: a resumable upload
// still in progress, the uploaded source, every output and variant, and
// its records. Objects go first, so that a failure leaves the asset in
// place to delete again; once the records are gone the outputs are swept
// once more, for a step that wrote while they were deleted, and a worker
// still on the asset loses its job's lease, stops, and removes what it
// wrote after that (see worker). Deleting an asset that is gone is
// store.ErrNotFound.
func (s *Service) DeleteAsset(ctx context.Context, id string) error {
	a, err := s.store.GetAsset(ctx, id)
	if err != nil {
		return err
	}
	if err := s.abortTus(ctx, id); err != nil {
		return err
	}
	if _, err := blob.DeletePrefix(ctx, s.bucket, store.OutputPrefix(id)); err != nil {
		return fmt.Errorf("upload: delete the outputs of %s: %w", id, err)
	}
	if err := s.bucket.Delete(ctx, SourceKey(id)); err != nil && !errors.Is(err, blob.ErrNotFound) {
		return fmt.Errorf("upload: delete the source of %s: %w", id, err)
	}
	if err := s.store.DeleteAsset(ctx, id); err != nil {
		return err
	}
	if _, err := blob.DeletePrefix(ctx, s.bucket, store.OutputPrefix(id)); err != nil {
		s.log.WarnContext(ctx, "upload: sweep the outputs of a deleted asset", "asset", id, "err", err)
	}
	s.log.InfoContext(ctx, "upload: asset deleted", "asset", id)
	if s.OnDelete != nil {
		if err := s.OnDelete(context.WithoutCancel(ctx), a); err != nil {
			s.log.ErrorContext(ctx, "upload: announce a deleted asset", "asset", id, "err", err)
		}
	}
	return nil
}

// abortTus ends a resumable upload of the asset that is still in
// progress, in the tus dir or in the bucket.
func (s *Service) abortTus(ctx context.Context, id string) error {
	if !s.tusS3 {
		if s.cfg.TusDir != "" {
			for _, p := range []string{id, id + ".info", id + ".lock"} {
				if err := os.Remove(filepath.Join(s.cfg.TusDir, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
		return nil
	}
	info, err := s.readTusInfo(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	up, err := s.tusStore.GetUpload(ctx, info.ID)
	if err == nil {
		err = s.tusStore.AsTerminatableUpload(up).Terminate(ctx)
	}
	if err != nil && !errors.Is(err, tusd.ErrNotFound) {
		return fmt.Errorf("upload: abort the resumable upload of %s: %w", id, err)
	}
	s.deleteTusInfo(ctx, id)
	return nil
}
