package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/blob/s3blob/s3test"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue/natstest"
	"github.com/sluice-media/sluice/internal/store/postgres"
	"github.com/sluice-media/sluice/internal/store/postgres/pgtest"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestScaleOut runs Sluice as separate processes, one gateway and three
// workers, on the engines it scales out on: PostgreSQL, an S3 server
// (versitygw) and a 3-node NATS cluster with R3 streams. Clips go
// straight into the bucket with curl, through presigned URLs the gateway
// made; the S3 server's notifications (on a NATS subject) start their
// pipelines. One worker is killed (SIGKILL) in the middle of an HLS
// encode: every asset still ends succeeded, each output stored once.
func TestScaleOut(t *testing.T) {
	mediatest.RequireFFmpeg(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed (a plain S3 client): bash scripts/deps.sh installs it")
	}
	cluster := natstest.StartCluster(t, 3)
	dsn := pgtest.Start(t)
	s3 := s3test.StartServer(t, "--event-nats-url", cluster.Nodes[0].URL, "--event-nats-topic", "bucket.events")
	ctx := t.Context()
	mustBucket(t, s3, "media")

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
	env := []string{"SLUICE_METRICS_HISTORY_INTERVAL=1s", "SLUICE_DATABASE_URL=" + dsn, "SLUICE_S3_ACCESS_KEY_ID=" + s3.AccessKey, "SLUICE_S3_SECRET_ACCESS_KEY=" + s3.SecretKey}
	common := func() []string {
		return []string{"--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-url", cluster.URLs(),
			"--nats-replicas", "3", "--pipelines", pipelines, "--engine", "native", "--ack-wait", "3s",
			"--s3-endpoint", s3.Endpoint, "--s3-bucket", "media", "--s3-path-style"}
	}
	gw := startProcess(t, env, append([]string{"gateway", "--bucket-events-subject", "bucket.events", "--s3-events-raw-keys"}, common()...)...)
	var workers []*child
	for range 3 {
		workers = append(workers, startProcess(t, env, append([]string{"worker", "--pool", "all",
			"--concurrency", "1", "--heavy-concurrency", "1"}, common()...)...))
	}
	// A worker serves only operations, not the API.
	if resp, err := client.New(workers[0].url, testToken).HTTP.Get(workers[0].url + "/v1/assets"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("a worker served the API: %s", resp.Status)
		}
	}

	// Upload with curl straight into the bucket.
	c := client.New(gw.url, testToken)
	media := t.TempDir()
	const n = 3
	var ids []string
	for i := range n {
		clip := mediatest.Generate(t, media, fmt.Sprintf("c%d", i), mediatest.Clip{Width: 640, Height: 360, Duration: 12, Video: true, Audio: true})
		fi, err := os.Stat(clip)
		if err != nil {
			t.Fatal(err)
		}
		up, err := c.CreateUpload(ctx, wire.UploadRequest{Name: filepath.Base(clip), Size: fi.Size(), ContentType: "video/mp4"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(up.URL, s3.Endpoint+"/media/") {
			t.Fatalf("upload URL %s does not point at the bucket", up.URL)
		}
		args := []string{"-sS", "-f", "-X", up.Method, "--data-binary", "@" + clip}
		for k, v := range up.Headers {
			args = append(args, "-H", k+": "+v)
		}
		if out, err := exec.CommandContext(ctx, "curl", append(args, up.URL)...).CombinedOutput(); err != nil {
			t.Fatalf("curl PUT to the presigned URL: %v\n%s", err, out)
		}
		ids = append(ids, up.AssetID)
	}

	// Wait until an HLS encode is running, find the worker that holds its
	// job (the job's lease owner, which each worker logs), and kill it.
	st, err := postgres.Open(ctx, dsn)
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

	bucket, err := s3blob.Open(ctx, s3blob.Config{Endpoint: s3.Endpoint, Bucket: "media", AccessKeyID: s3.AccessKey,
		SecretAccessKey: s3.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for _, id := range ids {
		a, err := c.Wait(wctx, id, 100*time.Millisecond)
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

	// The gateway's metric charts cover the cluster: the steps ran on the
	// workers, whose samples reach the gateway over NATS.
	var history wire.MetricsHistory
	deadline = time.Now().Add(30 * time.Second)
	for {
		if history, err = c.MetricsHistory(ctx); err != nil {
			t.Fatal(err)
		}
		if history.Processes == 3 && hasPoint(history, "step_p95") && hasPoint(history, "throughput") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway's history covers %d processes, want 3 (itself and the 2 live workers); step latency: %v, throughput: %v",
				history.Processes, hasPoint(history, "step_p95"), hasPoint(history, "throughput"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hasPoint reports whether the named series has a positive value.
func hasPoint(h wire.MetricsHistory, name string) bool {
	for _, s := range h.Series {
		if s.Name == name {
			for _, p := range s.Points {
				if p.Value != nil && *p.Value > 0 {
					return true
				}
			}
		}
	}
	return false
}

// mustBucket creates a bucket on an S3 test server with a signed request.
func mustBucket(t *testing.T, s3 s3test.Server, name string) {
	t.Helper()
	if err := s3test.CreateBucket(t.Context(), s3, name); err != nil {
		t.Fatal(err)
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
