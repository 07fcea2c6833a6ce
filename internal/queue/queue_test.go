package queue_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/queue"
)

func open(t *testing.T, dir string, mod func(*queue.Config)) *queue.Queue {
	t.Helper()
	cfg := queue.Config{StoreDir: dir, AckWait: time.Second, MaxDeliver: 3,
		Backoff: []time.Duration{50 * time.Millisecond}}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q, err := queue.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func ev(i int) event.ObjectCreated {
	return event.ObjectCreated{Action: event.ActionPutObject, Bucket: "b", Key: fmt.Sprintf("uploads/%d", i),
		Size: 10, ETag: "e", EventTime: time.Now(), AssetID: fmt.Sprintf("a%d", i)}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPublishConsumeDedup(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close()
	c := ctx(t)
	for i := range 10 {
		for range 3 { // duplicates are stored once
			if err := q.Publish(c, ev(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	var mu sync.Mutex
	seen := map[string]int{}
	cons := q.Consume(c, queue.PoolFast, 4, func(ctx context.Context, d *queue.Delivery) {
		mu.Lock()
		seen[d.Event.AssetID]++
		mu.Unlock()
		if err := d.Ack(ctx); err != nil {
			t.Error(err)
		}
	})
	waitFor(t, "10 events", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 10 })
	cons.Stop()
	cons.Wait()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times, want 1", id, n)
		}
	}
	d, err := q.Depth(c, queue.PoolFast)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pending != 0 || d.AckPending != 0 {
		t.Errorf("depth = %+v, want empty", d)
	}
}

// TestRetryThenDeadLetter: an event that always fails is retried with
// backoff, then dead-lettered, while a good event behind it is processed.
func TestRetryThenDeadLetter(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close()
	c := ctx(t)
	var attempts atomic.Int32
	var good atomic.Bool
	cons := q.Consume(c, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) {
		if d.Event.AssetID == "a1" {
			attempts.Add(1)
			if _, err := d.Retry(ctx, errors.New("boom")); err != nil {
				t.Error(err)
			}
			return
		}
		good.Store(true)
		_ = d.Ack(ctx)
	})
	defer func() { cons.Stop(); cons.Wait() }()
	_ = q.Publish(c, ev(1))
	_ = q.Publish(c, ev(2))
	waitFor(t, "dead letter", func() bool {
		dls, err := q.DeadLetters(c, 0, 10)
		return err == nil && len(dls) == 1
	})
	if !good.Load() {
		t.Error("good event behind the bad one was not processed")
	}
	if got := attempts.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3 (MaxDeliver)", got)
	}
	dls, _ := q.DeadLetters(c, 0, 10)
	dl := dls[0]
	if dl.AssetID != "a1" || dl.Reason != "boom" || dl.Deliveries != 3 || dl.FailedAt.IsZero() {
		t.Errorf("dead letter = %+v, want a1/boom/3 deliveries", dl)
	}

	// Replay puts it back with fresh deliveries.
	if err := q.Replay(c, dl.Seq); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replayed attempts", func() bool { return attempts.Load() >= 4 })
	if _, err := q.GetDeadLetter(c, dl.Seq); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("replayed letter still there: %v", err)
	}
	if err := q.Replay(c, dl.Seq); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("replay of missing letter: got %v, want ErrNotFound", err)
	}
}

