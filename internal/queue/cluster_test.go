package queue_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/queue/natstest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

// TestClusterNodeLoss runs 200 jobs through R3 streams on a 3-node
// cluster of real nats-server processes, kills one node (SIGKILL) while
// they run, and checks that every job completes exactly once in the
// state store.
func TestClusterNodeLoss(t *testing.T) {
	cluster := natstest.StartCluster(t, 3)
	cfg := queue.Config{URL: cluster.URLs(), Replicas: 3, AckWait: 2 * time.Second, MaxDeliver: 20,
		Backoff: []time.Duration{100 * time.Millisecond}}
	// Open straight away: the cluster may still be electing its JetStream
	// leader, which Open waits for.
	open, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	q, err := queue.Open(open, cfg, nil)
	cancel()
	if err != nil {
		t.Fatalf("open the queue on the cluster: %v", err)
	}
	defer q.Close()

	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const jobs = 200
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range jobs {
		e := ev(i)
		if err := st.CreateAsset(c, store.Asset{ID: e.AssetID, Key: e.Key, Bucket: e.Bucket}); err != nil {
			t.Fatal(err)
		}
		if err := q.Publish(c, e); err != nil {
			t.Fatal(err)
		}
	}

	var finished, duplicates atomic.Int64
	handler := func(ctx context.Context, d *queue.Delivery) {
		key := d.Event.IdempotencyKey()
		job, err := st.ClaimJob(ctx, store.Claim{Key: key, AssetID: d.Event.AssetID, Owner: "w", Now: time.Now(), Lease: 5 * time.Second})
		if err != nil {
			_, _ = d.Retry(ctx, err)
			return
		}
		if job.Status.Terminal() {
			duplicates.Add(1)
			_ = d.Ack(ctx)
			return
		}
		time.Sleep(10 * time.Millisecond) // the work
		if err := st.FinishJob(ctx, key, "w", store.StatusSucceeded, ""); err != nil {
			_, _ = d.Retry(ctx, err)
			return
		}
		finished.Add(1)
		// Acks may fail while the cluster fails over; the redelivery
		// then finds the job finished.
		_ = d.Ack(ctx)
	}
	consumer := q.Consume(c, queue.PoolFast, 4, handler)
	defer func() { consumer.Stop(); consumer.Wait() }()

	waitFor := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		end := time.Now().Add(limit)
		for !cond() {
			if time.Now().After(end) {
				t.Fatalf("timed out waiting for %s (finished %d, duplicates %d)", what, finished.Load(), duplicates.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("a quarter of the jobs", time.Minute, func() bool { return finished.Load() >= jobs/4 })
	// Kill the node that leads the events stream: the hardest loss.
	killed := cluster.Nodes[1]
	if nc, err := nats.Connect(cluster.URLs()); err == nil {
		if js, err := jetstream.New(nc); err == nil {
			if s, err := js.Stream(c, "SLUICE_EVENTS"); err == nil && s.CachedInfo().Cluster != nil {
				for _, n := range cluster.Nodes {
					if n.Name == s.CachedInfo().Cluster.Leader {
						killed = n
					}
				}
			}
		}
		nc.Close()
	}
	killed.Kill()
	t.Logf("killed %s (the events stream leader when found) after %d jobs", killed.Name, finished.Load())
	succeeded := func() int {
		page, err := st.ListAssets(c, store.ListOptions{Status: store.StatusSucceeded, Limit: 1000})
		if err != nil {
			return -1
		}
		return len(page.Assets)
	}
	waitFor("every job", 90*time.Second, func() bool { return succeeded() == jobs })
	if f := finished.Load(); f != jobs {
		t.Errorf("%d jobs finished, want each of %d exactly once", f, jobs)
	}
	for i := range jobs {
		j, err := st.GetJob(c, ev(i).IdempotencyKey())
		if err != nil || j.Status != store.StatusSucceeded {
			t.Fatalf("job %d: %+v %v", i, j, err)
		}
	}
	t.Logf("%d jobs finished once each; %d redelivered duplicates acknowledged", jobs, duplicates.Load())
}

// TestOpenWaitsForJetStream starts the processes in the wrong order: the
// queue is opened before its NATS cluster runs. Open waits for the nodes
// and their leader election; with nothing to wait for, it gives up after
// StartupWait with an error that says so.
func TestOpenWaitsForJetStream(t *testing.T) {
	cluster := natstest.NewCluster(t, 3)
	go func() {
		time.Sleep(time.Second)
		cluster.Start(t)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, queue.Config{URL: cluster.URLs(), Replicas: 3, StartupWait: time.Minute}, nil)
	if err != nil {
		t.Fatalf("open before the cluster started: %v", err)
	}
	defer q.Close()
	if err := q.Publish(ctx, ev(0)); err != nil {
		t.Fatal(err)
	}

	none := natstest.NewCluster(t, 1) // never started
	start := time.Now()
	_, err = queue.Open(ctx, queue.Config{URL: none.URLs(), StartupWait: 2 * time.Second}, nil)
	if err == nil || !strings.Contains(err.Error(), "not ready after 2s") {
		t.Fatalf("open with no server: %v, want an error saying JetStream was not ready", err)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("gave up after %s, want about StartupWait", took)
	}
}
