package auth

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

func TestKeysAuthenticate(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	k := NewKeys(st, store.Limits{AssetsPerDay: 100, BytesPerDay: 1 << 30})
	k.now = func() time.Time { return now }

	rec, token, err := k.Create(t.Context(), NewKey{Name: "web", Scopes: []string{ScopeUpload}, Limits: store.Limits{AssetsPerDay: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if !ValidToken(token) || string(rec.Hash) != string(HashToken(token)) || rec.Prefix != token[:9] {
		t.Fatalf("created %+v with token %q", rec, token)
	}
	p, err := k.Authenticate(t.Context(), token)
	if err != nil || p.KeyID != rec.ID || !p.Can(ScopeUpload) || p.Can(ScopeRead) {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	// The key's own limits win; the defaults fill the rest.
	if p.Limits.AssetsPerDay != 5 || p.Limits.BytesPerDay != 1<<30 {
		t.Errorf("limits = %+v, want the key's assets and the default bytes", p.Limits)
	}
	for _, bad := range []string{"", "sk_", token + "x", "Sk" + token[2:], NewToken()} {
		if _, err := k.Authenticate(t.Context(), bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("Authenticate(%q) = %v, want ErrBadKey", bad, err)
		}
	}
	// Revoked elsewhere (another process on the same store): trusted
	// until the cache entry ends, then refused.
	if err := st.RevokeKey(t.Context(), rec.ID, now); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(t.Context(), token); err != nil {
		t.Errorf("within the cache TTL: %v", err)
	}
	now = now.Add(CacheTTL + time.Millisecond)
	if _, err := k.Authenticate(t.Context(), token); !errors.Is(err, ErrBadKey) {
		t.Errorf("after the cache TTL, a revoked key: %v, want ErrBadKey", err)
	}
	// Revoked here: refused at once.
	_, token2, _ := k.Create(t.Context(), NewKey{Name: "b", Scopes: []string{ScopeRead}})
	p2, _ := k.Authenticate(t.Context(), token2)
	if err := k.Revoke(t.Context(), p2.KeyID); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Authenticate(t.Context(), token2); !errors.Is(err, ErrBadKey) {
		t.Errorf("revoked in this process: %v, want ErrBadKey at once", err)
	}
	// A given bootstrap token must have the right shape.
	if _, _, err := k.Create(t.Context(), NewKey{Name: "x", Scopes: []string{ScopeAdmin}, Token: "hunter2"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create with a malformed token: %v", err)
	}
}
