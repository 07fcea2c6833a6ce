package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
)

const stepColumns = `job_key, asset_id, name, status, attempts, error, started_at, finished_at, duration_ns`

func scanStep(sc scanner) (store.Step, error) {
	var (
		st                store.Step
		status            string
		started, finished *time.Time
		duration          int64
	)
	err := sc.Scan(&st.JobKey, &st.AssetID, &st.Name, &status, &st.Attempts, &st.Error,
		&started, &finished, &duration)
	if err != nil {
		return store.Step{}, err
	}
	st.Status = store.Status(status)
	st.StartedAt = readTime(started)
	st.FinishedAt = readTime(finished)
	st.Duration = time.Duration(duration)
	return st, nil
}

// StartStep marks the step running at now (the store's clock if zero),
// counting an attempt and clearing what a previous attempt recorded. A
// step keeps the place in the job's order of its first start. assetID may
// be empty; otherwise it must be the job's asset.
func (s *Store) StartStep(ctx context.Context, jobKey, assetID, name string, now time.Time) (store.Step, error) {
	if name == "" {
		return store.Step{}, fmt.Errorf("postgres: start step of job %q: empty name", jobKey)
	}
	if now.IsZero() {
		now = utcNow()
	}
	st, err := s.startStep(ctx, jobKey, assetID, name, now)
	if err != nil {
		return store.Step{}, fmt.Errorf("postgres: start step %q of job %q: %w", name, jobKey, err)
	}
	return st, nil
}

func (s *Store) startStep(ctx context.Context, jobKey, assetID, name string, now time.Time) (store.Step, error) {
	var jobAsset string
	err := s.pool.QueryRow(ctx, `SELECT asset_id FROM jobs WHERE job_key = $1`, jobKey).Scan(&jobAsset)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Step{}, fmt.Errorf("job: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.Step{}, err
	}
	if assetID != "" && assetID != jobAsset {
		return store.Step{}, fmt.Errorf("asset %q is not the job's asset %q", assetID, jobAsset)
	}
	// Jobs are never deleted without their asset; if that happened
	// meanwhile, the foreign key says so.
	st, err := scanStep(s.pool.QueryRow(ctx, `INSERT INTO steps AS s
		(job_key, asset_id, name, status, attempts, error, started_at, finished_at, duration_ns)
		VALUES ($1, $2, $3, $4, 1, '', $5, NULL, 0)
		ON CONFLICT (job_key, name) DO UPDATE SET
			status = excluded.status, attempts = s.attempts + 1, error = '',
			started_at = excluded.started_at, finished_at = NULL, duration_ns = 0
		RETURNING `+stepColumns,
		jobKey, jobAsset, name, string(store.StatusProcessing), now))
	if isCode(err, foreignKeyViolation) {
		return store.Step{}, fmt.Errorf("job: %w", store.ErrNotFound)
	}
	return st, err
}

// FinishStep records the end of the step (s.JobKey, s.Name): its status,
// which must be final, its error, s.FinishedAt (the store's clock if zero)
// and s.Duration, which if zero is the time since the step started.
func (s *Store) FinishStep(ctx context.Context, st store.Step) error {
	if !st.Status.Terminal() {
		return fmt.Errorf("postgres: finish step %q of job %q: status %q is not final", st.Name, st.JobKey, st.Status)
	}
	finished := st.FinishedAt
	if finished.IsZero() {
		finished = utcNow()
	}
	err := exec(ctx, s.pool, `UPDATE steps SET status = $1, error = $2, finished_at = $3,
		duration_ns = CASE
			WHEN $4::bigint <> 0 THEN $4::bigint
			WHEN started_at IS NULL THEN 0
			ELSE greatest(0, (extract(epoch FROM $3::timestamptz - started_at) * 1000000)::bigint * 1000)
		END
		WHERE job_key = $5 AND name = $6`,
		string(st.Status), st.Error, finished, int64(st.Duration), st.JobKey, st.Name)
	if err != nil {
		return fmt.Errorf("postgres: finish step %q of job %q: %w", st.Name, st.JobKey, err)
	}
	return nil
}

// ListSteps returns the steps of the asset's latest job in the order they
// were first started; none if it has no job.
func (s *Store) ListSteps(ctx context.Context, assetID string) ([]store.Step, error) {
	steps, err := list(ctx, s.pool, scanStep, `SELECT `+stepColumns+` FROM steps
		WHERE job_key = (`+latestJob+`) ORDER BY seq`, assetID)
	if err != nil {
		return nil, fmt.Errorf("postgres: list steps of asset %q: %w", assetID, err)
	}
	return steps, nil
}

// ListJobSteps returns the steps of a job in the order they were first
// started; none if it has none or does not exist.
func (s *Store) ListJobSteps(ctx context.Context, jobKey string) ([]store.Step, error) {
	steps, err := list(ctx, s.pool, scanStep, `SELECT `+stepColumns+` FROM steps
		WHERE job_key = $1 ORDER BY seq`, jobKey)
	if err != nil {
		return nil, fmt.Errorf("postgres: list steps of job %q: %w", jobKey, err)
	}
	return steps, nil
}
