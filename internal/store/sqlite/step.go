package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

const stepColumns = `job_key, asset_id, name, status, attempts, error, started_at, finished_at, duration_ns`

func scanStep(sc scanner) (store.Step, error) {
	var (
		st                store.Step
		status            string
		started, finished sql.NullInt64
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
		return store.Step{}, fmt.Errorf("sqlite: start step of job %q: empty name", jobKey)
	}
	if now.IsZero() {
		now = utcNow()
	}
	var st store.Step
	err := inTx(ctx, s.w, func(tx *sql.Tx) error {
		var jobAsset string
		err := tx.QueryRowContext(ctx, `SELECT asset_id FROM jobs WHERE job_key = ?`, jobKey).Scan(&jobAsset)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job: %w", store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if assetID != "" && assetID != jobAsset {
			return fmt.Errorf("asset %q is not the job's asset %q", assetID, jobAsset)
		}
		st, err = scanStep(tx.QueryRowContext(ctx, `INSERT INTO steps
			(job_key, asset_id, name, status, attempts, error, started_at, finished_at, duration_ns, seq)
			VALUES (?, ?, ?, ?, 1, '', ?, NULL, 0,
				(SELECT coalesce(max(seq), 0) + 1 FROM steps WHERE job_key = ?))
			ON CONFLICT (job_key, name) DO UPDATE SET
				status = excluded.status, attempts = attempts + 1, error = '',
				started_at = excluded.started_at, finished_at = NULL, duration_ns = 0
			RETURNING `+stepColumns,
			jobKey, jobAsset, name, string(store.StatusProcessing), now.UnixNano(), jobKey))
		return err
	})
	if err != nil {
		return store.Step{}, fmt.Errorf("sqlite: start step %q of job %q: %w", name, jobKey, err)
	}
	return st, nil
}

// FinishStep records the end of the step (s.JobKey, s.Name): its status,
// which must be final, its error, s.FinishedAt (the store's clock if zero)
// and s.Duration, which if zero is the time since the step started.
func (s *Store) FinishStep(ctx context.Context, st store.Step) error {
	if !st.Status.Terminal() {
		return fmt.Errorf("sqlite: finish step %q of job %q: status %q is not final", st.Name, st.JobKey, st.Status)
	}
	finished := st.FinishedAt
	if finished.IsZero() {
		finished = utcNow()
	}
	res, err := s.w.ExecContext(ctx, `UPDATE steps SET status = ?, error = ?, finished_at = ?,
		duration_ns = CASE
			WHEN ? <> 0 THEN ?
			WHEN started_at IS NULL THEN 0
			ELSE max(? - started_at, 0)
		END
		WHERE job_key = ? AND name = ?`,
		string(st.Status), st.Error, finished.UnixNano(),
		int64(st.Duration), int64(st.Duration), finished.UnixNano(),
		st.JobKey, st.Name)
	if err == nil {
		err = rowsAffected(res)
	}
	if err != nil {
		return fmt.Errorf("sqlite: finish step %q of job %q: %w", st.Name, st.JobKey, err)
	}
	return nil
}

// ListSteps returns the steps of the asset's latest job in the order they
// were first started; none if it has no job.
func (s *Store) ListSteps(ctx context.Context, assetID string) ([]store.Step, error) {
	return s.listSteps(ctx, "asset "+assetID, `SELECT `+stepColumns+` FROM steps
		WHERE job_key = (`+latestJob+`)
		ORDER BY seq`, assetID)
}

// ListJobSteps returns the steps of a job in the order they were first
// started; none if it has none or does not exist.
func (s *Store) ListJobSteps(ctx context.Context, jobKey string) ([]store.Step, error) {
	return s.listSteps(ctx, "job "+jobKey, `SELECT `+stepColumns+` FROM steps
		WHERE job_key = ? ORDER BY seq`, jobKey)
}

func (s *Store) listSteps(ctx context.Context, what, query string, arg any) ([]store.Step, error) {
	rows, err := s.r.QueryContext(ctx, query, arg)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list steps of %s: %w", what, err)
	}
	defer rows.Close()
	steps := []store.Step{}
	for rows.Next() {
		st, err := scanStep(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list steps of %s: %w", what, err)
		}
		steps = append(steps, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list steps of %s: %w", what, err)
	}
	return steps, nil
}
