// Package queue carries object-created events from ingest to workers on
// NATS JetStream: an embedded server, file-backed inside the data dir, or
// an external cluster. It owns the delivery policy: deduplicated publishes,
// one durable pull consumer per worker pool (fast and heavy) shared by all
// workers of that pool, in-progress acks for long jobs, retries with
// backoff, and a dead-letter stream for events that keep failing, which
// can be listed and replayed.
package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// Config configures the queue. The zero value plus StoreDir runs an
// embedded server.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated). Empty:
	// run an embedded server storing its data in StoreDir.
	URL      string
	StoreDir string
	// Listen, for the embedded server, is a host:port on which it also
	// accepts network clients (empty: in-process only).
	Listen string

	Stream    string // default "SLUICE_EVENTS"
	DLQStream string // default "SLUICE_DLQ"
	// Consumer names the fast pool's consumer; the heavy pool's is
	// Consumer + "-heavy". Default "workers".
	Consumer string
	Replicas int // default 1

	// MaxDeliver is how many times an event is tried before it is
	// dead-lettered. Default 5.
	MaxDeliver int
	// AckWait is how long a delivery may go without an ack or an
	// in-progress signal before it is redelivered. Default 30s.
	AckWait time.Duration
	// Backoff is the delay before each retry (the last entry repeats).
	// Default 2s, 10s, 30s, 2m.
	Backoff []time.Duration
	// DuplicateWindow is how long publish ids are remembered. Default 2m.
	DuplicateWindow time.Duration
	// DLQMaxAge is how long dead letters are kept. Default 30 days.
	DLQMaxAge time.Duration
	// StartupWait is how long Open waits for an external JetStream that is
	// not ready yet (servers still starting, a cluster electing its
	// leader) before it gives up. Default 1 minute.
	StartupWait time.Duration
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "SLUICE_EVENTS"
	}
	if c.DLQStream == "" {
		c.DLQStream = "SLUICE_DLQ"
	}
	if c.Consumer == "" {
		c.Consumer = "workers"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 5
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{2 * time.Second, 10 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.DLQMaxAge == 0 {
		c.DLQMaxAge = 30 * 24 * time.Hour
	}
	if c.StartupWait == 0 {
		c.StartupWait = time.Minute
	}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if c.URL == "" && c.StoreDir == "" {
		return errors.New("queue: need a NATS URL or a store dir for the embedded server")
	}
	if c.MaxDeliver < 0 || c.AckWait < 0 || c.Replicas < 0 || c.StartupWait < 0 {
		return errors.New("queue: negative setting")
	}
	return nil
}

// Subjects. A new object's event is published on
// sluice.events.object-created.<asset>, for the fast pool, and the heavy
// stage of its job on sluice.events.heavy.<asset>, so that whether an
// asset has an event waiting can be looked up directly.
const (
	subjectPrefix = "sluice.events."
	dlqSubject    = "sluice.dlq"
)

// Worker pools. Each consumes its own subjects with its own concurrency.
const (
	PoolFast  = "fast"
	PoolHeavy = "heavy"
)

// poolToken is the subject token of a pool's events.
var poolToken = map[string]string{PoolFast: "object-created", PoolHeavy: "heavy"}

// Queue is a connection to JetStream with Sluice's streams in place.
type Queue struct {
	cfg    Config
	srv    *server.Server // nil when external
	nc     *nats.Conn
	js     jetstream.JetStream
	events jetstream.Stream
	dlq    jetstream.Stream
	cons   map[string]jetstream.Consumer // by pool
	advSub []*nats.Subscription
	log    *slog.Logger

	onDead func(ctx context.Context, ev event.ObjectCreated, reason string)
}

// OnAbandoned sets a function called when an event is dead-lettered
// because no delivery of it ever ended (its workers kept dying), so that
// its asset can be marked failed. Dead letters that a worker sends itself
// do not call it: that worker records the failure. Set it before Consume.
func (q *Queue) OnAbandoned(fn func(ctx context.Context, ev event.ObjectCreated, reason string)) {
	q.onDead = fn
}

// Open connects (starting the embedded server if no URL is set) and
// creates or updates the streams and the workers' consumer. An external
// NATS that is not reachable or whose JetStream is not ready yet is waited
// for, up to cfg.StartupWait, so that processes may start in any order.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (*Queue, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	q := &Queue{cfg: cfg, log: log}
	var err error
	if cfg.URL == "" {
		q.srv, q.nc, err = startEmbedded(cfg)
	} else {
		q.nc, err = nats.Connect(cfg.URL, nats.Name("sluice"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	}
	if err != nil {
		return nil, err
	}
	if err := q.setupWhenReady(ctx); err != nil {
		q.Close()
		return nil, err
	}
	return q, nil
}

func startEmbedded(cfg Config) (*server.Server, *nats.Conn, error) {
	opts := &server.Options{
		ServerName: "sluice",
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, nil, err
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, nil, fmt.Errorf("queue: embedded nats: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, nil, errors.New("queue: embedded nats did not become ready in 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv), nats.Name("sluice"))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("queue: connect to embedded nats: %w", err)
	}
	return srv, nc, nil
}

// setupWhenReady runs setup, again while JetStream answers that it is
// not ready, until cfg.StartupWait has passed.
func (q *Queue) setupWhenReady(ctx context.Context) error {
	js, err := jetstream.New(q.nc)
	if err != nil {
		return err
	}
	q.js = js
	deadline := time.Now().Add(q.cfg.StartupWait)
	pause := 100 * time.Millisecond
	var logged time.Time
	for {
		// Each attempt gets its own time: a cluster without a leader may
		// leave requests unanswered.
		attempt, cancel := context.WithTimeout(ctx, max(min(10*time.Second, time.Until(deadline)), time.Second))
		err := q.setup(attempt)
		cancel()
		if err == nil {
			return q.watchAbandoned()
		}
		if !notReady(ctx, err) || time.Now().Add(pause).After(deadline) {
			if notReady(ctx, err) {
				return fmt.Errorf("%w (JetStream at %s not ready after %s)", err, q.cfg.URL, q.cfg.StartupWait)
			}
			return err
		}
		if time.Since(logged) > 5*time.Second {
			q.log.Info("waiting for JetStream", "servers", q.cfg.URL, "status", q.nc.Status().String(), "err", err)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (waiting for JetStream: %v)", ctx.Err(), err)
		case <-time.After(pause):
		}
		pause = min(2*pause, 2*time.Second)
	}
}

// notReady reports whether err says JetStream cannot answer yet rather
// than that the request is wrong: no connection, no responder, a timeout
// of the request itself (ctx still live), or a cluster without a leader
// or peers.
func notReady(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode {
		case 10005, // no suitable peers for placement (peers not met yet)
			10008, // JetStream system temporarily unavailable
			10009: // JetStream cluster can not handle request
			return true
		}
		return api.Code == 503
	}
	return false
}

