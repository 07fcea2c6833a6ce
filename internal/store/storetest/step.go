package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// claimed creates asset id with a job key claimed at now.
func claimed(t *testing.T, s store.Store, id, key string, now time.Time) {
	t.Helper()
	if _, err := s.GetAsset(t.Context(), id); err != nil {
		mustCreate(t, s, newAsset(id, epoch))
	}
	mustClaim(t, s, store.Claim{Key: key, AssetID: id, Owner: "w1", Now: now, Lease: lease})
}

func mustStart(t *testing.T, s store.Store, key, asset, name string, now time.Time) store.Step {
	t.Helper()
	st, err := s.StartStep(t.Context(), key, asset, name, now)
	if err != nil {
		t.Fatalf("StartStep(%q, %q): %v", key, name, err)
	}
	return st
}

func mustListSteps(t *testing.T, s store.Store, asset string) []store.Step {
	t.Helper()
	steps, err := s.ListSteps(t.Context(), asset)
	if err != nil {
		t.Fatalf("ListSteps(%q): %v", asset, err)
	}
	if steps == nil {
		t.Errorf("ListSteps(%q): got a nil slice, want an empty one", asset)
	}
	return steps
}

func checkSteps(t *testing.T, got, want []store.Step) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("ListSteps: got %d steps %v, want %d", len(got), stepNames(got), len(want))
	}
	for i := range got {
		checkStep(t, got[i], want[i])
	}
}

func stepNames(steps []store.Step) []string {
	names := make([]string, len(steps))
	for i, st := range steps {
		names[i] = st.Name
	}
	return names
}

func testStartStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	mustCreate(t, s, newAsset("no-jobs", epoch))
	checkSteps(t, mustListSteps(t, s, "a1"), nil)
	checkSteps(t, mustListSteps(t, s, "no-jobs"), nil)

	got := mustStart(t, s, "k1", "a1", "probe", t0.Add(time.Second))
	want := store.Step{
		JobKey:    "k1",
		AssetID:   "a1",
		Name:      "probe",
		Status:    store.StatusProcessing,
		Attempts:  1,
		StartedAt: t0.Add(time.Second),
	}
	checkStep(t, got, want)
	checkSteps(t, mustListSteps(t, s, "a1"), []store.Step{want})

	_, err := s.StartStep(ctx, "missing", "a1", "probe", t0)
	wantErr(t, "StartStep(unknown job)", err, store.ErrNotFound)
}

func testFinishStep(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	transcode := mustStart(t, s, "k1", "a1", "transcode", t0.Add(time.Second))
	caption := mustStart(t, s, "k1", "a1", "caption", t0.Add(2*time.Second))

	transcode.Status = store.StatusFailed
	transcode.Error = "ffmpeg: exit status 1: moov atom not found"
	transcode.FinishedAt = t0.Add(2500 * time.Millisecond)
	transcode.Duration = 1500 * time.Millisecond
	caption.Status = store.StatusSkipped
	caption.FinishedAt = t0.Add(2*time.Second + 3*time.Microsecond)
	caption.Duration = 3 * time.Microsecond
	for _, st := range []store.Step{transcode, caption} {
		if err := s.FinishStep(ctx, st); err != nil {
			t.Fatalf("FinishStep(%q): %v", st.Name, err)
		}
	}
	checkSteps(t, mustListSteps(t, s, "a1"), []store.Step{transcode, caption})

	for _, st := range []store.Step{
		{JobKey: "k1", AssetID: "a1", Name: "missing", Status: store.StatusSucceeded, FinishedAt: t0},
		{JobKey: "missing", AssetID: "a1", Name: "transcode", Status: store.StatusSucceeded, FinishedAt: t0},
	} {
		err := s.FinishStep(ctx, st)
		wantErr(t, fmt.Sprintf("FinishStep(%q, %q)", st.JobKey, st.Name), err, store.ErrNotFound)
	}
}

