// Package postgres implements store.Store on PostgreSQL: the state store
// for a deployment that scales out, where several gateways and workers on
// several hosts share one database. It keeps the contract of the embedded
// sqlite driver and passes the same conformance suite (storetest), so the
// gateway and workers cannot tell them apart.
//
// Where SQLite serializes every write through one connection, here many
// processes write at once, so what must not race is made safe in the
// database itself:
//   - ClaimJob creates the job with INSERT ... ON CONFLICT DO NOTHING and
//     then locks its row (SELECT ... FOR UPDATE) before it tests the
//     lease: concurrent claims queue on the row, and exactly one of them
//     finds the lease free. RenewJob, ReleaseJob and FinishJob lock the
//     row the same way before they test the owner.
//   - AddUsage locks the key's row for the day before it checks the
//     quota, so concurrent requests are counted one after another and
//     cannot overshoot it together.
//   - ClaimDeliveries takes due deliveries with FOR UPDATE SKIP LOCKED,
//     so that dispatchers on several hosts do not take the same ones.
//   - ReplaceOutputs locks the asset's row, so that two runs of a step do
//     not interleave their outputs.
//
// Transactions run at READ COMMITTED whatever the database's default, as
// the locking above assumes; one that fails with a serialization failure
// or a deadlock is retried.
//
// Open connects through a pgxpool, whose size and timeouts the DSN can set
// (pool_max_conns=...; see pgxpool.ParseConfig), and brings the schema up
// to date with the numbered files in migrations/, each applied in its own
// transaction under an advisory lock, so that several processes starting
// at once apply each migration once.
//
// Times are stored as timestamptz, to the microsecond, and returned in
// UTC. Times the caller passes (Claim.Now, StartStep's now, a Step's
// FinishedAt) are kept as given, truncated to the microsecond; an asset's
// UpdatedAt and a job's FinishedAt come from the store's own clock.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-media/sluice/internal/store"
)

var _ store.Store = (*Store)(nil)

const (
	defaultLimit = 50
	maxLimit     = 1000

	// txAttempts bounds how often a transaction that lost a serialization
	// conflict or a deadlock is run again.
	txAttempts = 5
)

// Store is a store.Store backed by a PostgreSQL database.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database dsn names (a URL or key=value DSN, see
// pgxpool.ParseConfig) and brings its schema up to date.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The error quotes the DSN with its password masked.
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		// Every time comes back in UTC, wherever the host is.
		conn.TypeMap().RegisterType(&pgtype.Type{
			Name:  "timestamptz",
			OID:   pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC},
		})
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open %s: %w", where(cfg), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", where(cfg), err)
	}
	return &Store{pool: pool}, nil
}

// where names the database of cfg for errors, without credentials.
func where(cfg *pgxpool.Config) string {
	return fmt.Sprintf("database %q on %s", cfg.ConnConfig.Database, cfg.ConnConfig.Host)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool's connections once calls in flight return.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// querier is what *pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// scanner is a pgx.Row or pgx.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// inTx runs fn in a READ COMMITTED transaction, committing if fn returns
// nil. A transaction that fails with a serialization failure or a
// deadlock is rolled back and run again, so fn must not keep what it
// computed in an attempt that failed.
func inTx(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	var err error
	for range txAttempts {
		err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
		if !retryable(err) {
			return err
		}
	}
	return err
}

// retryable reports whether err is a conflict that running the
// transaction again resolves.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	return pe.Code == "40001" || pe.Code == "40P01" // serialization_failure, deadlock_detected
}

// isCode reports whether err is a PostgreSQL error with the given
// SQLSTATE.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// list runs a query and scans every row with scan; no rows is an empty,
// non-nil slice.
func list[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// exec runs a statement and returns store.ErrNotFound when it changed no
// row.
func exec(ctx context.Context, q querier, query string, args ...any) error {
	tag, err := q.Exec(ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return store.ErrNotFound
	}
	return nil
}

// insert runs an INSERT ... ON CONFLICT DO NOTHING and reports a row it
// did not insert as store.ErrConflict.
func insert(ctx context.Context, q querier, query string, args ...any) error {
	err := exec(ctx, q, query, args...)
	if errors.Is(err, store.ErrNotFound) {
		err = store.ErrConflict
	}
	return err
}

// utcNow is the store's clock, for the times it sets itself.
func utcNow() time.Time {
	return time.Now().UTC()
}

// nullTime is how a time is written to a nullable column: NULL for the
// zero time.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// readTime converts a nullable column back; NULL is the zero time.
func readTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// limit applies the default and the maximum to a requested page size.
func limit(n int) int {
	switch {
	case n <= 0:
		return defaultLimit
	case n > maxLimit:
		return maxLimit
	}
	return n
}

// strs is how a list is read back: nil when empty, as callers wrote it.
func strs(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
