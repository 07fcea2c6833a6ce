package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue/natstest"
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestScaleOutWorkerKilled runs Sluice as separate processes, one
// gateway and three workers, on a 3-node NATS cluster with R3 streams,
// and kills one worker (SIGKILL) in the middle of the HLS encodes: every
// asset still ends succeeded, each output stored once.
func TestScaleOutWorkerKilled(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	cluster := natstest.StartCluster(t, 3)
	dataDir := t.TempDir()
	pipelines := filepath.Join(t.TempDir(), "hls.yaml")
	if err := os.WriteFile(pipelines, []byte(`pipelines:
  - name: video
    steps:
      - uses: probe
      - uses: thumbnail
        with: {width: 160}
      - uses: hls
        with: {heights: [360, 240]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	common := []string{"--addr", "127.0.0.1:0", "--data-dir", dataDir, "--nats-url", cluster.URLs(),
		"--nats-replicas", "3", "--pipelines", pipelines, "--engine", "native", "--ack-wait", "3s"}
	gw := startProcess(t, nil, append([]string{"gateway"}, common...)...)
	var workers []*child
	for range 3 {
		workers = append(workers, startProcess(t, nil, append([]string{"worker", "--pool", "all",
			"--concurrency", "1", "--heavy-concurrency", "1"}, common...)...))
	}
	// A worker serves only operations, not the API.
	if resp, err := client.New(workers[0].url, testToken).HTTP.Get(workers[0].url + "/v1/assets"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("a worker served the API: %s", resp.Status)
		}
	}

	c := client.New(gw.url, testToken)
	media := t.TempDir()
	const n = 3
	var ids []string
	ctx := t.Context()
	for i := range n {
		clip := mediatest.Generate(t, media, fmt.Sprintf("c%d", i), mediatest.Clip{Width: 640, Height: 360, Duration: 12, Video: true, Audio: true})
		id, err := c.UploadFile(ctx, clip, client.UploadOptions{TusThreshold: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Wait until an HLS encode is running, find the worker that holds its
	// job (the job's lease owner, which each worker logs), and kill it.
	st, err := sqlite.Open(ctx, filepath.Join(dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var victim *child
	var interrupted string
	deadline := time.Now().Add(2 * time.Minute)
	for victim == nil {
		if time.Now().After(deadline) {
			t.Fatal("no HLS encode started within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
		id := hlsRunning(t, c, ids)
		if id == "" {
			continue
		}
		job, err := st.LatestJob(ctx, id)
		if err != nil || job.Owner == "" {
			continue
		}
		for _, w := range workers {
			for _, l := range w.logged() {
				if strings.Contains(l, `"owner":"`+job.Owner+`"`) {
					victim, interrupted = w, id
				}
			}
		}
	}
	_ = victim.cmd.Process.Kill()
	<-victim.done
	victim.done <- nil // for the cleanup

	bucket, err := fileblob.Open(filepath.Join(dataDir, "bucket"), "sluice")
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	for _, id := range ids {
		a, err := c.Wait(ctx, id, 100*time.Millisecond)
		if err != nil || a.Status != wire.StatusSucceeded {
			t.Fatalf("asset %s: %s %q (%v); steps %+v", id, a.Status, a.Error, err, a.Steps)
		}
		// Every stored object of the asset is one of its outputs, each
		// output once: the interrupted run left nothing beside them.
		var names, keys []string
		for _, o := range a.Outputs {
			names = append(names, o.Name)
			keys = append(keys, o.Key)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(names)))) != len(names) {
			t.Errorf("asset %s has duplicate outputs: %v", id, names)
		}
		objs, err := bucket.List(ctx, "assets/"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if !slices.Contains(keys, o.Key) {
				t.Errorf("asset %s: stored object %s is not one of its outputs", id, o.Key)
			}
		}
		if !slices.ContainsFunc(names, func(s string) bool { return strings.HasSuffix(s, "master.m3u8") }) {
			t.Errorf("asset %s has no HLS master playlist: %v", id, names)
		}
		if id == interrupted {
			for _, s := range a.Steps {
				if s.Name == "hls" && s.Attempts < 2 {
					t.Errorf("the interrupted HLS step of %s ran %d time(s); want it taken over and run again", id, s.Attempts)
				}
			}
		}
	}
}

// hlsRunning returns an asset whose HLS step has started and not
// finished, or "".
func hlsRunning(t *testing.T, c *client.Client, ids []string) string {
	for _, id := range ids {
		a, err := c.Asset(t.Context(), id)
		if err != nil {
			continue
		}
		for _, s := range a.Steps {
			if s.Name == "hls" && s.StartedAt != nil && s.FinishedAt == nil {
				return id
			}
		}
	}
	return ""
}