// TestCrashedDeliveriesDeadLettered: a worker that never acks (it died)
// exhausts the deliveries; the advisory moves the event to the DLQ.
func TestCrashedDeliveriesDeadLettered(t *testing.T) {
	q := open(t, t.TempDir(), func(c *queue.Config) { c.MaxDeliver = 2; c.AckWait = 300 * time.Millisecond })
	defer q.Close()
	c := ctx(t)
	var n atomic.Int32
	abandoned := make(chan string, 1)
	q.OnAbandoned(func(ctx context.Context, e event.ObjectCreated, reason string) {
		abandoned <- e.AssetID + ": " + reason
	})
	cons := q.Consume(c, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) { n.Add(1) })
	defer func() { cons.Stop(); cons.Wait() }()
	_ = q.Publish(c, ev(7))
	waitFor(t, "dead letter from advisory", func() bool {
		dls, err := q.DeadLetters(c, 0, 10)
		return err == nil && len(dls) == 1
	})
	dls, _ := q.DeadLetters(c, 0, 10)
	if dls[0].AssetID != "a7" || dls[0].Deliveries != 2 {
		t.Errorf("dead letter = %+v", dls[0])
	}
	select {
	case got := <-abandoned:
		if want := "a7: no delivery completed after 2 attempts (worker stopped or timed out)"; got != want {
			t.Errorf("abandoned hook got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("abandoned hook not called")
	}
	waitFor(t, "stream emptied", func() bool {
		d, err := q.Depth(c, queue.PoolFast)
		return err == nil && d.Pending == 0 && d.AckPending == 0
	})
}

func TestMalformedEventDeadLetteredAtOnce(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close()
	c := ctx(t)
	if err := q.PublishRaw(c, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	var called atomic.Bool
	cons := q.Consume(c, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) { called.Store(true) })
	defer func() { cons.Stop(); cons.Wait() }()
	waitFor(t, "dead letter", func() bool {
		dls, err := q.DeadLetters(c, 0, 10)
		return err == nil && len(dls) == 1 && dls[0].Deliveries == 1
	})
	if called.Load() {
		t.Error("handler saw a malformed event")
	}
}

func TestQueued(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close()
	c := ctx(t)
	e := ev(1)
	e.AssetID = "odd.id *>"
	if err := q.Publish(c, e); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		id   string
		want bool
	}{{"odd.id *>", true}, {"a2", false}} {
		got, err := q.Queued(c, tt.id)
		if err != nil || got != tt.want {
			t.Errorf("Queued(%q) = %v, %v; want %v", tt.id, got, err, tt.want)
		}
	}
	acked := make(chan struct{})
	cons := q.Consume(c, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) {
		if got, _ := q.Queued(ctx, d.Event.AssetID); !got {
			t.Error("an event being worked on does not count as queued")
		}
		_ = d.Ack(ctx)
		close(acked)
	})
	<-acked
	cons.Stop()
	cons.Wait()
	if got, err := q.Queued(c, e.AssetID); got || err != nil {
		t.Errorf("Queued after ack = %v, %v; want false", got, err)
	}
}

func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, nil)
	c := ctx(t)
	for i := range 5 {
		_ = q.Publish(c, ev(i))
	}
	q.Close()

	q = open(t, dir, nil)
	defer q.Close()
	d, err := q.Depth(c, queue.PoolFast)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pending != 5 {
		t.Errorf("pending after restart = %d, want 5", d.Pending)
	}
}

// TestPools: heavy-stage events go to the heavy pool's consumer only, and
// a backlog there does not hold up the fast pool.
func TestPools(t *testing.T) {
	q := open(t, t.TempDir(), nil)
	defer q.Close()
	c := ctx(t)
	for i := range 5 {
		h := ev(i)
		h.Stage = event.StageHeavy
		if err := q.Publish(c, h); err != nil {
			t.Fatal(err)
		}
	}
	if ok, err := q.Queued(c, "a0"); !ok || err != nil {
		t.Errorf("Queued(a0) with a heavy event waiting = %v, %v", ok, err)
	}
	if err := q.Publish(c, ev(100)); err != nil {
		t.Fatal(err)
	}
	// Heavy workers block until released: the heavy backlog stays.
	release := make(chan struct{})
	var heavySeen, fastSeen sync.Map
	heavy := q.Consume(c, queue.PoolHeavy, 1, func(ctx context.Context, d *queue.Delivery) {
		heavySeen.Store(d.Event.AssetID, d.Event.Stage)
		<-release
		_ = d.Ack(ctx)
	})
	fast := q.Consume(c, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) {
		fastSeen.Store(d.Event.AssetID, d.Event.Stage)
		_ = d.Ack(ctx)
	})
	waitFor(t, "the fast event", func() bool { _, ok := fastSeen.Load("a100"); return ok })
	fastSeen.Range(func(k, v any) bool {
		if k != "a100" {
			t.Errorf("fast pool got %v (stage %v)", k, v)
		}
		return true
	})
	close(release)
	waitFor(t, "5 heavy events", func() bool {
		n := 0
		heavySeen.Range(func(k, v any) bool {
			if v != event.StageHeavy {
				t.Errorf("heavy pool got %v with stage %q", k, v)
			}
			n++
			return true
		})
		return n == 5
	})
	heavy.Stop()
	fast.Stop()
	heavy.Wait()
	fast.Wait()
	for _, pool := range []string{queue.PoolFast, queue.PoolHeavy} {
		if d, err := q.Depth(c, pool); err != nil || d.Pending != 0 || d.AckPending != 0 {
			t.Errorf("%s depth = %+v, %v; want empty", pool, d, err)
		}
	}
	if _, err := q.Depth(c, "medium"); err == nil {
		t.Error("Depth of an unknown pool: no error")
	}
}
