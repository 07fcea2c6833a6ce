package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
)

const jobColumns = `job_key, asset_id, status, error, owner, lease_until, claims, created_at, finished_at`

func scanJob(sc scanner) (store.Job, error) {
	var (
		j               store.Job
		status          string
		lease, finished *time.Time
	)
	err := sc.Scan(&j.Key, &j.AssetID, &status, &j.Error, &j.Owner, &lease, &j.Claims, &j.CreatedAt, &finished)
	if err != nil {
		return store.Job{}, err
	}
	j.Status = store.Status(status)
	j.LeaseUntil = readTime(lease)
	j.FinishedAt = readTime(finished)
	return j, nil
}

// lockJob reads the job and locks its row until the transaction ends, so
// that the caller's test of its lease and owner holds while it writes.
func lockJob(ctx context.Context, tx pgx.Tx, key string) (store.Job, error) {
	j, err := scanJob(tx.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_key = $1 FOR UPDATE`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, store.ErrNotFound
	}
	return j, err
}

// ClaimJob creates the job on first call and takes its lease for c.Owner.
// A zero c.Now is the store's clock. With store.ErrLeased it also returns
// the job as the other owner holds it.
//
// The job's row is locked (FOR UPDATE) before its lease is tested, so
// concurrent claims take turns and one at most finds the lease free. A
// job not there yet is inserted with ON CONFLICT DO NOTHING: of
// concurrent first claims one inserts it, the others wait for that one to
// commit and insert nothing; then each locks the row in turn.
func (s *Store) ClaimJob(ctx context.Context, c store.Claim) (store.Job, error) {
	if c.Key == "" || c.Owner == "" {
		return store.Job{}, fmt.Errorf("postgres: claim job %q: empty key or owner", c.Key)
	}
	if c.Lease <= 0 {
		return store.Job{}, fmt.Errorf("postgres: claim job %q: lease %v is not positive", c.Key, c.Lease)
	}
	now := c.Now
	if now.IsZero() {
		now = utcNow()
	}
	var job store.Job
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		job, err = lockJob(ctx, tx, c.Key)
		if errors.Is(err, store.ErrNotFound) {
			_, err = tx.Exec(ctx, `INSERT INTO jobs (job_key, asset_id, status, created_at)
				VALUES ($1, $2, $3, $4) ON CONFLICT (job_key) DO NOTHING`,
				c.Key, c.AssetID, string(store.StatusProcessing), now)
			if isCode(err, foreignKeyViolation) {
				return fmt.Errorf("asset %q: %w", c.AssetID, store.ErrNotFound)
			}
			if err != nil {
				return err
			}
			job, err = lockJob(ctx, tx, c.Key)
		}
		if err != nil {
			return err
		}
		if job.Status.Terminal() {
			return nil
		}
		if job.Owner != "" && job.Owner != c.Owner && job.LeaseUntil.After(now) {
			return store.ErrLeased
		}
		job, err = scanJob(tx.QueryRow(ctx, `UPDATE jobs SET owner = $1, lease_until = $2, claims = claims + 1
			WHERE job_key = $3 RETURNING `+jobColumns,
			c.Owner, now.Add(c.Lease), c.Key))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE assets SET status = $1, error = '', updated_at = $2 WHERE id = $3`,
			string(store.StatusProcessing), utcNow(), job.AssetID)
		return err
	})
	switch {
	case errors.Is(err, store.ErrLeased):
		return job, fmt.Errorf("postgres: claim job %q: %w", c.Key, err)
	case err != nil:
		return store.Job{}, fmt.Errorf("postgres: claim job %q: %w", c.Key, err)
	}
	return job, nil
}

// ownJob locks the job for an update by owner: store.ErrNotFound if there
// is none, store.ErrLeased if another owner has it.
func ownJob(ctx context.Context, tx pgx.Tx, key, owner string) (store.Job, error) {
	j, err := lockJob(ctx, tx, key)
	if err != nil {
		return store.Job{}, err
	}
	if j.Owner != owner {
		return j, store.ErrLeased
	}
	return j, nil
}

// RenewJob moves the lease owner holds to until. A finished job holds no
// lease to renew: that is store.ErrLeased too, which tells the worker to
// stop.
func (s *Store) RenewJob(ctx context.Context, key, owner string, until time.Time) error {
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil {
			return err
		}
		if j.Status.Terminal() {
			return fmt.Errorf("job is %s: %w", j.Status, store.ErrLeased)
		}
		_, err = tx.Exec(ctx, `UPDATE jobs SET lease_until = $1 WHERE job_key = $2`, nullTime(until), key)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: renew job %q: %w", key, err)
	}
	return nil
}

// ReleaseJob drops owner's lease, leaving the job processing for the
// next claim. Releasing a finished job changes nothing.
func (s *Store) ReleaseJob(ctx context.Context, key, owner string) error {
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil || j.Status.Terminal() {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE jobs SET lease_until = NULL WHERE job_key = $1`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: release job %q: %w", key, err)
	}
	return nil
}

// FinishJob ends the job owner holds with status succeeded or failed and
// gives its asset the same status and error. Finishing again by the same
// owner changes nothing, so that a retried call succeeds.
func (s *Store) FinishJob(ctx context.Context, key, owner string, status store.Status, errMsg string) error {
	if status != store.StatusSucceeded && status != store.StatusFailed {
		return fmt.Errorf("postgres: finish job %q: status %q is not succeeded or failed", key, status)
	}
	err := inTx(ctx, s.pool, func(tx pgx.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil || j.Status.Terminal() {
			return err
		}
		now := utcNow()
		_, err = tx.Exec(ctx, `UPDATE jobs SET status = $1, error = $2, finished_at = $3, lease_until = NULL
			WHERE job_key = $4`,
			string(status), errMsg, now, key)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE assets SET status = $1, error = $2, updated_at = $3 WHERE id = $4`,
			string(status), errMsg, now, j.AssetID)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: finish job %q: %w", key, err)
	}
	return nil
}

// GetJob returns the job with the given key or store.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, key string) (store.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_key = $1`, key))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("postgres: get job %q: %w", key, err)
	}
	return j, nil
}

// latestJob selects the key of the asset's ($1) most recently created
// job; jobs created at the same instant are ordered as they were
// inserted.
const latestJob = `SELECT job_key FROM jobs WHERE asset_id = $1 ORDER BY created_at DESC, seq DESC LIMIT 1`

// LatestJob returns the asset's most recently created job or
// store.ErrNotFound.
func (s *Store) LatestJob(ctx context.Context, assetID string) (store.Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx,
		`SELECT `+jobColumns+` FROM jobs WHERE job_key = (`+latestJob+`)`, assetID))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("postgres: latest job of asset %q: %w", assetID, err)
	}
	return j, nil
}
