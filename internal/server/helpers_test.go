package server

import (
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"github.com/sluice-media/sluice/internal/telemetry"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

// newTestLogger sends the server's log to the test's log, shown on failure.
func newTestLogger(t testing.TB) *slog.Logger {
	return slog.New(telemetry.ContextHandler{Handler: slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// reopenStore opens the state of a stopped server.
func reopenStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
