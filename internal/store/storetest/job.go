package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

const lease = time.Minute

// failedAsset creates an asset whose status a claim must reset.
func failedAsset(t *testing.T, s store.Store, id string) store.Asset {
	t.Helper()
	a := newAsset(id, epoch)
	a.Status, a.Error = store.StatusFailed, "previous attempt failed"
	return mustCreate(t, s, a)
}

func testClaimJobCreates(t *testing.T, s store.Store) {
	want := failedAsset(t, s, "a1")
	lo := clock()
	now := lo
	got := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: now, Lease: lease})
	wantJob := store.Job{
		Key:        "k1",
		AssetID:    "a1",
		Status:     store.StatusProcessing,
		Owner:      "w1",
		LeaseUntil: now.Add(lease),
		Claims:     1,
		CreatedAt:  now,
	}
	checkJob(t, got, wantJob)
	checkJob(t, mustGetJob(t, s, "k1"), wantJob)

	a := mustGet(t, s, "a1")
	check(t, "asset %q after ClaimJob", "a1").between("UpdatedAt", a.UpdatedAt, lo)
	want.Status, want.Error, want.UpdatedAt = store.StatusProcessing, "", a.UpdatedAt
	checkAsset(t, a, want)
}

func testClaimJobUnknownAsset(t *testing.T, s store.Store) {
	_, err := s.ClaimJob(t.Context(), store.Claim{Key: "k1", AssetID: "missing", Owner: "w1", Now: clock(), Lease: lease})
	wantErr(t, "ClaimJob(unknown asset)", err, store.ErrNotFound)
	_, err = s.GetJob(t.Context(), "k1")
	wantErr(t, "GetJob after failed claim", err, store.ErrNotFound)
}

func testClaimJobLeased(t *testing.T, s store.Store) {
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	first := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})
	assetBefore := mustGet(t, s, "a1")

	for _, at := range []time.Duration{0, lease / 2, lease - time.Microsecond} {
		got, err := s.ClaimJob(t.Context(), store.Claim{Key: "k1", AssetID: "a1", Owner: "w2", Now: t0.Add(at), Lease: lease})
		wantErr(t, fmt.Sprintf("ClaimJob(w2 at +%v)", at), err, store.ErrLeased)
		checkJob(t, got, first)
	}
	checkJob(t, mustGetJob(t, s, "k1"), first)
	checkAsset(t, mustGet(t, s, "a1"), assetBefore)
}

func testClaimJobSameOwner(t *testing.T, s store.Store) {
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})
	t1 := t0.Add(10 * time.Second)
	got := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t1, Lease: 2 * lease})
	want := store.Job{
		Key:        "k1",
		AssetID:    "a1",
		Status:     store.StatusProcessing,
		Owner:      "w1",
		LeaseUntil: t1.Add(2 * lease),
		Claims:     2,
		CreatedAt:  t0,
	}
	checkJob(t, got, want)
	checkJob(t, mustGetJob(t, s, "k1"), want)
}

func testClaimJobLeaseExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})

	// A lease is live while LeaseUntil is after Now: at LeaseUntil it has
	// lapsed.
	t1 := t0.Add(lease)
	got := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w2", Now: t1, Lease: lease})
	want := store.Job{
		Key:        "k1",
		AssetID:    "a1",
		Status:     store.StatusProcessing,
		Owner:      "w2",
		LeaseUntil: t1.Add(lease),
		Claims:     2,
		CreatedAt:  t0,
	}
	checkJob(t, got, want)
	if a := mustGet(t, s, "a1"); a.Status != store.StatusProcessing {
		t.Errorf("asset status after second claim = %q, want %q", a.Status, store.StatusProcessing)
	}

	// The first owner has lost the job.
	wantErr(t, "RenewJob(w1)", s.RenewJob(ctx, "k1", "w1", t1.Add(time.Hour)), store.ErrLeased)
	wantErr(t, "ReleaseJob(w1)", s.ReleaseJob(ctx, "k1", "w1"), store.ErrLeased)
	wantErr(t, "FinishJob(w1)", s.FinishJob(ctx, "k1", "w1", store.StatusSucceeded, ""), store.ErrLeased)
	checkJob(t, mustGetJob(t, s, "k1"), want)
}

func testClaimJobFinished(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})
	if err := s.FinishJob(ctx, "k1", "w1", store.StatusSucceeded, ""); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	finished := mustGetJob(t, s, "k1")
	// Someone changed the asset since; a redelivered event must not undo it.
	if err := s.SetAssetStatus(ctx, "a1", store.StatusFailed, "deleted by user"); err != nil {
		t.Fatalf("SetAssetStatus: %v", err)
	}
	asset := mustGet(t, s, "a1")

	for _, owner := range []string{"w1", "w2"} {
		got, err := s.ClaimJob(ctx, store.Claim{Key: "k1", AssetID: "a1", Owner: owner, Now: t0.Add(time.Second), Lease: lease})
		if err != nil {
			t.Fatalf("ClaimJob(finished, %s): %v", owner, err)
		}
		checkJob(t, got, finished)
	}
	checkJob(t, mustGetJob(t, s, "k1"), finished)
	checkAsset(t, mustGet(t, s, "a1"), asset)
}

