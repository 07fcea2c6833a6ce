package storetest

import (
	"bytes"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

func newKey(id string, created time.Time) store.Key {
	return store.Key{
		ID:        id,
		Name:      "key " + id,
		Hash:      []byte("hash-of-" + id),
		Prefix:    "sk_" + id,
		Scopes:    []string{"upload", "read"},
		Limits:    store.Limits{RatePerSecond: 2.5, Burst: 10, BytesPerDay: 1 << 30, AssetsPerDay: 100, AIUnitsPerDay: 12.5},
		CreatedAt: created,
	}
}

func testKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	k1, k2 := newKey("k1", epoch), newKey("k2", epoch.Add(time.Second))
	k2.Scopes = []string{"admin"}
	k2.Limits = store.Limits{}
	for _, k := range []store.Key{k2, k1} {
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatalf("CreateKey(%q): %v", k.ID, err)
		}
	}
	dup := newKey("k3", epoch)
	dup.Hash = k1.Hash
	wantErr(t, "CreateKey(same hash)", s.CreateKey(ctx, dup), store.ErrConflict)
	wantErr(t, "CreateKey(same id)", s.CreateKey(ctx, newKey("k1", epoch)), store.ErrConflict)

	got, err := s.KeyByHash(ctx, k1.Hash)
	if err != nil {
		t.Fatalf("KeyByHash: %v", err)
	}
	checkKey(t, got, k1)
	_, err = s.KeyByHash(ctx, []byte("nope"))
	wantErr(t, "KeyByHash(unknown)", err, store.ErrNotFound)
	if got, err = s.GetKey(ctx, "k2"); err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	checkKey(t, got, k2)
	_, err = s.GetKey(ctx, "nope")
	wantErr(t, "GetKey(unknown)", err, store.ErrNotFound)

	keys, err := s.ListKeys(ctx)
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	if len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k2" {
		t.Fatalf("ListKeys = %v, want k1, k2 (oldest first)", keys)
	}
	checkKey(t, keys[1], k2)

	if err := s.RevokeKey(ctx, "k1", epoch.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	if err := s.RevokeKey(ctx, "k1", epoch.Add(2*time.Hour)); err != nil {
		t.Fatalf("RevokeKey again: %v", err)
	}
	wantErr(t, "RevokeKey(unknown)", s.RevokeKey(ctx, "nope", epoch), store.ErrNotFound)
	got, err = s.KeyByHash(ctx, k1.Hash)
	if err != nil {
		t.Fatalf("KeyByHash(revoked): %v", err)
	}
	k1.RevokedAt = epoch.Add(time.Hour)
	checkKey(t, got, k1)
}

func testListKeysEmpty(t *testing.T, s store.Store) {
	keys, err := s.ListKeys(t.Context())
	if err != nil || keys == nil || len(keys) != 0 {
		t.Fatalf("ListKeys on an empty store = %#v, %v; want an empty, non-nil slice", keys, err)
	}
}

func checkKey(t *testing.T, got, want store.Key) {
	t.Helper()
	c := check(t, "key %q", want.ID)
	c.eq("ID", got.ID, want.ID)
	c.eq("Name", got.Name, want.Name)
	c.eq("Prefix", got.Prefix, want.Prefix)
	c.eq("Limits", got.Limits, want.Limits)
	c.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	c.time("RevokedAt", got.RevokedAt, want.RevokedAt)
	if !bytes.Equal(got.Hash, want.Hash) {
		t.Errorf("key %q: Hash = %x, want %x", want.ID, got.Hash, want.Hash)
	}
	if !reflect.DeepEqual(got.Scopes, want.Scopes) {
		t.Errorf("key %q: Scopes = %q, want %q", want.ID, got.Scopes, want.Scopes)
	}
}

func testUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	day := "2025-03-14"
	lim := store.Limits{BytesPerDay: 1000, AssetsPerDay: 3, AIUnitsPerDay: 1.5}
	u, err := s.GetUsage(ctx, "k1", day)
	if err != nil || u != (store.Usage{Day: day}) {
		t.Fatalf("GetUsage(nothing used) = %+v, %v; want zero counters", u, err)
	}
	u, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, Bytes: 600, Assets: 1}, lim)
	if err != nil || u != (store.Usage{Day: day, Bytes: 600, Assets: 1}) {
		t.Fatalf("AddUsage = %+v, %v", u, err)
	}
	// Over the byte quota: refused, nothing added.
	u, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, Bytes: 401, Assets: 1}, lim)
	wantErr(t, "AddUsage(over bytes)", err, store.ErrQuotaExceeded)
	if u != (store.Usage{Day: day, Bytes: 600, Assets: 1}) {
		t.Errorf("AddUsage refused returned %+v, want the usage unchanged", u)
	}
	// Exactly at the quota is allowed.
	if _, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, Bytes: 400, Assets: 1}, lim); err != nil {
		t.Fatalf("AddUsage(to the limit): %v", err)
	}
	// Counters the delta does not raise are not checked.
	if _, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, AIUnits: 1.25}, lim); err != nil {
		t.Fatalf("AddUsage(ai units while bytes are at the limit): %v", err)
	}
	_, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, AIUnits: 0.5}, lim)
	wantErr(t, "AddUsage(over ai units)", err, store.ErrQuotaExceeded)
	// Zero limits mean no check.
	if _, err = s.AddUsage(ctx, "k1", store.Usage{Day: day, AIUnits: 10}, store.Limits{}); err != nil {
		t.Fatalf("AddUsage(no limits): %v", err)
	}
	u, err = s.GetUsage(ctx, "k1", day)
	if want := (store.Usage{Day: day, Bytes: 1000, Assets: 2, AIUnits: 11.25}); err != nil || u != want {
		t.Errorf("GetUsage = %+v, %v; want %+v", u, err, want)
	}
	// Days and keys are separate.
	if u, _ := s.GetUsage(ctx, "k1", "2025-03-15"); u.Bytes != 0 {
		t.Errorf("next day's usage = %+v, want zero", u)
	}
	if u, _ := s.GetUsage(ctx, "k2", day); u.Bytes != 0 {
		t.Errorf("another key's usage = %+v, want zero", u)
	}
}

