package server

import (
	"context"
	"path/filepath"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/postgres"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

// openStore opens the state store: PostgreSQL when a database URL is
// configured (many processes, many machines), else SQLite in the data
// dir. Both pass the same conformance suite.
func openStore(ctx context.Context, cfg config.Config) (store.Store, error) {
	if cfg.DatabaseURL != "" {
		st, err := postgres.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return st, nil
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "state.db"))
	if err != nil {
		return nil, err
	}
	return st, nil
}

// openBucket opens the bucket: an S3-compatible one when configured,
// else a file bucket in the data dir.
func openBucket(ctx context.Context, cfg config.Config) (blob.Bucket, error) {
	if cfg.S3.Bucket != "" {
		b, err := s3blob.Open(ctx, cfg.S3)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := fileblob.Open(filepath.Join(cfg.DataDir, "bucket"), BucketName)
	if err != nil {
		return nil, err
	}
	return b, nil
}
