package notify_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/notify"
	"github.com/sluice-media/sluice/internal/notify/cfqueuetest"
)

// harness is a puller wired to a fake queue. Waits the puller chooses
// are recorded; those of a backoff return at once, and the pause after
// an empty pull lasts a millisecond, so that tests neither sleep out
// backoffs nor spin.
type harness struct {
	q   *cfqueuetest.Queue
	p   *notify.Puller
	cfg notify.Config
	log *syncBuffer

	mu     sync.Mutex
	sleeps []time.Duration
}

const testPoll = time.Millisecond

func newHarness(t *testing.T, q *cfqueuetest.Queue, mod func(*notify.Config)) *harness {
	t.Helper()
	h := &harness{q: q, log: &syncBuffer{}}
	o := q.Options()
	h.cfg = notify.Config{
		AccountID:         o.AccountID,
		QueueID:           o.QueueID,
		Token:             o.Token,
		BaseURL:           q.BaseURL(),
		BatchSize:         2,
		VisibilityTimeout: 30 * time.Second,
		PollInterval:      testPoll,
		RetryDelay:        5 * time.Second,
		Logger:            slog.New(slog.NewTextHandler(h.log, nil)),
	}
	if mod != nil {
		mod(&h.cfg)
	}
	p, err := notify.NewPuller(h.cfg, &http.Client{Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("NewPuller: %v", err)
	}
	notify.SetSleep(p, func(ctx context.Context, d time.Duration) error {
		if d == testPoll {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
			return ctx.Err()
		}
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
		return ctx.Err()
	})
	h.p = p
	return h
}

// backoffs returns the waits other than the poll pause.
func (h *harness) backoffs() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.sleeps)
}

