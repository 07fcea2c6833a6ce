package server

import (
	"context"
	"path/filepath"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

// openStore opens the state store: SQLite in the data dir.
func openStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "state.db"))
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return st, nil
}

// openBucket opens the bucket: a file bucket in the data dir.
func openBucket(ctx context.Context, cfg config.Config) (blob.Bucket, error) {
	b, err := fileblob.Open(filepath.Join(cfg.DataDir, "bucket"), BucketName)
	if err != nil {
		return nil, err
	}
	return b, nil
}