// setup creates or updates the streams and consumers. It may run again
// after a failure: every step is idempotent.
func (q *Queue) setup(ctx context.Context) error {
	js := q.js
	var err error
	q.events, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.cfg.Stream,
		Description: "object-created events awaiting processing",
		Subjects:    []string{subjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
		Duplicates:  q.cfg.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", q.cfg.Stream, err)
	}
	q.dlq, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        q.cfg.DLQStream,
		Description: "events that failed every delivery",
		Subjects:    []string{dlqSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    q.cfg.Replicas,
		MaxAge:      q.cfg.DLQMaxAge,
		Duplicates:  q.cfg.DuplicateWindow,
	})
	if err != nil {
		return fmt.Errorf("queue: stream %s: %w", q.cfg.DLQStream, err)
	}
	q.cons = map[string]jetstream.Consumer{}
	for _, pool := range []string{PoolFast, PoolHeavy} {
		name := q.consumerName(pool)
		q.cons[pool], err = js.CreateOrUpdateConsumer(ctx, q.cfg.Stream, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "Sluice workers, " + pool + " pool",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       q.cfg.AckWait,
			MaxDeliver:    q.cfg.MaxDeliver,
			MaxAckPending: 10000,
			FilterSubject: subjectPrefix + poolToken[pool] + ".>",
		})
		if err != nil {
			return fmt.Errorf("queue: consumer %s: %w", name, err)
		}
	}
	return nil
}

