package queue

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/propagation"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// Delivery is one delivery of an event to a worker. The handler must end
// it with exactly one of Ack, Retry, DeadLetter or Release.
type Delivery struct {
	Event event.ObjectCreated
	// Attempt counts deliveries of this event, from 1.
	Attempt int
	// Last is true on the final attempt: a Retry now dead-letters.
	Last bool
	// Seq is the event's sequence in the stream.
	Seq uint64
	// Trace carries the trace context the event was published with (none
	// when it was published untraced): handlers start their spans in it.
	Trace context.Context

	msg jetstream.Msg
	q   *Queue
}

// InProgress tells the server the event is still being worked on,
// resetting its ack timer. Long steps call it periodically (KeepAlive does).
func (d *Delivery) InProgress() error { return d.msg.InProgress() }

// KeepAlive sends in-progress signals at a third of the ack wait until
// the returned stop function is called.
func (d *Delivery) KeepAlive() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.q.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = d.msg.InProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// Ack confirms the event is done, waiting for the server to record it.
func (d *Delivery) Ack(ctx context.Context) error { return d.msg.DoubleAck(ctx) }

// Retry schedules another delivery after a backoff that grows with the
// attempt, or dead-letters the event when this was the last attempt.
// It reports whether the event was dead-lettered.
func (d *Delivery) Retry(ctx context.Context, cause error) (bool, error) {
	if d.Last {
		return true, d.DeadLetter(ctx, cause.Error())
	}
	return false, d.msg.NakWithDelay(d.q.backoff(d.Attempt))
}

// DeadLetter moves the event to the dead-letter stream with a reason.
func (d *Delivery) DeadLetter(ctx context.Context, reason string) error {
	if err := d.q.deadLetter(ctx, d.msg.Data(), d.Seq, d.Attempt, reason); err != nil {
		return err
	}
	return d.msg.Term()
}

// Release hands the event back for immediate redelivery, for a worker
// that is shutting down before it could finish.
func (d *Delivery) Release() error { return d.msg.Nak() }

// Handler processes one delivery.
type Handler func(ctx context.Context, d *Delivery)

// Consumer is a running set of fetch loops.
type Consumer struct {
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// Stop stops fetching new events; handlers already running go on.
func (c *Consumer) Stop() { c.once.Do(func() { close(c.stop) }) }

// Wait blocks until every handler has returned after Stop.
func (c *Consumer) Wait() { c.wg.Wait() }

// Consume starts workers fetch loops on a pool's events, each running h
// on one event at a time, so that an event is only taken from the stream
// when a worker is free to start it. Handlers run with ctx: cancel it to
// abort them.
func (q *Queue) Consume(ctx context.Context, pool string, workers int, h Handler) *Consumer {
	c := &Consumer{stop: make(chan struct{})}
	cons, ok := q.cons[pool]
	if !ok {
		q.log.Error("queue: unknown pool", "pool", pool)
		return c
	}
	for range max(workers, 1) {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			q.fetchLoop(ctx, cons, c.stop, h)
		}()
	}
	return c
}

func (q *Queue) fetchLoop(ctx context.Context, cons jetstream.Consumer, stop <-chan struct{}, h Handler) {
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		// A short wait keeps shutdown prompt; a pull request that is
		// waiting is served as soon as an event arrives.
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
				q.log.Warn("queue: fetch", "err", err)
				select {
				case <-time.After(time.Second):
				case <-stop:
				}
			}
			continue
		}
		q.handle(ctx, msg, h)
	}
}

func (q *Queue) handle(ctx context.Context, msg jetstream.Msg, h Handler) {
	meta, err := msg.Metadata()
	if err != nil {
		q.log.Error("queue: message without metadata", "err", err)
		_ = msg.Term()
		return
	}
	d := &Delivery{
		Trace:   telemetry.Propagator.Extract(context.Background(), propagation.HeaderCarrier(msg.Headers())),
		Attempt: int(meta.NumDelivered),
		Last:    int(meta.NumDelivered) >= q.cfg.MaxDeliver,
		Seq:     meta.Sequence.Stream,
		msg:     msg,
		q:       q,
	}
	d.Event, err = event.Unmarshal(msg.Data())
	if err != nil {
		// A message no worker can read would fail every time: set it
		// aside at once instead of blocking the stream with retries.
		if dlErr := d.DeadLetter(ctx, fmt.Sprintf("malformed event: %v", err)); dlErr != nil {
			q.log.Error("queue: dead-letter malformed event", "err", dlErr)
		}
		return
	}
	h(ctx, d)
}

// Defer hands the event back to be delivered again after delay, for a
// worker that cannot start it yet. It counts as a delivery.
func (d *Delivery) Defer(delay time.Duration) error {
	return d.msg.NakWithDelay(max(delay, time.Second))
}