func testStepRetryKeepsOrder(t *testing.T, s store.Store) {
	ctx := t.Context()
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	// Not in alphabetical order, so that name order would show.
	transcode := mustStart(t, s, "k1", "a1", "transcode", t0.Add(1*time.Second))
	probe := mustStart(t, s, "k1", "a1", "probe", t0.Add(2*time.Second))
	thumb := mustStart(t, s, "k1", "a1", "thumbnail", t0.Add(3*time.Second))

	transcode.Status, transcode.Error = store.StatusFailed, "killed"
	transcode.FinishedAt, transcode.Duration = t0.Add(4*time.Second), 3*time.Second
	if err := s.FinishStep(ctx, transcode); err != nil {
		t.Fatalf("FinishStep: %v", err)
	}

	got := mustStart(t, s, "k1", "a1", "transcode", t0.Add(5*time.Second))
	retried := store.Step{
		JobKey:    "k1",
		AssetID:   "a1",
		Name:      "transcode",
		Status:    store.StatusProcessing,
		Attempts:  2,
		StartedAt: t0.Add(5 * time.Second),
	}
	checkStep(t, got, retried)
	checkSteps(t, mustListSteps(t, s, "a1"), []store.Step{retried, probe, thumb})

	thumb = mustStart(t, s, "k1", "a1", "thumbnail", t0.Add(6*time.Second))
	if thumb.Attempts != 2 {
		t.Errorf("StartStep(thumbnail) again: Attempts = %d, want 2", thumb.Attempts)
	}
	checkSteps(t, mustListSteps(t, s, "a1"), []store.Step{retried, probe, thumb})
}

func testListStepsLatestJob(t *testing.T, s store.Store) {
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	mustStart(t, s, "k1", "a1", "probe", t0)
	mustStart(t, s, "k1", "a1", "transcode", t0)
	if got := mustListSteps(t, s, "a1"); len(got) != 2 {
		t.Fatalf("ListSteps: got %d steps, want 2", len(got))
	}

	// A new version of the object: a new job, whose steps replace the
	// old job's in the listing.
	claimed(t, s, "a1", "k2", t0.Add(time.Second))
	checkSteps(t, mustListSteps(t, s, "a1"), nil)
	probe := mustStart(t, s, "k2", "a1", "probe", t0.Add(2*time.Second))
	checkSteps(t, mustListSteps(t, s, "a1"), []store.Step{probe})
}

