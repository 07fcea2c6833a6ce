package sqlite_test

import (
	"database/sql"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"github.com/sluice-media/sluice/internal/store/storetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
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
		return open(t, filepath.Join(t.TempDir(), "sluice.db"))
	})
}

type migrationRow struct {
	version   int
	appliedAt int64
}

// migrationRows reads schema_migrations directly, past the Store.
func migrationRows(t *testing.T, path string) []migrationRow {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.QueryContext(t.Context(), `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.version, &r.appliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sluice.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := s.CreateAsset(t.Context(), store.Asset{ID: "a1", Name: "clip.mp4"}); err != nil {
		t.Fatalf("CreateAsset: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	applied := migrationRows(t, path)
	if len(applied) == 0 || applied[0].version != 1 {
		t.Fatalf("schema_migrations after first open: got %v, want version 1 first", applied)
	}

	s = open(t, path)
	a, err := s.GetAsset(t.Context(), "a1")
	if err != nil {
		t.Fatalf("GetAsset after reopening: %v", err)
	}
	if a.Name != "clip.mp4" {
		t.Errorf("asset name after reopening = %q, want %q", a.Name, "clip.mp4")
	}
	// Applying a migration again would have failed (CREATE TABLE) or added
	// a row with a new time.
	got := migrationRows(t, path)
	if len(got) != len(applied) {
		t.Fatalf("schema_migrations after reopening: got %v, want %v", got, applied)
	}
	for i := range got {
		if got[i] != applied[i] {
			t.Errorf("schema_migrations[%d] after reopening: got %v, want %v", i, got[i], applied[i])
		}
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := sqlite.Open(t.Context(), filepath.Join(dir, "sluice.db"))
	if err == nil {
		t.Fatal("Open in a missing directory: got no error")
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
		t.Errorf("Open in a missing directory: got error %q, want one that is fs.ErrNotExist and names %s", err, dir)
	}
}
