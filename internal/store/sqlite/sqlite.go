// Package sqlite implements store.Store on an embedded SQLite database, for
// a single-node deployment or a laptop: no server to run, one file (plus
// its WAL) to back up. It uses modernc.org/sqlite, so it needs no cgo.
//
// SQLite allows one writer at a time. Rather than let concurrent
// goroutines race for the write lock and fail with SQLITE_BUSY, every
// write goes through a pool of exactly one connection whose transactions
// begin IMMEDIATE; reads use a separate pool of read-only connections,
// which WAL mode lets run alongside the writer.
//
// The schema is created and upgraded by the numbered files in migrations/,
// applied in order when the database is opened and recorded in the
// schema_migrations table.
//
// Times are stored as unix nanoseconds and returned in UTC. Times the
// caller passes (Claim.Now, StartStep's now, a Step's FinishedAt) are kept
// as given; an asset's UpdatedAt and a job's FinishedAt come from the
// store's own clock.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/sluice-media/sluice/internal/store"
)

var _ store.Store = (*Store)(nil)

const (
	// busyTimeout bounds how long a connection waits for the locks WAL
	// mode still takes (recovery, checkpoints) and for another process
	// writing the same file.
	busyTimeout = 5 * time.Second

	defaultLimit = 50
	maxLimit     = 1000
)

// Store is a store.Store backed by one SQLite database file.
type Store struct {
	w *sql.DB // one connection: every write, in IMMEDIATE transactions
	r *sql.DB // read-only connections
}

// Open opens the database at path, creating the file if needed (its
// directory must exist), and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open %q: want the path of a database file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	// SQLite reports a missing directory as "unable to open database file",
	// which does not say which part of the path is wrong.
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("sqlite: open %s: %s is not a directory", path, dir)
	}

	w, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := migrate(ctx, w, time.Now()); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return &Store{w: w, r: r}, nil
}

// dsn builds the driver's connection string for the file at abs.
func dsn(abs string, write bool) string {
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "foreign_keys(1)")
	if write {
		// journal_mode is a property of the file, so the writer, which
		// connects first, sets it for everyone.
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Set("_txlock", "immediate")
	} else {
		q.Add("_pragma", "query_only(1)")
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// Ping checks that both connection pools can reach the database.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database. Calls in flight finish first.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// insert runs an INSERT ... ON CONFLICT DO NOTHING and reports a row it
// did not insert as store.ErrConflict.
func insert(ctx context.Context, q querier, query string, args ...any) error {
	res, err := q.ExecContext(ctx, query, args...)
	if err == nil {
		err = rowsAffected(res)
	}
	if errors.Is(err, store.ErrNotFound) {
		err = store.ErrConflict
	}
	return err
}

// list runs a query and scans every row with scan; no rows is an empty,
// non-nil slice.
func list[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
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

// inTx runs fn in a write transaction, committing if fn returns nil.
func inTx(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // a no-op after Commit
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
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
	return t.UnixNano()
}

// instant is how a time is compared in a query; the zero time is earlier
// than every stored one.
func instant(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

// readTime converts a stored time back; NULL is the zero time.
func readTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// rowsAffected returns store.ErrNotFound when res changed nothing.
func rowsAffected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
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
