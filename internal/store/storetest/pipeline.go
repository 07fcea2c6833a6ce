package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

func testMetadataAndPipeline(t *testing.T, s store.Store) {
	a := newAsset("a1", epoch)
	a.Metadata = map[string]string{"tier": "pro", "lang": "fr-CA", "empty": ""}
	got := mustCreate(t, s, a)
	if !maps.Equal(got.Metadata, a.Metadata) {
		t.Errorf("Metadata = %v, want %v", got.Metadata, a.Metadata)
	}
	if got.Pipeline != "" {
		t.Errorf("Pipeline of a new asset = %q, want empty", got.Pipeline)
	}
	if got := mustCreate(t, s, newAsset("a2", epoch)); len(got.Metadata) != 0 {
		t.Errorf("Metadata of an asset created without = %v, want none", got.Metadata)
	}
	if err := s.SetPipeline(t.Context(), "a1", "video"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a1"); got.Pipeline != "video" {
		t.Errorf("Pipeline after SetPipeline = %q, want video", got.Pipeline)
	}
	wantErr(t, "SetPipeline(unknown asset)", s.SetPipeline(t.Context(), "nope", "video"), store.ErrNotFound)
}

func testListJobSteps(t *testing.T, s store.Store) {
	t0 := clock()
	claimed(t, s, "a1", "k1", t0)
	probe := mustStart(t, s, "k1", "a1", "probe", t0)
	thumb := mustStart(t, s, "k1", "a1", "thumbnail", t0.Add(time.Second))
	claimed(t, s, "a1", "k2", t0.Add(2*time.Second))
	hls := mustStart(t, s, "k2", "a1", "hls", t0.Add(3*time.Second))

	list := func(key string) []store.Step {
		t.Helper()
		got, err := s.ListJobSteps(t.Context(), key)
		if err != nil {
			t.Fatalf("ListJobSteps(%q): %v", key, err)
		}
		if got == nil {
			t.Fatalf("ListJobSteps(%q) = nil, want a non-nil slice", key)
		}
		return got
	}
	checkSteps(t, list("k1"), []store.Step{probe, thumb})
	checkSteps(t, list("k2"), []store.Step{hls})
	checkSteps(t, list("unknown"), nil)
}

func testReplaceOutputs(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	out := func(name, step, gen string) store.Output {
		return store.Output{
			AssetID: "a1", Name: name, Step: step, Key: "assets/a1/" + gen + "/" + name,
			ContentType: "video/mp4", Size: 10, ETag: fmt.Sprintf(`"%s-%s"`, gen, name), CreatedAt: epoch,
		}
	}
	thumb := out("thumbnail.jpg", "thumbnail", "g1")
	if err := s.PutOutput(ctx, thumb); err != nil {
		t.Fatal(err)
	}
	first := []store.Output{out("hls/master.m3u8", "hls", "g1"), out("hls/360p/index.m3u8", "hls", "g1"), out("hls/360p/seg1.m4s", "hls", "g1")}
	removed, err := s.ReplaceOutputs(ctx, "a1", "hls", first)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 0 {
		t.Errorf("first ReplaceOutputs removed %v, want nothing", removed)
	}
	// A rerun: new keys, one file fewer; the same key is kept.
	kept := out("hls/master.m3u8", "hls", "g1")
	second := []store.Output{kept, out("hls/360p/index.m3u8", "hls", "g2")}
	removed, err = s.ReplaceOutputs(ctx, "a1", "hls", second)
	if err != nil {
		t.Fatal(err)
	}
	var removedKeys []string
	for _, o := range removed {
		removedKeys = append(removedKeys, o.Key)
	}
	slices.Sort(removedKeys)
	want := []string{"assets/a1/g1/hls/360p/index.m3u8", "assets/a1/g1/hls/360p/seg1.m4s"}
	if !slices.Equal(removedKeys, want) {
		t.Errorf("removed keys = %v, want %v", removedKeys, want)
	}
	got, err := s.ListOutputs(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	wantList := []store.Output{second[1], kept, thumb}
	if len(got) != len(wantList) {
		t.Fatalf("ListOutputs after replace: %d outputs, want %d: %v", len(got), len(wantList), got)
	}
	for i := range got {
		checkOutput(t, got[i], wantList[i])
	}
	// No outputs: the step's are all removed; other steps' stay.
	if removed, err = s.ReplaceOutputs(ctx, "a1", "hls", nil); err != nil || len(removed) != 2 {
		t.Errorf("ReplaceOutputs(none) removed %d, %v; want 2", len(removed), err)
	}
	if got, _ := s.ListOutputs(ctx, "a1"); len(got) != 1 || got[0].Name != "thumbnail.jpg" {
		t.Errorf("outputs left = %v, want the thumbnail", got)
	}
	_, err = s.ReplaceOutputs(ctx, "nope", "hls", first)
	wantErr(t, "ReplaceOutputs(unknown asset)", err, store.ErrNotFound)
}

func testQuarantine(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCreate(t, s, newAsset("a1", epoch))
	if got := mustGet(t, s, "a1"); got.Quarantine != "" {
		t.Errorf("new asset quarantined: %q", got.Quarantine)
	}
	if err := s.SetQuarantine(ctx, "a1", "flagged: porn 0.93"); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a1"); got.Quarantine != "flagged: porn 0.93" {
		t.Errorf("Quarantine = %q", got.Quarantine)
	}
	if err := s.SetQuarantine(ctx, "a1", ""); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a1"); got.Quarantine != "" {
		t.Errorf("after release: %q", got.Quarantine)
	}
	wantErr(t, "SetQuarantine(unknown)", s.SetQuarantine(ctx, "nope", "x"), store.ErrNotFound)
}