// watchAbandoned subscribes to the advisories for events whose last
// delivery never ended (their worker died): the server does not deliver
// them again, and they are moved to the dead-letter stream from here.
func (q *Queue) watchAbandoned() error {
	for _, pool := range []string{PoolFast, PoolHeavy} {
		adv := fmt.Sprintf("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", q.cfg.Stream, q.consumerName(pool))
		sub, err := q.nc.Subscribe(adv, q.onMaxDeliveries)
		if err != nil {
			return err
		}
		q.advSub = append(q.advSub, sub)
	}
	return nil
}

func (q *Queue) consumerName(pool string) string {
	if pool == PoolHeavy {
		return q.cfg.Consumer + "-heavy"
	}
	return q.cfg.Consumer
}

// Publish queues an event. Publishing one with the same PublishID twice
// within the duplicate window stores it once.
func (q *Queue) Publish(ctx context.Context, ev event.ObjectCreated) error {
	return q.publish(ctx, ev, ev.PublishID())
}

func (q *Queue) publish(ctx context.Context, ev event.ObjectCreated, msgID string) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	data, err := ev.Marshal()
	if err != nil {
		return err
	}
	pool := PoolFast
	if ev.Stage == event.StageHeavy {
		pool = PoolHeavy
	}
	msg := nats.NewMsg(eventSubject(pool, ev.AssetID))
	msg.Data = data
	// The trace of whatever published the event (an upload, a reprocess,
	// the fast stage handing over) goes on with the job.
	telemetry.Propagator.Inject(ctx, propagation.HeaderCarrier(msg.Header))
	_, err = q.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID))
	if err != nil {
		return fmt.Errorf("queue: publish: %w", err)
	}
	return nil
}

// eventSubject is the subject of an asset's events. Characters that NATS
// gives meaning to are replaced, so any asset id makes one valid token.
func eventSubject(pool, assetID string) string {
	token := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '.' || r == '*' || r == '>' || r == 0x7f {
			return '_'
		}
		return r
	}, assetID)
	return subjectPrefix + poolToken[pool] + "." + token
}

// Queued reports whether an event for the asset is in the stream, for
// either pool: waiting for a worker, or delivered and not yet
// acknowledged.
func (q *Queue) Queued(ctx context.Context, assetID string) (bool, error) {
	for _, pool := range []string{PoolFast, PoolHeavy} {
		_, err := q.events.GetLastMsgForSubject(ctx, eventSubject(pool, assetID))
		switch {
		case err == nil:
			return true, nil
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return false, fmt.Errorf("queue: look up events of %s: %w", assetID, err)
		}
	}
	return false, nil
}

// Depth is the number of events waiting: not yet delivered, and delivered
// but not yet acknowledged.
type Depth struct {
	Pending    uint64
	AckPending int
}

// Depth reports a pool's backlog.
func (q *Queue) Depth(ctx context.Context, pool string) (Depth, error) {
	cons, ok := q.cons[pool]
	if !ok {
		return Depth{}, fmt.Errorf("queue: unknown pool %q", pool)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return Depth{}, err
	}
	return Depth{Pending: info.NumPending, AckPending: info.NumAckPending}, nil
}

// Ping reports whether the connection is up.
func (q *Queue) Ping(ctx context.Context) error {
	if q.nc.Status() != nats.CONNECTED {
		return fmt.Errorf("queue: nats connection %s", q.nc.Status())
	}
	_, err := q.js.AccountInfo(ctx)
	return err
}

