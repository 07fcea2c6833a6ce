package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

const jobColumns = `job_key, asset_id, status, error, owner, lease_until, claims, created_at, finished_at`

func scanJob(sc scanner) (store.Job, error) {
	var (
		j                        store.Job
		status                   string
		lease, created, finished sql.NullInt64
	)
	err := sc.Scan(&j.Key, &j.AssetID, &status, &j.Error, &j.Owner, &lease, &j.Claims, &created, &finished)
	if err != nil {
		return store.Job{}, err
	}
	j.Status = store.Status(status)
	j.LeaseUntil = readTime(lease)
	j.CreatedAt = readTime(created)
	j.FinishedAt = readTime(finished)
	return j, nil
}

func getJob(ctx context.Context, q querier, key string) (store.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_key = ?`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Job{}, store.ErrNotFound
	}
	return j, err
}

// ClaimJob creates the job on first call and takes its lease for c.Owner.
// A zero c.Now is the store's clock. With store.ErrLeased it also returns
// the job as the other owner holds it.
func (s *Store) ClaimJob(ctx context.Context, c store.Claim) (store.Job, error) {
	if c.Key == "" || c.Owner == "" {
		return store.Job{}, fmt.Errorf("sqlite: claim job %q: empty key or owner", c.Key)
	}
	if c.Lease <= 0 {
		return store.Job{}, fmt.Errorf("sqlite: claim job %q: lease %v is not positive", c.Key, c.Lease)
	}
	now := c.Now
	if now.IsZero() {
		now = utcNow()
	}
	var job store.Job
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		var err error
		job, err = getJob(ctx, tx, c.Key)
		if errors.Is(err, store.ErrNotFound) {
			if err := assetExists(ctx, tx, c.AssetID); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO jobs (job_key, asset_id, status, created_at)
				VALUES (?, ?, ?, ?)`,
				c.Key, c.AssetID, string(store.StatusProcessing), now.UnixNano())
			if err != nil {
				return err
			}
			job, err = getJob(ctx, tx, c.Key)
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
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET owner = ?, lease_until = ?, claims = claims + 1
			WHERE job_key = ?`,
			c.Owner, now.Add(c.Lease).UnixNano(), c.Key)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE assets SET status = ?, error = '', updated_at = ? WHERE id = ?`,
			string(store.StatusProcessing), utcNow().UnixNano(), job.AssetID)
		if err != nil {
			return err
		}
		job, err = getJob(ctx, tx, c.Key)
		return err
	})
	switch {
	case errors.Is(err, store.ErrLeased):
		return job, fmt.Errorf("sqlite: claim job %q: %w", c.Key, err)
	case err != nil:
		return store.Job{}, fmt.Errorf("sqlite: claim job %q: %w", c.Key, err)
	}
	return job, nil
}

func assetExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM assets WHERE id = ?`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("asset %q: %w", id, store.ErrNotFound)
	}
	return err
}

// ownJob reads the job for an update by owner: store.ErrNotFound if there
// is none, store.ErrLeased if another owner has it.
func ownJob(ctx context.Context, tx *sql.Tx, key, owner string) (store.Job, error) {
	j, err := getJob(ctx, tx, key)
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
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil {
			return err
		}
		if j.Status.Terminal() {
			return fmt.Errorf("job is %s: %w", j.Status, store.ErrLeased)
		}
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET lease_until = ? WHERE job_key = ?`, nullTime(until), key)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: renew job %q: %w", key, err)
	}
	return nil
}

// ReleaseJob drops owner's lease, leaving the job processing for the
// next claim. Releasing a finished job changes nothing.
func (s *Store) ReleaseJob(ctx context.Context, key, owner string) error {
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil || j.Status.Terminal() {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET lease_until = NULL WHERE job_key = ?`, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: release job %q: %w", key, err)
	}
	return nil
}

// FinishJob ends the job owner holds with status succeeded or failed and
// gives its asset the same status and error. Finishing again by the same
// owner changes nothing, so that a retried call succeeds.
func (s *Store) FinishJob(ctx context.Context, key, owner string, status store.Status, errMsg string) error {
	if status != store.StatusSucceeded && status != store.StatusFailed {
		return fmt.Errorf("sqlite: finish job %q: status %q is not succeeded or failed", key, status)
	}
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		j, err := ownJob(ctx, tx, key, owner)
		if err != nil || j.Status.Terminal() {
			return err
		}
		now := utcNow().UnixNano()
		_, err = tx.ExecContext(ctx, `UPDATE jobs SET status = ?, error = ?, finished_at = ?, lease_until = NULL
			WHERE job_key = ?`,
			string(status), errMsg, now, key)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE assets SET status = ?, error = ?, updated_at = ? WHERE id = ?`,
			string(status), errMsg, now, j.AssetID)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: finish job %q: %w", key, err)
	}
	return nil
}

// GetJob returns the job with the given key or store.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, key string) (store.Job, error) {
	j, err := getJob(ctx, s.r, key)
	if err != nil {
		return store.Job{}, fmt.Errorf("sqlite: get job %q: %w", key, err)
	}
	return j, nil
}

// latestJob selects the key of an asset's most recently created job; jobs
// created at the same instant are ordered as they were inserted.
const latestJob = `SELECT job_key FROM jobs WHERE asset_id = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`

// LatestJob returns the asset's most recently created job or
// store.ErrNotFound.
func (s *Store) LatestJob(ctx context.Context, assetID string) (store.Job, error) {
	j, err := scanJob(s.r.QueryRowContext(ctx,
		`SELECT `+jobColumns+` FROM jobs WHERE job_key = (`+latestJob+`)`, assetID))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Job{}, fmt.Errorf("sqlite: latest job of asset %q: %w", assetID, err)
	}
	return j, nil
}
