package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

var testSecret = []byte("sluice-test-secret-32-bytes-long")

// receiver is an httptest endpoint that checks every request the way a
// real receiver would and answers with respond's status.
type receiver struct {
	*httptest.Server
	calls   atomic.Int32
	bad     atomic.Int32 // requests that failed verification
	lastRaw atomic.Value // []byte
}

func newReceiver(t *testing.T, secrets [][]byte, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(rc.calls.Add(1))
		body, _ := io.ReadAll(r.Body)
		rc.lastRaw.Store(body)
		var p struct {
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := Verify(secrets, r.Header, body, time.Now(), 0); err != nil ||
			r.Method != http.MethodPost ||
			r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &p) != nil || p.Type == "" {
			rc.bad.Add(1)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		respond(n, w, r)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func status(code int) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func testEvent() Event {
	return Event{
		ID:        "msg_2abc",
		Type:      AssetSucceeded,
		Timestamp: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
		Data:      map[string]any{"asset_id": "a1", "outputs": []string{"thumb.webp"}},
	}
}

func newTestSender(t *testing.T, cfg Config, log Log) *Sender {
	t.Helper()
	s, err := NewSender(cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fastConfig retries quickly so whole schedules run inside a test.
func fastConfig(retries int) Config {
	sched := make([]time.Duration, retries)
	for i := range sched {
		sched[i] = time.Millisecond
	}
	return Config{Timeout: 2 * time.Second, Schedule: sched, Jitter: -1}
}

func TestDeliverSignedPayload(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, status(http.StatusNoContent))
	log := &MemoryLog{}
	s := newTestSender(t, Config{}, log)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	res, err := s.Deliver(context.Background(), ep, testEvent(), 1)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if !res.Delivered || res.Retry || res.Status != http.StatusNoContent {
		t.Errorf("result = %+v, want delivered 204 without retry", res)
	}
	if got := rc.bad.Load(); got != 0 {
		t.Errorf("receiver rejected %d requests", got)
	}
	var got map[string]any
	if err := json.Unmarshal(rc.lastRaw.Load().([]byte), &got); err != nil {
		t.Fatal(err)
	}
	if got["type"] != AssetSucceeded || got["timestamp"] != "2026-11-25T12:00:00Z" || got["data"].(map[string]any)["asset_id"] != "a1" {
		t.Errorf("payload = %v", got)
	}
	if len(got) != 3 {
		t.Errorf("payload keys = %d, want 3 (type, timestamp, data)", len(got))
	}
	attempts := log.Attempts("ep1")
	if len(attempts) != 1 {
		t.Fatalf("log has %d attempts, want 1", len(attempts))
	}
	if a := attempts[0]; a.Attempt != 1 || a.Status != 204 || a.Error != "" || !a.NextRetry.IsZero() || a.EventID != "msg_2abc" {
		t.Errorf("logged attempt = %+v", a)
	}
}

func TestDeliverDuringSecretRotation(t *testing.T) {
	newSecret := []byte("the-new-secret-after-rotation-32")
	// The receiver has already switched to the new secret only.
	rc := newReceiver(t, [][]byte{newSecret}, status(http.StatusOK))
	s := newTestSender(t, Config{}, nil)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret, newSecret}}
	if _, err := s.Deliver(context.Background(), ep, testEvent(), 1); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

func TestSendRetriesUntilDelivered(t *testing.T) {
	const failures = 3
	rc := newReceiver(t, [][]byte{testSecret}, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= failures {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	log := &MemoryLog{}
	s := newTestSender(t, fastConfig(7), log)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	res, err := s.Send(context.Background(), ep, testEvent())
	if err != nil || !res.Delivered {
		t.Fatalf("Send = %+v, %v; want delivered", res, err)
	}
	if got, want := res.Attempt, failures+1; got != want {
		t.Errorf("delivered on attempt %d, want %d", got, want)
	}
	attempts := log.Attempts("ep1")
	if got, want := len(attempts), failures+1; got != want {
		t.Fatalf("log has %d attempts, want %d", got, want)
	}
	for i, a := range attempts[:failures] {
		if a.Attempt != i+1 || a.Status != 500 || a.Error == "" || a.NextRetry.IsZero() {
			t.Errorf("attempt %d logged as %+v, want 500 with a next retry", i+1, a)
		}
	}
	if last := attempts[failures]; last.Status != 200 || !last.NextRetry.IsZero() {
		t.Errorf("last attempt logged as %+v", last)
	}
}

func TestSendGivesUpWhenScheduleRunsOut(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, status(http.StatusBadGateway))
	log := &MemoryLog{}
	s := newTestSender(t, fastConfig(2), log)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	res, err := s.Send(context.Background(), ep, testEvent())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadGateway {
		t.Fatalf("Send err = %v, want StatusError 502", err)
	}
	if res.Retry || res.Attempt != 3 {
		t.Errorf("result = %+v, want attempt 3 without retry", res)
	}
	if got := len(log.Attempts("")); got != 3 {
		t.Errorf("log has %d attempts, want 3", got)
	}
}

func TestDeliverRetryAfter(t *testing.T) {
	// Real time, since the receiver checks the signature's timestamp.
	now := time.Now().UTC().Truncate(time.Second)
	for _, tc := range []struct {
		name       string
		code       int
		retryAfter string
		want       time.Duration
	}{
		{"429 seconds", http.StatusTooManyRequests, "7", 7 * time.Second},
		{"503 seconds", http.StatusServiceUnavailable, "120", 2 * time.Minute},
		{"429 http date", http.StatusTooManyRequests, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"capped", http.StatusTooManyRequests, "999999999", time.Hour},
		{"unparsable uses schedule", http.StatusTooManyRequests, "soon", 5 * time.Second},
		{"ignored on 500", http.StatusInternalServerError, "7", 5 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, [][]byte{testSecret}, func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tc.retryAfter)
				w.WriteHeader(tc.code)
			})
			log := &MemoryLog{}
			s := newTestSender(t, Config{Jitter: -1, MaxRetryAfter: time.Hour}, log)
			s.now = func() time.Time { return now }
			ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

			res, err := s.Deliver(context.Background(), ep, testEvent(), 1)
			if err == nil {
				t.Fatal("Deliver succeeded, want an error")
			}
			if !res.Retry || res.NextDelay != tc.want {
				t.Errorf("retry %v after %s, want retry after %s", res.Retry, res.NextDelay, tc.want)
			}
			if a := log.Attempts("ep1")[0]; !a.NextRetry.Equal(now.Add(tc.want)) {
				t.Errorf("logged next retry %s, want %s", a.NextRetry, now.Add(tc.want))
			}
		})
	}
}