func testClaimJobConcurrent(t *testing.T, s store.Store) {
	mustCreate(t, s, newAsset("a1", epoch))
	const n = 20
	now := clock()
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		owners  = make([]string, n)
		errs    = make([]error, n)
		results = make([]store.Job, n)
	)
	for i := range n {
		owners[i] = fmt.Sprintf("w%02d", i)
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.ClaimJob(t.Context(), store.Claim{Key: "k1", AssetID: "a1", Owner: owners[i], Now: now, Lease: lease})
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("ClaimJob: both %s and %s got the lease", owners[winner], owners[i])
			}
			winner = i
		case errors.Is(err, store.ErrLeased):
		default:
			t.Errorf("ClaimJob(%s): got error %v, want nil or %v", owners[i], err, store.ErrLeased)
		}
	}
	if winner < 0 {
		t.Fatalf("ClaimJob: no owner got the lease")
	}
	want := store.Job{
		Key:        "k1",
		AssetID:    "a1",
		Status:     store.StatusProcessing,
		Owner:      owners[winner],
		LeaseUntil: now.Add(lease),
		Claims:     1,
		CreatedAt:  now,
	}
	checkJob(t, mustGetJob(t, s, "k1"), want)
	for i, j := range results {
		if errs[i] != nil && errors.Is(errs[i], store.ErrLeased) {
			checkJob(t, j, want)
		}
	}
}

func testRenewJob(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	want := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})

	until := t0.Add(5*lease + 123*time.Microsecond)
	if err := s.RenewJob(ctx, "k1", "w1", until); err != nil {
		t.Fatalf("RenewJob: %v", err)
	}
	want.LeaseUntil = until
	checkJob(t, mustGetJob(t, s, "k1"), want)

	// The renewed lease keeps others out past the first one's end.
	_, err := s.ClaimJob(ctx, store.Claim{Key: "k1", AssetID: "a1", Owner: "w2", Now: t0.Add(2 * lease), Lease: lease})
	wantErr(t, "ClaimJob(w2) after renewal", err, store.ErrLeased)

	wantErr(t, "RenewJob(w2)", s.RenewJob(ctx, "k1", "w2", until.Add(time.Hour)), store.ErrLeased)
	wantErr(t, "RenewJob(missing)", s.RenewJob(ctx, "missing", "w1", until), store.ErrNotFound)
	checkJob(t, mustGetJob(t, s, "k1"), want)
}

func testReleaseJob(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	t0 := clock()
	mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: t0, Lease: lease})

	wantErr(t, "ReleaseJob(w2)", s.ReleaseJob(ctx, "k1", "w2"), store.ErrLeased)
	wantErr(t, "ReleaseJob(missing)", s.ReleaseJob(ctx, "missing", "w1"), store.ErrNotFound)
	if err := s.ReleaseJob(ctx, "k1", "w1"); err != nil {
		t.Fatalf("ReleaseJob: %v", err)
	}
	got := mustGetJob(t, s, "k1")
	c := check(t, "job %q after ReleaseJob", "k1")
	c.eq("Status", got.Status, store.StatusProcessing)
	c.time("LeaseUntil", got.LeaseUntil, time.Time{})
	c.time("FinishedAt", got.FinishedAt, time.Time{})
	c.eq("Claims", got.Claims, 1)

	// Another worker may claim it at once.
	t1 := t0.Add(time.Second)
	claimed := mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w2", Now: t1, Lease: lease})
	checkJob(t, claimed, store.Job{
		Key:        "k1",
		AssetID:    "a1",
		Status:     store.StatusProcessing,
		Owner:      "w2",
		LeaseUntil: t1.Add(lease),
		Claims:     2,
		CreatedAt:  t0,
	})
}

func testFinishJob(t *testing.T, s store.Store) {
	tests := []struct {
		status store.Status
		errMsg string
	}{
		{store.StatusSucceeded, ""},
		{store.StatusFailed, "transcode: exit status 1: invalid data found"},
	}
	for _, tt := range tests {
		t.Run(string(tt.status), func(t *testing.T) {
			ctx := t.Context()
			id, key := "a-"+string(tt.status), "k-"+string(tt.status)
			wantAsset := mustCreate(t, s, newAsset(id, epoch))
			t0 := clock()
			wantJob := mustClaim(t, s, store.Claim{Key: key, AssetID: id, Owner: "w1", Now: t0, Lease: lease})

			lo := clock()
			if err := s.FinishJob(ctx, key, "w1", tt.status, tt.errMsg); err != nil {
				t.Fatalf("FinishJob: %v", err)
			}
			got := mustGetJob(t, s, key)
			check(t, "job %q", key).between("FinishedAt", got.FinishedAt, lo)
			wantJob.Status, wantJob.Error, wantJob.LeaseUntil, wantJob.FinishedAt = tt.status, tt.errMsg, time.Time{}, got.FinishedAt
			checkJob(t, got, wantJob)

			a := mustGet(t, s, id)
			check(t, "asset %q", id).between("UpdatedAt", a.UpdatedAt, lo)
			wantAsset.Status, wantAsset.Error, wantAsset.UpdatedAt = tt.status, tt.errMsg, a.UpdatedAt
			checkAsset(t, a, wantAsset)

			// A retried call by the same owner is harmless.
			if err := s.FinishJob(ctx, key, "w1", tt.status, tt.errMsg); err != nil {
				t.Errorf("FinishJob again: got error %v, want nil", err)
			}
			checkJob(t, mustGetJob(t, s, key), wantJob)
			checkAsset(t, mustGet(t, s, id), wantAsset)
		})
	}
}

