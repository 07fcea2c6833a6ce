package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/config"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestRestart stops the server while jobs are queued and one is running,
// starts it again on the same data dir, and checks that every asset
// succeeds with exactly its outputs, none duplicated.
func TestRestart(t *testing.T) { forSetups(t, testRestart) }

func testRestart(t *testing.T, cfg config.Config) {
	dir := cfg.DataDir
	cfg.Worker.Concurrency = 1
	// Interrupt the running job at once instead of letting it finish.
	cfg.Worker.ShutdownGrace = time.Millisecond
	h := start(t, cfg)

	media := t.TempDir()
	const n = 6
	var clips, ids []string
	for i := range n {
		clips = append(clips, mediatest.Generate(t, media, fmt.Sprintf("c%d", i), mediatest.Clip{Width: 1280, Height: 720, Duration: 3, Video: true, Audio: true}))
	}
	for _, clip := range clips {
		ids = append(ids, h.uploadPut(t, clip))
	}
	h.stop()

	// The first server must not have finished everything, or this test
	// proves nothing about resuming.
	unfinished := 0
	st := reopenStore(t, dir)
	for _, id := range ids {
		a, err := st.GetAsset(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != "succeeded" {
			unfinished++
		}
	}
	st.Close()
	if unfinished == 0 {
		t.Fatal("all assets finished before the stop; the restart was not exercised")
	}
	t.Logf("%d of %d assets unfinished at stop", unfinished, n)

	h2 := start(t, cfg)
	for _, id := range ids {
		a := h2.wait(t, id)
		if a.Status != wire.StatusSucceeded {
			t.Errorf("asset %s: %s %q, want succeeded", id, a.Status, a.Error)
			continue
		}
		var names []string
		for _, o := range a.Outputs {
			names = append(names, o.Name)
		}
		if got := strings.Join(names, ","); got != "audio.m4a,thumbnail.jpg" {
			t.Errorf("asset %s outputs = %s, want audio.m4a,thumbnail.jpg", id, got)
		}
		objs, err := h2.bucket.List(t.Context(), "assets/"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range objs {
			keys = append(keys, filepath.Base(o.Key))
		}
		sort.Strings(keys)
		if got := strings.Join(keys, ","); got != "audio.m4a,thumbnail.jpg" {
			t.Errorf("asset %s objects in bucket = %s, want audio.m4a,thumbnail.jpg", id, got)
		}
	}
	h2.stop()
	// Job directories are gone; the directories for FFmpeg's private
	// temp dirs and for renders stay, empty.
	for _, sub := range []string{"", "tmp", "variants"} {
		left, _ := os.ReadDir(filepath.Join(dir, "scratch", sub))
		for _, e := range left {
			if sub == "" && (e.Name() == "tmp" || e.Name() == "variants") {
				continue
			}
			t.Errorf("scratch dir not cleaned: %s", filepath.Join(sub, e.Name()))
		}
	}
}