// testUsageConcurrent adds usage from many goroutines at once: the quota
// holds exactly.
func testUsageConcurrent(t *testing.T, s store.Store) {
	const workers, limit = 16, 10
	lim := store.Limits{AssetsPerDay: limit}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.AddUsage(t.Context(), "k1", store.Usage{Day: "2025-03-14", Assets: 1}, lim)
			switch {
			case err == nil:
				mu.Lock()
				accepted++
				mu.Unlock()
			case !isQuota(err):
				t.Errorf("AddUsage: %v", err)
			}
		}()
	}
	wg.Wait()
	if accepted != limit {
		t.Errorf("%d of %d concurrent adds accepted, want exactly %d", accepted, workers, limit)
	}
}

func isQuota(err error) bool { return errors.Is(err, store.ErrQuotaExceeded) }

func testAssetOwner(t *testing.T, s store.Store) {
	a := newAsset("a1", epoch)
	a.Owner, a.Visibility = "k1", "private"
	got := mustCreate(t, s, a)
	c := check(t, "asset %q", "a1")
	c.eq("Owner", got.Owner, "k1")
	c.eq("Visibility", got.Visibility, "private")
}

func testSpend(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := epoch
	later := now.Add(48 * time.Hour)
	lim := store.Spend{AudioSeconds: 60, Images: 2, Tokens: 1000}
	add := func(account string, delta store.Spend, at time.Time) (store.Spend, error) {
		t.Helper()
		return s.AddSpend(ctx, account, delta, lim, at, at.Add(48*time.Hour))
	}
	got, err := add("asset:a1", store.Spend{AudioSeconds: 45, Images: 1}, now)
	if err != nil || got != (store.Spend{AudioSeconds: 45, Images: 1}) {
		t.Fatalf("AddSpend = %+v, %v", got, err)
	}
	// Over the audio budget: refused, nothing added, the account returned.
	got, err = add("asset:a1", store.Spend{AudioSeconds: 20, Images: 1}, now)
	wantErr(t, "AddSpend(over audio)", err, store.ErrQuotaExceeded)
	if got != (store.Spend{AudioSeconds: 45, Images: 1}) {
		t.Errorf("refused AddSpend returned %+v, want the account unchanged", got)
	}
	// Up to the limit is allowed; a dimension the delta does not raise is
	// not checked, and refunds always apply.
	if _, err := add("asset:a1", store.Spend{AudioSeconds: 15}, now); err != nil {
		t.Fatalf("AddSpend(to the limit): %v", err)
	}
	if _, err := add("asset:a1", store.Spend{Tokens: 900}, now); err != nil {
		t.Fatalf("AddSpend(tokens while audio is at the limit): %v", err)
	}
	if got, err = add("asset:a1", store.Spend{AudioSeconds: -10, Tokens: -100}, now); err != nil || got != (store.Spend{AudioSeconds: 50, Images: 1, Tokens: 800}) {
		t.Errorf("AddSpend(refund) = %+v, %v", got, err)
	}
	if got, err = s.AddSpend(ctx, "asset:a1", store.Spend{Tokens: 5000}, store.Spend{}, now, later); err != nil || got.Tokens != 5800 {
		t.Errorf("AddSpend(no limit) = %+v, %v", got, err)
	}
	// Accounts are separate; an expired one reads as zero.
	if got, err = add("key:k1:2025-03-14", store.Spend{Images: 2}, now); err != nil || got != (store.Spend{Images: 2}) {
		t.Errorf("another account = %+v, %v", got, err)
	}
	if got, err = add("asset:a1", store.Spend{Images: 1}, later.Add(time.Second)); err != nil || got != (store.Spend{Images: 1}) {
		t.Errorf("AddSpend after the account expired = %+v, %v; want a fresh account", got, err)
	}

	// Concurrent adds from many workers: the budget holds exactly.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		accepted int
	)
	for range 16 {
		wg.Go(func() {
			_, err := s.AddSpend(ctx, "key:k2:2025-03-14", store.Spend{AudioSeconds: 10}, lim, now, later)
			switch {
			case err == nil:
				mu.Lock()
				accepted++
				mu.Unlock()
			case !isQuota(err):
				t.Errorf("AddSpend: %v", err)
			}
		})
	}
	wg.Wait()
	if accepted != 6 {
		t.Errorf("%d of 16 concurrent adds of 10 s accepted under a 60 s budget, want 6", accepted)
	}
}