// start runs the puller until the returned stop is called; stop returns
// what Run returned.
func (h *harness) start(t *testing.T, handle notify.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.p.Run(ctx, handle) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// wait blocks until cond holds; the deadline only keeps a broken test
// from hanging.
func wait(t *testing.T, q *cfqueuetest.Queue, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func state(q *cfqueuetest.Queue, id string, s cfqueuetest.State) func() bool {
	return func() bool { return q.Message(id).State == s }
}

func allAcked(q *cfqueuetest.Queue, ids ...string) func() bool {
	return func() bool {
		for _, id := range ids {
			if q.Message(id).State != cfqueuetest.Acked {
				return false
			}
		}
		return true
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder is a handler that keeps what it was given.
type recorder struct {
	mu   sync.Mutex
	msgs []notify.Message
	fail func(notify.Message) error
}

func (r *recorder) handle(ctx context.Context, m notify.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return fail(m)
	}
	return nil
}

func (r *recorder) got() []notify.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func r2Put(key string) map[string]any {
	return map[string]any{
		"account": "3f4b7e3dcab231cbfdaa90a6a28bd548", "action": "PutObject", "bucket": "media",
		"object":    map[string]any{"key": key, "size": 65536, "eTag": "c846ff7a18f28c2e262116d6e8719ef0"},
		"eventTime": "2024-05-24T19:36:44.379Z",
	}
}

func TestPullerDeliversAndAcks(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	ids := []string{q.SendJSON(r2Put("a.mp4")), q.SendJSON(r2Put("b.mp4")), q.SendJSON(r2Put("c.mp4"))}
	textID := q.Send("text", []byte("hello"))
	h := newHarness(t, q, nil)

	var mu sync.Mutex
	var keys []string
	r2 := notify.HandleR2(func(ctx context.Context, e event.ObjectCreated) error {
		mu.Lock()
		defer mu.Unlock()
		if e.Bucket != "media" || e.Size != 65536 || e.ETag != "c846ff7a18f28c2e262116d6e8719ef0" || e.Action != "PutObject" {
			t.Errorf("got event %+v", e)
		}
		keys = append(keys, e.Key)
		return nil
	})
	var text []notify.Message
	stop := h.start(t, func(ctx context.Context, m notify.Message) error {
		if m.ContentType == "text" {
			mu.Lock()
			text = append(text, m)
			mu.Unlock()
			return nil
		}
		if m.ContentType != "json" || m.Attempts != 1 || m.ID == "" || !m.Timestamp.Equal(q.Options().Start) {
			t.Errorf("got message %+v", m)
		}
		return r2(ctx, m)
	})
	wait(t, q, "every message acknowledged", allAcked(q, append(ids, textID)...))
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if want := []string{"a.mp4", "b.mp4", "c.mp4"}; !slices.Equal(keys, want) {
		t.Errorf("got keys %q, want %q in order", keys, want)
	}
	if len(text) != 1 || string(text[0].Body) != "hello" || text[0].Metadata["CF-Content-Type"] != "text" {
		t.Errorf("got text messages %+v, want one with body hello", text)
	}
	delivered := 0
	for _, p := range q.Pulls() {
		if p.BatchSize != 2 || p.VisibilityTimeout != 30*time.Second {
			t.Errorf("got pull %+v, want batch 2 and visibility 30s", p)
		}
		if len(p.Delivered) > 2 {
			t.Errorf("got %d messages in one pull, over the batch size", len(p.Delivered))
		}
		delivered += len(p.Delivered)
	}
	if delivered != 4 {
		t.Errorf("got %d deliveries, want 4 (each message once)", delivered)
	}
	for _, a := range q.Acks() {
		if len(a.Retried) != 0 {
			t.Errorf("got retries %+v, want none", a.Retried)
		}
	}
}

func TestPullerRetriesFailedMessage(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	id := q.SendJSON(r2Put("a.mp4"))
	h := newHarness(t, q, nil)
	rec := &recorder{fail: func(m notify.Message) error {
		if m.Attempts < 3 {
			return fmt.Errorf("store unavailable (attempt %d)", m.Attempts)
		}
		return nil
	}}
	h.start(t, rec.handle)

	retried := func(n int) func() bool {
		return func() bool {
			c := 0
			for _, a := range q.Acks() {
				c += len(a.Retried)
			}
			return c == n
		}
	}
	wait(t, q, "the first retry", retried(1))
	// The fake's clock stands still: the message must wait out its
	// delay, however often the puller pulls meanwhile.
	pulls := len(q.Pulls())
	wait(t, q, "more pulls", func() bool { return len(q.Pulls()) >= pulls+3 })
	if got := len(rec.got()); got != 1 {
		t.Fatalf("handled %d times before the retry delay passed, want 1", got)
	}
	q.Advance(5 * time.Second)
	wait(t, q, "the second retry", retried(2))
	q.Advance(10 * time.Second)
	wait(t, q, "the acknowledgement", state(q, id, cfqueuetest.Acked))

	var attempts []int
	for _, m := range rec.got() {
		attempts = append(attempts, m.Attempts)
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("got attempts %v, want [1 2 3]", attempts)
	}
	var retries []cfqueuetest.Retry
	for _, a := range q.Acks() {
		retries = append(retries, a.Retried...)
	}
	want := []cfqueuetest.Retry{{ID: id, Delay: 5 * time.Second, Attempts: 1}, {ID: id, Delay: 10 * time.Second, Attempts: 2}}
	if !slices.Equal(retries, want) {
		t.Errorf("got retries %+v, want %+v (the delay doubling)", retries, want)
	}
	if log := h.log.String(); !strings.Contains(log, "store unavailable (attempt 1)") {
		t.Errorf("log %q does not say why the message failed", log)
	}
}

func TestPullerRedeliversAfterVisibilityTimeout(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	id := q.SendJSON(r2Put("a.mp4"))

	// The first consumer stops mid-message: it neither acknowledges nor
	// retries it.
	first := newHarness(t, q, nil)
	entered := make(chan struct{})
	stop := first.start(t, func(ctx context.Context, m notify.Message) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})
	<-entered
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := q.Message(id); got.State != cfqueuetest.Leased || len(q.Acks()) != 0 {
		t.Fatalf("after an interrupted handler: message %+v, acks %+v; want it leased, nothing acknowledged", got, q.Acks())
	}

	second := newHarness(t, q, nil)
	rec := &recorder{}
	second.start(t, rec.handle)
	pulls := len(q.Pulls())
	wait(t, q, "pulls during the lease", func() bool { return len(q.Pulls()) >= pulls+2 })
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("got %+v while the first lease ran, want nothing", got)
	}
	q.Advance(30 * time.Second)
	wait(t, q, "the acknowledgement", state(q, id, cfqueuetest.Acked))
	if got := rec.got(); len(got) != 1 || got[0].ID != id || got[0].Attempts != 2 {
		t.Errorf("got %+v, want message %s once at attempt 2", got, id)
	}
}

func TestPullerAcksHandledOnShutdown(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	a, b := q.SendJSON(r2Put("a.mp4")), q.SendJSON(r2Put("b.mp4"))
	h := newHarness(t, q, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled []string
	err := h.p.Run(ctx, func(ctx context.Context, m notify.Message) error {
		handled = append(handled, m.ID)
		cancel() // shutdown arrives while the first of the batch is handled
		return nil
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !slices.Equal(handled, []string{a}) {
		t.Errorf("handled %v, want only %s", handled, a)
	}
	if got := q.Message(a).State; got != cfqueuetest.Acked {
		t.Errorf("handled message is %s, want acknowledged though shutting down", got)
	}
	if got := q.Message(b).State; got != cfqueuetest.Leased {
		t.Errorf("unhandled message is %s, want left leased for redelivery", got)
	}
}

func TestPullerBacksOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults []cfqueuetest.Fault
		want   []time.Duration
	}{
		{"429 with Retry-After", []cfqueuetest.Fault{cfqueuetest.RateLimited("7")}, []time.Duration{7 * time.Second}},
		{"429 with a date", []cfqueuetest.Fault{cfqueuetest.RateLimited("Mon, 01 Jan 2001 00:00:00 GMT")}, []time.Duration{time.Second}},
		{"429 without Retry-After", []cfqueuetest.Fault{cfqueuetest.RateLimited("")}, []time.Duration{time.Second}},
		{"429 with an absurd Retry-After", []cfqueuetest.Fault{cfqueuetest.RateLimited("99999999999")}, []time.Duration{time.Hour}},
		{"server errors double", []cfqueuetest.Fault{cfqueuetest.ServerError(), {Status: http.StatusBadGateway, Body: "<html>bad gateway</html>"}},
			[]time.Duration{time.Second, 2 * time.Second}},
		{"unsuccessful envelope", []cfqueuetest.Fault{cfqueuetest.Unsuccessful()}, []time.Duration{time.Second}},
		{"malformed answer", []cfqueuetest.Fault{cfqueuetest.Malformed(), {Body: `{"result":{"messages":[]}}`}},
			[]time.Duration{time.Second, 2 * time.Second}},
		{"capped", slices.Repeat([]cfqueuetest.Fault{cfqueuetest.ServerError()}, 4), []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"failed ack retried", []cfqueuetest.Fault{{Op: "ack", Status: http.StatusServiceUnavailable}, {Op: "ack", Status: http.StatusTooManyRequests, RetryAfter: "2"}},
			[]time.Duration{time.Second, 2 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := cfqueuetest.New(t, cfqueuetest.Options{})
			q.Inject(tc.faults...)
			id := q.SendJSON(r2Put("a.mp4"))
			h := newHarness(t, q, func(c *notify.Config) { c.MaxBackoff = 3 * time.Second })
			rec := &recorder{}
			stop := h.start(t, rec.handle)
			wait(t, q, "the acknowledgement", state(q, id, cfqueuetest.Acked))
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := h.backoffs(); !slices.Equal(got, tc.want) {
				t.Errorf("got waits %v, want %v", got, tc.want)
			}
			if got := rec.got(); len(got) != 1 {
				t.Errorf("handled %d times, want once", len(got))
			}
		})
	}
}

func TestPullerDropsPoison(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	notJSON := q.Send("bytes", []byte("\x00\x01 not a notification"))
	wrongShape := q.SendJSON(map[string]any{"action": "PutObject", "object": "k"})
	v8 := q.Send("v8", []byte{0xff, 0x0d})
	badBase64 := q.SendWire("%%% not base64", map[string]any{"CF-Content-Type": "json"})
	noBody := q.SendWire("", nil)
	deletion := q.SendJSON(map[string]any{"account": "a", "action": "DeleteObject", "bucket": "media",
		"object": map[string]any{"key": "gone.mp4"}, "eventTime": "2024-05-24T19:36:44.379Z"})
	good := q.SendJSON(r2Put("good.mp4"))
	h := newHarness(t, q, func(c *notify.Config) { c.BatchSize = 100 })

	var got []string
	h.start(t, notify.HandleR2(func(ctx context.Context, e event.ObjectCreated) error {
		got = append(got, e.Key)
		return nil
	}))
	all := []string{notJSON, wrongShape, v8, badBase64, noBody, deletion, good}
	wait(t, q, "every message acknowledged", allAcked(q, all...))

	if !slices.Equal(got, []string{"good.mp4"}) {
		t.Errorf("handler got %q, want only good.mp4", got)
	}
	for _, a := range q.Acks() {
		if len(a.Retried) != 0 {
			t.Errorf("got retries %+v, want poison acknowledged, not retried", a.Retried)
		}
	}
	log := h.log.String()
	for _, id := range []string{notJSON, wrongShape, v8, badBase64} {
		if !strings.Contains(log, "poison") || !strings.Contains(log, id) {
			t.Errorf("log does not report poison message %s:\n%s", id, log)
		}
	}
	for _, id := range []string{deletion, good} {
		if strings.Contains(log, id) {
			t.Errorf("log reports message %s, which was fine:\n%s", id, log)
		}
	}
	// An empty body decodes (base64 of nothing) but is no notification:
	// HandleR2 calls it poison.
	if !strings.Contains(log, noBody) {
		t.Errorf("log does not report the empty message %s", noBody)
	}
}

func TestPullerCancelStopsPromptly(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	cfg := notify.Config{
		AccountID: q.Options().AccountID, QueueID: q.Options().QueueID, Token: q.Options().Token,
		BaseURL: q.BaseURL(), PollInterval: time.Hour, // the real wait: cancel must cut it short
		Logger: slog.New(slog.NewTextHandler(&syncBuffer{}, nil)),
	}
	p, err := notify.NewPuller(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, func(context.Context, notify.Message) error { return nil }) }()
	wait(t, q, "the first pull", func() bool { return len(q.Pulls()) == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v, want nil on cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waiting out its poll interval after cancel")
	}
}

func TestPullerStopsOnRefusal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*notify.Config)
		status int
	}{
		{"wrong token", func(c *notify.Config) { c.Token = "not-the-token-123" }, http.StatusUnauthorized},
		{"unknown queue", func(c *notify.Config) { c.QueueID = "nope" }, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := cfqueuetest.New(t, cfqueuetest.Options{})
			q.SendJSON(r2Put("a.mp4"))
			h := newHarness(t, q, tc.mod)
			err := h.p.Run(context.Background(), func(context.Context, notify.Message) error {
				t.Error("handler called")
				return nil
			})
			ae, ok := errors.AsType[*notify.APIError](err)
			if !ok || ae.Status != tc.status || ae.Temporary() || ae.Op != "pull" {
				t.Fatalf("got %v, want a permanent pull APIError with status %d", err, tc.status)
			}
			if strings.Contains(err.Error(), "not-the-token-123") {
				t.Errorf("error %q shows the token", err)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	ok := notify.Config{AccountID: "acc", QueueID: "q", Token: "secret-token-xyz"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate(%v): %v", ok, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*notify.Config)
		want string
	}{
		{"no account", func(c *notify.Config) { c.AccountID = " " }, "account id"},
		{"no queue", func(c *notify.Config) { c.QueueID = "" }, "queue id"},
		{"no token", func(c *notify.Config) { c.Token = "" }, "API token"},
		{"bad url", func(c *notify.Config) { c.BaseURL = "ftp://x" }, "base url"},
		{"batch too big", func(c *notify.Config) { c.BatchSize = 101 }, "batch size 101"},
		{"negative batch", func(c *notify.Config) { c.BatchSize = -1 }, "batch size -1"},
		{"visibility too long", func(c *notify.Config) { c.VisibilityTimeout = 13 * time.Hour }, "visibility timeout"},
		{"visibility under 1ms", func(c *notify.Config) { c.VisibilityTimeout = time.Microsecond }, "visibility timeout"},
		{"retry delay over max", func(c *notify.Config) { c.RetryDelay = time.Hour; c.MaxRetryDelay = time.Minute }, "retry delays"},
		{"negative poll", func(c *notify.Config) { c.PollInterval = -time.Second }, "poll interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: got %v, want an error containing %q", err, tc.want)
			}
			if _, err := notify.NewPuller(c, nil); err == nil {
				t.Error("NewPuller accepted it")
			}
		})
	}
	var logged syncBuffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "queue", ok)
	for _, s := range []string{ok.String(), fmt.Sprintf("%v %+v %#v", ok, ok, ok), logged.String()} {
		if strings.Contains(s, "secret-token-xyz") {
			t.Errorf("%q shows the token", s)
		}
	}
	if !strings.Contains(ok.String(), "[redacted]") {
		t.Errorf("String %q does not say a token is set", ok.String())
	}
}