func testFinishJobNotOwner(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	mustClaim(t, s, store.Claim{Key: "k1", AssetID: "a1", Owner: "w1", Now: clock(), Lease: lease})
	wantJob := mustGetJob(t, s, "k1")
	want := mustGet(t, s, "a1")

	wantErr(t, "FinishJob(w2)", s.FinishJob(ctx, "k1", "w2", store.StatusFailed, "x"), store.ErrLeased)
	wantErr(t, "FinishJob(missing)", s.FinishJob(ctx, "missing", "w1", store.StatusFailed, "x"), store.ErrNotFound)
	checkJob(t, mustGetJob(t, s, "k1"), wantJob)
	checkAsset(t, mustGet(t, s, "a1"), want)

	// Finished by w1, the job is not w2's to finish either.
	if err := s.FinishJob(ctx, "k1", "w1", store.StatusSucceeded, ""); err != nil {
		t.Fatalf("FinishJob(w1): %v", err)
	}
	wantJob = mustGetJob(t, s, "k1")
	want = mustGet(t, s, "a1")
	wantErr(t, "FinishJob(w2) after w1", s.FinishJob(ctx, "k1", "w2", store.StatusFailed, "x"), store.ErrLeased)
	checkJob(t, mustGetJob(t, s, "k1"), wantJob)
	checkAsset(t, mustGet(t, s, "a1"), want)
}

func testGetJobNotFound(t *testing.T, s store.Store) {
	_, err := s.GetJob(t.Context(), "missing")
	wantErr(t, "GetJob(missing)", err, store.ErrNotFound)
}

func testLatestJob(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	mustCreate(t, s, newAsset("a2", epoch))
	_, err := s.LatestJob(ctx, "a1")
	wantErr(t, "LatestJob(no jobs)", err, store.ErrNotFound)

	t0 := clock()
	claim := func(key, asset string, now time.Time) store.Job {
		return mustClaim(t, s, store.Claim{Key: key, AssetID: asset, Owner: "w1", Now: now, Lease: lease})
	}
	claim("k-late", "a1", t0.Add(2*time.Second))
	claim("k-early", "a1", t0) // created after, but says it was earlier
	claim("k-other", "a2", t0.Add(time.Hour))
	got, err := s.LatestJob(ctx, "a1")
	if err != nil {
		t.Fatalf("LatestJob: %v", err)
	}
	checkJob(t, got, mustGetJob(t, s, "k-late"))

	// Created at the same instant, the one inserted last is the latest.
	claim("k-tie-b", "a1", t0.Add(3*time.Second))
	claim("k-tie-a", "a1", t0.Add(3*time.Second))
	got, err = s.LatestJob(ctx, "a1")
	if err != nil {
		t.Fatalf("LatestJob: %v", err)
	}
	checkJob(t, got, mustGetJob(t, s, "k-tie-a"))
}

func testConcurrentWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	const writers, perWriter = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*4)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("w%d-a%d", w, i)
				key := "k-" + id
				if err := s.CreateAsset(ctx, newAsset(id, epoch)); err != nil {
					errs <- fmt.Errorf("CreateAsset(%s): %w", id, err)
					continue
				}
				if err := s.MarkUploaded(ctx, id, store.Object{Key: id}); err != nil {
					errs <- fmt.Errorf("MarkUploaded(%s): %w", id, err)
				}
				if _, err := s.ClaimJob(ctx, store.Claim{Key: key, AssetID: id, Owner: "w", Now: clock(), Lease: lease}); err != nil {
					errs <- fmt.Errorf("ClaimJob(%s): %w", key, err)
				}
				if err := s.FinishJob(ctx, key, "w", store.StatusSucceeded, ""); err != nil {
					errs <- fmt.Errorf("FinishJob(%s): %w", key, err)
				}
			}
		})
		wg.Go(func() {
			for range perWriter {
				if _, err := s.ListAssets(ctx, store.ListOptions{Limit: 5}); err != nil {
					errs <- fmt.Errorf("ListAssets: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	p, err := s.ListAssets(ctx, store.ListOptions{Limit: 1000, Status: store.StatusSucceeded})
	if err != nil {
		t.Fatalf("ListAssets: %v", err)
	}
	if len(p.Assets) != writers*perWriter {
		t.Errorf("ListAssets(succeeded): got %d assets, want %d", len(p.Assets), writers*perWriter)
	}
}
