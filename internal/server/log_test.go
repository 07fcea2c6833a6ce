package server

import (
	"encoding/json"
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type slogLogger = slog.Logger

// newTestLogger sends the server's log to the test's log, shown on failure.
func newTestLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

func strconvFormat(n uint64) string { return strconv.FormatUint(n, 10) }

func reopenStore(t *testing.T, dir string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	return st
}
