package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sluice-media/sluice/internal/store"
)

// migrationFiles holds the schema changes, named NNNN_description.sql.
// A file, once released, never changes: a new change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrationLock is the key of the transaction-level advisory lock that
// every migration transaction takes first: the ASCII of "sluicemg".
// Advisory locks belong to one database, so the key only has to be
// unique among the locks Sluice takes.
const migrationLock int64 = 0x736c7569_63656d67

// migrations returns the embedded migrations in version order.
func migrations() ([]store.Migration, error) { return store.Migrations(migrationFiles, "migrations") }

// migrate applies the migrations the database has not seen, each in its
// own transaction together with its schema_migrations row, so that a
// failed one leaves the schema as the previous one left it. Each
// transaction first takes the advisory lock and then looks at
// schema_migrations: a process that waited for another to apply a
// migration finds it applied and goes on.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	err = locked(ctx, pool, func(tx pgx.Tx) error {
		// Even IF NOT EXISTS races with itself in PostgreSQL: this too
		// runs under the lock.
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`)
		if err != nil {
			return err
		}
		// A database a newer build has upgraded may not mean what this
		// build thinks its tables mean.
		var newest *int
		if err := tx.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
			return err
		}
		if latest := ms[len(ms)-1].Version; newest != nil && *newest > latest {
			return fmt.Errorf("schema version %d is newer than this build's %d", *newest, latest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("schema_migrations: %w", err)
	}

	for _, m := range ms {
		err := locked(ctx, pool, func(tx pgx.Tx) error {
			var applied bool
			if err := tx.QueryRow(ctx,
				`SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&applied); err != nil {
				return err
			}
			if applied {
				return nil
			}
			// No arguments: pgx sends the file as one simple query, which
			// may hold several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// locked runs fn in a transaction that holds the migration lock.
func locked(ctx context.Context, pool *pgxpool.Pool, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return err
		}
		return fn(tx)
	})
}
