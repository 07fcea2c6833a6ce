package queue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-media/sluice/internal/queue"
)

// natsServer runs a JetStream server that several queues (processes, as
// far as the locks can tell) connect to.
func natsServer(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

func openLocks(t *testing.T, url string, ttl time.Duration) (*queue.Queue, *queue.Locks) {
	t.Helper()
	q := open(t, "", func(c *queue.Config) { c.URL = url })
	l, err := q.Locks(ctx(t), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return q, l
}

// TestLocks: a lock is held by one process at a time; a process that
// wants it asks the holder, which lets go; locks of different names do
// not meet; a waiter gives up when its context ends; the lock of a
// process that died frees itself after the TTL.
func TestLocks(t *testing.T) {
	url := natsServer(t)
	qa, a := openLocks(t, url, 2*time.Second)
	qb, b := openLocks(t, url, 2*time.Second)
	defer qb.Close()

	// A holds "up1" and lets go when asked.
	var asked atomic.Int32
	var releaseA func() error
	releaseA, err := a.Acquire(ctx(t), "up1", func() {
		if asked.Add(1) == 1 {
			go func() { _ = releaseA() }()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Another name is free at once, even with odd characters.
	other, err := b.Acquire(ctx(t), "../../weird name*>", func() {})
	if err != nil {
		t.Fatalf("a second name: %v", err)
	}
	if err := other(); err != nil {
		t.Fatal(err)
	}
	releaseB, err := b.Acquire(ctx(t), "up1", func() {})
	if err != nil {
		t.Fatalf("B waiting for A's lock: %v", err)
	}
	if asked.Load() == 0 {
		t.Error("B got the lock without A being asked for it")
	}

	// Held by B, which does not let go: a waiter gives up with its context.
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := a.Acquire(short, "up1", func() {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("A waiting on a lock B keeps: %v, want the deadline", err)
	}
	// B keeps it past its TTL by refreshing it.
	time.Sleep(3 * time.Second)
	short2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if _, err := a.Acquire(short2, "up1", func() {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("after B's TTL, B refreshing: %v, want the lock still held", err)
	}
	if err := releaseB(); err != nil {
		t.Fatal(err)
	}
	if err := releaseB(); err != nil {
		t.Errorf("second release: %v", err)
	}

	// A takes it, and A's process dies holding it: after the TTL, B gets it.
	if _, err := a.Acquire(ctx(t), "up1", func() {}); err != nil {
		t.Fatal(err)
	}
	qa.Close()
	start := time.Now()
	releaseB, err = b.Acquire(ctx(t), "up1", func() {})
	if err != nil {
		t.Fatalf("B after A died: %v", err)
	}
	t.Logf("a dead holder's lock was free after %s (TTL 2s)", time.Since(start).Round(100*time.Millisecond))
	_ = releaseB()
}

// TestConsumeRaw: plain NATS messages on a subject reach one of the
// consumers sharing a name, at least once: a message whose handler fails
// comes again, and one published while nobody consumes waits.
func TestConsumeRaw(t *testing.T) {
	url := natsServer(t)
	q := open(t, "", func(c *queue.Config) { c.URL = url })
	defer q.Close()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if _, err := q.ConsumeRaw(ctx(t), "sluice.events.x", "c", func(context.Context, []byte) error { return nil }); err == nil {
		t.Error("consuming one of Sluice's own subjects was allowed")
	}

	got := make(chan string, 10)
	var failed atomic.Bool
	handler := func(_ context.Context, data []byte) error {
		if string(data) == "flaky" && !failed.Swap(true) {
			return errors.New("not now")
		}
		got <- string(data)
		return nil
	}
	stop, err := q.ConsumeRaw(ctx(t), "bucket.events", "c", handler)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"one", "flaky"} {
		if err := nc.Publish("bucket.events", []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{"one": true, "flaky": true}
	for range 2 {
		select {
		case m := <-got:
			delete(want, m)
		case <-time.After(20 * time.Second):
			t.Fatalf("messages not delivered: %v", want)
		}
	}
	if len(want) != 0 || !failed.Load() {
		t.Errorf("undelivered %v, flaky failed once: %v", want, failed.Load())
	}

	// Published while no process consumes: delivered when one starts.
	stop()
	if err := nc.Publish("bucket.events", []byte("later")); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()
	stop2, err := q.ConsumeRaw(ctx(t), "bucket.events", "c", handler)
	if err != nil {
		t.Fatal(err)
	}
	defer stop2()
	select {
	case m := <-got:
		if m != "later" {
			t.Errorf("got %q, want the message published while no one consumed", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a message published while no one consumed was lost")
	}
}