// Close drains the connection and stops the embedded server.
func (q *Queue) Close() {
	for _, sub := range q.advSub {
		_ = sub.Unsubscribe()
	}
	if q.nc != nil {
		_ = q.nc.Drain()
		for q.nc.IsDraining() {
			time.Sleep(10 * time.Millisecond)
		}
		q.nc.Close()
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// backoff returns the delay before the retry that follows the given
// delivery attempt (1-based).
func (q *Queue) backoff(attempt int) time.Duration {
	b := q.cfg.Backoff
	return b[min(max(attempt-1, 0), len(b)-1)]
}

// maxDeliveries is the advisory JetStream sends for a message that ran
// out of deliveries.
type maxDeliveries struct {
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
}

func (q *Queue) onMaxDeliveries(m *nats.Msg) {
	var adv maxDeliveries
	if err := json.Unmarshal(m.Data, &adv); err != nil {
		q.log.Error("queue: bad max-deliveries advisory", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := q.events.GetMsg(ctx, adv.StreamSeq)
	if err != nil {
		// Already moved by another worker, or acknowledged late.
		return
	}
	reason := fmt.Sprintf("no delivery completed after %d attempts (worker stopped or timed out)", adv.Deliveries)
	if err := q.deadLetter(ctx, raw.Data, adv.StreamSeq, adv.Deliveries, reason); err != nil {
		q.log.Error("queue: dead-letter after max deliveries", "seq", adv.StreamSeq, "err", err)
		return
	}
	_ = q.events.DeleteMsg(ctx, adv.StreamSeq)
	if ev, err := event.Unmarshal(raw.Data); err == nil && q.onDead != nil {
		q.onDead(ctx, ev, reason)
	}
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("queue: listen address: %w", err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("queue: listen address %q: bad port", addr)
	}
	return host, port, nil
}

// RawStream is the JetStream stream that keeps the plain NATS messages
// ConsumeRaw reads.
const RawStream = "SLUICE_RAW"

// ConsumeRaw delivers the messages published on subject (plain NATS, such
// as an S3 server's bucket notifications) to fn, each to one of the
// processes consuming with the same name, at least once: a JetStream
// stream keeps what is published there from the first ConsumeRaw on (for
// a day), so that a message published while no process listens, or one
// whose fn fails, comes again (up to 10 deliveries, backing off; then it
// is dropped with a log line, and the reconciler finds the upload). stop
// ends the delivery in this process.
func (q *Queue) ConsumeRaw(ctx context.Context, subject, name string, fn func(ctx context.Context, data []byte) error) (stop func(), err error) {
	if strings.HasPrefix(subject, "sluice.") || strings.HasPrefix(subject, "$") {
		return nil, fmt.Errorf("queue: subject %q is Sluice's or NATS's own", subject)
	}
	if _, err := q.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        RawStream,
		Description: "Plain NATS messages Sluice consumes (bucket notifications)",
		Subjects:    []string{subject},
		MaxAge:      24 * time.Hour,
		Replicas:    q.cfg.Replicas,
		Storage:     jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("queue: stream for %s: %w", subject, err)
	}
	backoff := []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	cons, err := q.js.CreateOrUpdateConsumer(ctx, RawStream, jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: subject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxDeliver:    10,
		BackOff:       backoff,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consumer for %s: %w", subject, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := fn(ctx, m.Data()); err != nil {
			n := 1
			if meta, merr := m.Metadata(); merr == nil {
				n = int(meta.NumDelivered)
			}
			if n >= 10 {
				q.log.Error("queue: giving up on a message", "subject", subject, "err", err)
				_ = m.Term()
				return
			}
			_ = m.NakWithDelay(backoff[min(n, len(backoff))-1])
			return
		}
		_ = m.Ack()
	})
	if err != nil {
		return nil, fmt.Errorf("queue: consume %s: %w", subject, err)
	}
	return cc.Stop, nil
}
