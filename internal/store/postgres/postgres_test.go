package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/postgres"
	"github.com/sluice-media/sluice/internal/store/postgres/pgtest"
	"github.com/sluice-media/sluice/internal/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.Start(t))
	})
}

// TestReclaimConcurrent has many workers claim a job whose lease has
// lapsed, all at once, round after round. The conformance suite's
// concurrent claim races on creating the job, which the insert alone
// serializes; here the job exists, and only the row lock keeps two
// claimers from both seeing the lease free. A race is a matter of timing,
// hence the rounds.
func TestReclaimConcurrent(t *testing.T) {
	s := open(t, pgtest.Start(t))
	ctx := t.Context()
	if err := s.CreateAsset(ctx, store.Asset{ID: "a1"}); err != nil {
		t.Fatal(err)
	}
	const lease = time.Minute
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := s.ClaimJob(ctx, store.Claim{Key: "k1", AssetID: "a1", Owner: "first", Now: t0, Lease: lease}); err != nil {
		t.Fatal(err)
	}
	// Connections opened ahead let the claims overlap rather than queue
	// for the pool to dial.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { s.Ping(ctx) })
	}
	wg.Wait()

	const rounds, n = 10, 20
	for round := 1; round <= rounds; round++ {
		now := t0.Add(time.Duration(round) * 2 * lease) // the last round's lease has lapsed
		start := make(chan struct{})
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = s.ClaimJob(ctx, store.Claim{Key: "k1", AssetID: "a1", Owner: fmt.Sprintf("r%d-w%02d", round, i), Now: now, Lease: lease})
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrLeased):
				t.Errorf("round %d: ClaimJob(w%02d): %v", round, i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d of %d concurrent claims of a lapsed lease won, want 1", round, won, n)
		}
	}
	if j, err := s.GetJob(ctx, "k1"); err != nil || j.Claims != 1+rounds {
		t.Errorf("GetJob = %+v, %v; want %d claims", j, err, 1+rounds)
	}
}

type migrationRow struct {
	version   int
	name      string
	appliedAt time.Time
}

// migrationRows reads schema_migrations directly, past the Store.
func migrationRows(t *testing.T, dsn string) []migrationRow {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.version, &r.name, &r.appliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkMigrations(t *testing.T, what string, got, want []migrationRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("schema_migrations %s: got %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i].version != want[i].version || got[i].name != want[i].name || !got[i].appliedAt.Equal(want[i].appliedAt) {
			t.Errorf("schema_migrations[%d] %s: got %v, want %v", i, what, got[i], want[i])
		}
	}
}

// TestReopen opens a database twice: the second Open applies nothing and
// finds what the first stored.
func TestReopen(t *testing.T) {
	dsn := pgtest.Start(t)
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.CreateAsset(t.Context(), store.Asset{ID: "a1", Name: "clip.mp4"}); err != nil {
		t.Fatalf("CreateAsset: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	applied := migrationRows(t, dsn)
	if len(applied) == 0 || applied[0].version != 1 || applied[0].name != "0001_init.sql" {
		t.Fatalf("schema_migrations after first open: got %v, want 0001_init.sql first", applied)
	}

	s = open(t, dsn)
	a, err := s.GetAsset(t.Context(), "a1")
	if err != nil {
		t.Fatalf("GetAsset after reopening: %v", err)
	}
	if a.Name != "clip.mp4" {
		t.Errorf("asset name after reopening = %q, want %q", a.Name, "clip.mp4")
	}
	// Applying a migration again would have failed (CREATE TABLE) or added
	// a row with a new time.
	checkMigrations(t, "after reopening", migrationRows(t, dsn), applied)
}

// TestOpenConcurrent opens a fresh database from several goroutines at
// once, as processes starting together would: every Open succeeds and
// each migration is applied once.
func TestOpenConcurrent(t *testing.T) {
	dsn := pgtest.Start(t)
	const n = 4
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		stores = make([]*postgres.Store, n)
		errs   = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = postgres.Open(t.Context(), dsn)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open #%d: %v", i, err)
			continue
		}
		stores[i].Close()
	}
	got := migrationRows(t, dsn)
	if len(got) == 0 || got[0].version != 1 {
		t.Fatalf("schema_migrations: got %v, want version 1 first", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i].version <= got[i-1].version {
			t.Errorf("schema_migrations: versions %v out of order or repeated", got)
		}
	}

	// Each one's tables work for the others.
	a, b := open(t, dsn), open(t, dsn)
	if err := a.CreateAsset(t.Context(), store.Asset{ID: "a1"}); err != nil {
		t.Fatalf("CreateAsset: %v", err)
	}
	if _, err := b.GetAsset(t.Context(), "a1"); err != nil {
		t.Errorf("GetAsset through another Store: %v", err)
	}
}

// TestOpenNewerSchema refuses a database a newer build has migrated.
func TestOpenNewerSchema(t *testing.T) {
	dsn := pgtest.Start(t)
	open(t, dsn).Close()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')`); err != nil {
		t.Fatal(err)
	}
	if s, err := postgres.Open(t.Context(), dsn); err == nil {
		s.Close()
		t.Fatal("Open of a database with schema version 9999: got no error")
	}
}

func TestOpenBadDSN(t *testing.T) {
	if s, err := postgres.Open(t.Context(), "postgres://%zz"); err == nil {
		s.Close()
		t.Fatal("Open(malformed DSN): got no error")
	}
}