func TestSendStopsOnGone(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, status(http.StatusGone))
	log := &MemoryLog{}
	s := newTestSender(t, fastConfig(7), log)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	res, err := s.Send(context.Background(), ep, testEvent())
	if !errors.Is(err, ErrGone) {
		t.Fatalf("Send err = %v, want ErrGone", err)
	}
	if !res.Gone || res.Retry || rc.calls.Load() != 1 {
		t.Errorf("result = %+v after %d calls, want gone after 1", res, rc.calls.Load())
	}
	if got := len(log.Attempts("ep1")); got != 1 {
		t.Errorf("log has %d attempts, want 1", got)
	}
}

func TestDeliverTimeout(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, func(_ int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	})
	log := &MemoryLog{}
	s := newTestSender(t, Config{Timeout: 50 * time.Millisecond}, log)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	start := time.Now()
	res, err := s.Deliver(context.Background(), ep, testEvent(), 1)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Deliver err = %v, want ErrTimeout", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Deliver took %s despite a 50ms timeout", elapsed)
	}
	if res.Status != 0 || !res.Retry {
		t.Errorf("result = %+v, want no status and a retry", res)
	}
	if a := log.Attempts("ep1")[0]; a.Error == "" || a.Duration < 50*time.Millisecond {
		t.Errorf("logged attempt = %+v", a)
	}
}

func TestDeliverDoesNotFollowRedirects(t *testing.T) {
	target := newReceiver(t, [][]byte{testSecret}, status(http.StatusOK))
	rc := newReceiver(t, [][]byte{testSecret}, func(_ int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	})
	s := newTestSender(t, Config{}, nil)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	_, err := s.Deliver(context.Background(), ep, testEvent(), 1)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTemporaryRedirect {
		t.Errorf("Deliver err = %v, want StatusError 307", err)
	}
	if got := target.calls.Load(); got != 0 {
		t.Errorf("redirect target got %d requests, want 0", got)
	}
}

