package queue

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Locks are named exclusive locks shared by every process connected to
// the same NATS server or cluster, so that requests about one thing (a
// resumable upload) can reach any gateway. A JetStream key-value bucket
// holds each lock that is held, by key; its entries age out after the
// lock's TTL, which frees the locks of a process that died, and a holder
// refreshes its entry while it holds the lock. A process that wants a
// held lock asks the holder to let go on a core NATS subject and waits
// for the entry to go.
//
// They are built on the KV bucket rather than on a lock service of their
// own because the queue's NATS is already there, replicated like the
// streams, in every deployment.
type Locks struct {
	nc    *nats.Conn
	kv    jetstream.KeyValue
	ttl   time.Duration
	owner []byte
}

// LocksBucket is the KV bucket that holds the locks.
const LocksBucket = "sluice_locks"

// lockReleaseSubject is where holders of a lock hear requests to let go.
const lockReleaseSubject = "sluice.locks.release."

// Locks opens the shared locks; an entry not refreshed for ttl is freed.
func (q *Queue) Locks(ctx context.Context, ttl time.Duration) (*Locks, error) {
	if ttl < time.Second {
		return nil, errors.New("queue: lock TTL under a second")
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LocksBucket,
		Description: "Sluice's shared locks (resumable uploads in progress)",
		TTL:         ttl,
		Replicas:    q.cfg.Replicas,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: locks bucket: %w", err)
	}
	host, _ := os.Hostname()
	var id [6]byte
	_, _ = rand.Read(id[:])
	return &Locks{nc: q.nc, kv: kv, ttl: ttl, owner: fmt.Appendf(nil, "%s/%d/%x", host, os.Getpid(), id)}, nil
}

// lockKey is the KV key and subject token of a lock name: names come from
// clients (upload ids in URLs), keys and tokens allow few characters.
func lockKey(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:16])
}

// Acquire takes the lock called name, waiting for it until ctx ends (then
// it returns ctx's error). While the lock is held, onRequest is called,
// from another goroutine, each time another process asks for it, and
// when the lock was lost (its entry aged out because it could not be
// refreshed): the holder should finish up and release it. release lets
// the lock go; it is safe to call more than once.
func (l *Locks) Acquire(ctx context.Context, name string, onRequest func()) (release func() error, err error) {
	key := lockKey(name)
	for {
		rev, err := l.kv.Create(ctx, key, l.owner)
		if err == nil {
			return l.hold(key, rev, onRequest)
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("queue: lock %s: %w", name, err)
		}
		// Held: ask the holder to let go, then wait for the entry to go.
		_ = l.nc.Publish(lockReleaseSubject+key, nil)
		if err := l.waitFree(ctx, key); err != nil {
			return nil, err
		}
	}
}

// waitFree returns when the lock's entry is deleted, or after a while in
// any case (an entry that ages out is removed without a notice), or with
// ctx's error.
func (l *Locks) waitFree(ctx context.Context, key string) error {
	wctx, cancel := context.WithTimeout(ctx, l.ttl/2)
	defer cancel()
	w, err := l.kv.Watch(wctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil // try again
	}
	defer w.Stop()
	held := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				return nil
			case e == nil: // the end of the current value
				if !held {
					return nil // gone already
				}
			case e.Operation() != jetstream.KeyValuePut:
				return nil // released
			default:
				held = true
			}
		}
	}
}

// hold keeps a lock taken at revision rev: it refreshes the entry and
// passes requests to let go to onRequest until released.
func (l *Locks) hold(key string, rev uint64, onRequest func()) (func() error, error) {
	sub, err := l.nc.Subscribe(lockReleaseSubject+key, func(*nats.Msg) { onRequest() })
	if err != nil {
		_ = l.kv.Delete(context.Background(), key, jetstream.LastRevision(rev))
		return nil, fmt.Errorf("queue: lock: %w", err)
	}
	var (
		mu   sync.Mutex // guards rev against the refresher
		done = make(chan struct{})
		once sync.Once
	)
	go func() {
		t := time.NewTicker(l.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
				mu.Lock()
				next, err := l.kv.Update(ctx, key, l.owner, rev)
				if err == nil {
					rev = next
				}
				mu.Unlock()
				cancel()
				if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
					// The entry aged out (and may be someone else's now):
					// this holder must stop.
					onRequest()
					return
				}
			}
		}
	}()
	release := func() error {
		var err error
		once.Do(func() {
			close(done)
			_ = sub.Unsubscribe()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			mu.Lock()
			defer mu.Unlock()
			err = l.kv.Delete(ctx, key, jetstream.LastRevision(rev))
			if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
				err = nil // aged out, maybe taken since: not ours to delete
			}
		})
		return err
	}
	return release, nil
}