func testStepsConcurrent(t *testing.T, s store.Store) {
	const n = 20
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
		names = make([]string, n)
	)
	for i := range n {
		names[i] = fmt.Sprintf("step%02d", i)
		wg.Go(func() {
			<-start
			st, err := s.StartStep(t.Context(), "k1", "a1", names[i], t0)
			if err != nil {
				errs[i] = fmt.Errorf("StartStep(%s): %w", names[i], err)
				return
			}
			st.Status, st.FinishedAt, st.Duration = store.StatusSucceeded, t0.Add(time.Second), time.Second
			if err := s.FinishStep(t.Context(), st); err != nil {
				errs[i] = fmt.Errorf("FinishStep(%s): %w", names[i], err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	steps := mustListSteps(t, s, "a1")
	got := stepNames(steps)
	slices.Sort(got)
	if !slices.Equal(got, names) {
		t.Errorf("ListSteps: got %q, want %q", got, names)
	}
	for _, st := range steps {
		checkStep(t, st, store.Step{
			JobKey:     "k1",
			AssetID:    "a1",
			Name:       st.Name,
			Status:     store.StatusSucceeded,
			Attempts:   1,
			StartedAt:  t0,
			FinishedAt: t0.Add(time.Second),
			Duration:   time.Second,
		})
	}
}

func testOutputs(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	mustCreate(t, s, newAsset("a2", epoch))
	if got, err := s.ListOutputs(ctx, "a1"); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ListOutputs(no outputs): got %v, error %v; want an empty slice", got, err)
	}

	output := func(asset, name, step string, size int64, created time.Time) store.Output {
		return store.Output{
			AssetID:     asset,
			Name:        name,
			Step:        step,
			Key:         "out/" + asset + "/" + name,
			ContentType: "image/jpeg",
			Size:        size,
			ETag:        fmt.Sprintf(`"%s-%d"`, name, size),
			CreatedAt:   created,
		}
	}
	thumb := output("a1", "thumbnail.jpg", "thumbnail", 2048, epoch.Add(3*time.Second))
	poster := output("a1", "poster.jpg", "poster", 4096, epoch.Add(1*time.Second))
	hls := output("a1", "hls/index.m3u8", "transcode", 512, epoch.Add(2*time.Second))
	hls.ContentType = "application/vnd.apple.mpegurl"
	other := output("a2", "thumbnail.jpg", "thumbnail", 1, epoch)
	for _, o := range []store.Output{thumb, poster, hls, other} {
		if err := s.PutOutput(ctx, o); err != nil {
			t.Fatalf("PutOutput(%q, %q): %v", o.AssetID, o.Name, err)
		}
	}

	list := func(asset string, want ...store.Output) {
		t.Helper()
		got, err := s.ListOutputs(ctx, asset)
		if err != nil {
			t.Fatalf("ListOutputs(%q): %v", asset, err)
		}
		if len(got) != len(want) {
			t.Fatalf("ListOutputs(%q): got %d outputs, want %d", asset, len(got), len(want))
		}
		for i := range got {
			checkOutput(t, got[i], want[i])
		}
	}
	list("a1", hls, poster, thumb)
	list("a2", other)

	// Writing a name again replaces the output.
	thumb2 := output("a1", "thumbnail.jpg", "thumbnail-v2", 9999, epoch.Add(time.Hour))
	thumb2.ContentType = "image/webp"
	if err := s.PutOutput(ctx, thumb2); err != nil {
		t.Fatalf("PutOutput(replace): %v", err)
	}
	list("a1", hls, poster, thumb2)
	list("a2", other)

	err := s.PutOutput(ctx, output("missing", "x.jpg", "thumbnail", 1, epoch))
	wantErr(t, "PutOutput(unknown asset)", err, store.ErrNotFound)
}

// testDeleteAsset removes an asset with its jobs, steps and outputs, and
// nothing of another asset.
func testDeleteAsset(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"a1", "a2"} {
		mustCreate(t, s, newAsset(id, epoch))
		if _, err := s.ClaimJob(ctx, store.Claim{Key: "job-" + id, AssetID: id, Owner: "w", Now: epoch, Lease: time.Minute}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.StartStep(ctx, "job-"+id, id, "probe", epoch); err != nil {
			t.Fatal(err)
		}
		if err := s.PutOutput(ctx, store.Output{AssetID: id, Name: "thumbnail.jpg", Step: "thumbnail", Key: "assets/" + id + "/t.jpg", CreatedAt: epoch}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAsset(ctx, "a1"); err != nil {
		t.Fatalf("DeleteAsset: %v", err)
	}
	_, err := s.GetAsset(ctx, "a1")
	wantErr(t, "GetAsset(deleted)", err, store.ErrNotFound)
	_, err = s.GetJob(ctx, "job-a1")
	wantErr(t, "GetJob(of a deleted asset)", err, store.ErrNotFound)
	if outs, err := s.ListOutputs(ctx, "a1"); err != nil || len(outs) != 0 {
		t.Errorf("outputs of a deleted asset: %v, %v", outs, err)
	}
	if steps, err := s.ListJobSteps(ctx, "job-a1"); err != nil || len(steps) != 0 {
		t.Errorf("steps of a deleted asset: %v, %v", steps, err)
	}
	// A lease on its job cannot be renewed: its worker stops.
	if err := s.RenewJob(ctx, "job-a1", "w", epoch.Add(time.Minute)); err == nil {
		t.Error("RenewJob of a deleted asset's job succeeded")
	}
	wantErr(t, "DeleteAsset(again)", s.DeleteAsset(ctx, "a1"), store.ErrNotFound)
	if outs, err := s.ListOutputs(ctx, "a2"); err != nil || len(outs) != 1 {
		t.Errorf("the other asset's outputs: %v, %v", outs, err)
	}
	if _, err := s.GetJob(ctx, "job-a2"); err != nil {
		t.Errorf("the other asset's job: %v", err)
	}
}