func TestDeliverRejectsBadInput(t *testing.T) {
	s := newTestSender(t, Config{}, nil)
	good := Endpoint{ID: "ep1", URL: "http://127.0.0.1:1/hook", Secrets: [][]byte{testSecret}}
	for _, tc := range []struct {
		name string
		ep   Endpoint
		ev   Event
		want error
	}{
		{"no secrets", Endpoint{URL: good.URL}, testEvent(), ErrInvalidEndpoint},
		{"relative url", Endpoint{URL: "/hook", Secrets: good.Secrets}, testEvent(), ErrInvalidEndpoint},
		{"file scheme", Endpoint{URL: "file:///etc/passwd", Secrets: good.Secrets}, testEvent(), ErrInvalidEndpoint},
		{"no event id", good, Event{Type: AssetFailed}, ErrInvalidEvent},
		{"unencodable data", good, Event{ID: "m", Type: AssetFailed, Data: make(chan int)}, ErrInvalidEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := s.Deliver(context.Background(), tc.ep, tc.ev, 1)
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if !res.Permanent || res.Retry {
				t.Errorf("result = %+v, want permanent without retry", res)
			}
		})
	}
}

func TestNextDelay(t *testing.T) {
	s := newTestSender(t, Config{}, nil)
	for _, tc := range []struct {
		name    string
		attempt int
		res     Result
		rand    float64
		want    time.Duration
		retry   bool
	}{
		{"first retry low jitter", 1, Result{Status: 500}, 0, 4 * time.Second, true},
		{"first retry high jitter", 1, Result{Status: 500}, 1, 6 * time.Second, true},
		{"middle no jitter", 4, Result{Status: 500}, 0.5, 2 * time.Hour, true},
		{"last scheduled", 7, Result{}, 0.5, 10 * time.Hour, true},
		{"schedule exhausted", 8, Result{Status: 500}, 0.5, 0, false},
		{"delivered", 1, Result{Delivered: true}, 0.5, 0, false},
		{"gone", 1, Result{Gone: true, Permanent: true}, 0.5, 0, false},
		{"retry-after wins", 1, Result{Status: 429, RetryAfter: time.Minute}, 0, time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.rand = func() float64 { return tc.rand }
			got, retry := s.NextDelay(tc.attempt, tc.res)
			if got != tc.want || retry != tc.retry {
				t.Errorf("NextDelay = %s, %v; want %s, %v", got, retry, tc.want, tc.retry)
			}
		})
	}
}

func TestSendStopsWhenContextEnds(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, status(http.StatusInternalServerError))
	s := newTestSender(t, Config{Schedule: []time.Duration{time.Hour}}, nil)
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()

	_, err := s.Send(ctx, ep, testEvent())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Send err = %v, want deadline exceeded", err)
	}
	if got := rc.calls.Load(); got != 1 {
		t.Errorf("receiver got %d calls, want 1", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Timeout: -1}, false},
		{Config{Jitter: 1}, false},
		{Config{MaxRetryAfter: -1}, false},
		{Config{Schedule: []time.Duration{time.Second, -time.Second}}, false},
	} {
		if got := tc.cfg.Validate() == nil; got != tc.ok {
			t.Errorf("Validate(%+v) ok = %v, want %v", tc.cfg, got, tc.ok)
		}
	}
	if _, err := NewSender(Config{Jitter: 2}, nil, nil); err == nil {
		t.Error("NewSender accepted an invalid config")
	}
}

type failingLog struct{}

func (failingLog) Record(context.Context, Attempt) error { return errors.New("disk full") }

func TestDeliverReportsLogFailureWithoutHidingDelivery(t *testing.T) {
	rc := newReceiver(t, [][]byte{testSecret}, status(http.StatusOK))
	s := newTestSender(t, Config{}, failingLog{})
	ep := Endpoint{ID: "ep1", URL: rc.URL, Secrets: [][]byte{testSecret}}

	res, err := s.Deliver(context.Background(), ep, testEvent(), 1)
	if err == nil {
		t.Error("Deliver hid the log failure")
	}
	if !res.Delivered || res.Retry {
		t.Errorf("result = %+v, want delivered without retry", res)
	}
}

func TestMemoryLogFiltersByEndpoint(t *testing.T) {
	log := &MemoryLog{}
	ctx := context.Background()
	for _, id := range []string{"a", "b", "a"} {
		if err := log.Record(ctx, Attempt{EndpointID: id}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(log.Attempts("a")); got != 2 {
		t.Errorf("Attempts(a) = %d, want 2", got)
	}
	if got := len(log.Attempts("")); got != 3 {
		t.Errorf("Attempts(\"\") = %d, want 3", got)
	}
}
