// Package cfqueuetest runs a fake of the Cloudflare Queues HTTP pull
// API, for testing pull consumers where Cloudflare cannot be reached. It
// follows the documented wire format and behaviour
// (https://developers.cloudflare.com/queues/configuration/pull-consumers/
// and the REST API's queue-v2-messages-pull and -ack operations):
//
//   - POST {base}/accounts/{account_id}/queues/{queue_id}/messages/pull
//     with {"batch_size", "visibility_timeout_ms"} (the guide's
//     "visibility_timeout" is accepted too), each optional: batch size
//     default 5, at most 100; lease default 30 s, at most 12 h. It
//     answers at once (short polling), with an empty list when nothing
//     is due.
//   - Messages come as {"id", "body", "attempts", "lease_id",
//     "timestamp_ms", "metadata": {"CF-Content-Type", ...}}, the body
//     base64-encoded for the json and bytes content types and plain for
//     text.
//   - POST .../messages/ack with {"acks": [{"lease_id"}], "retries":
//     [{"lease_id", "delay_seconds"}]} answers {"ackCount",
//     "retryCount", "warnings"}.
//   - Pulled messages not acknowledged or retried before their
//     visibility timeout are delivered again, attempts counting every
//     delivery; a retried message comes back after its delay. A message
//     whose attempts have reached MaxRetries when it fails is deleted
//     (dead-lettered) instead, as the guide says of attempts and
//     max_retries.
//   - An acknowledgement after the lease ran out, even after the message
//     went to another consumer, is still accepted, as documented.
//   - Every answer is Cloudflare's envelope {"success", "errors":
//     [{"code", "message"}], "messages", "result"}; a missing or wrong
//     bearer token gets 401 with code 10000. Other error codes are the
//     fake's own.
//
// Time is the fake's own clock, which moves only by Advance, so that
// tests of leases and delays neither sleep nor race. Faults (429 with
// Retry-After, server errors, "success": false, a body cut off) are
// queued with Inject and answer the next matching requests.
//
// The package imports nothing of Sluice.
package cfqueuetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Defaults for a fake queue.
const (
	DefaultAccountID = "023e105f4ecef8ad9ca31a8372d0c353"
	DefaultQueueID   = "023e105f4ecef8ad9ca31a8372d0c353"
	DefaultToken     = "test-queues-token"
	// DefaultMaxRetries is Cloudflare's default max_retries.
	DefaultMaxRetries = 3

	defaultBatchSize  = 5
	maxBatchSize      = 100
	defaultVisibility = 30 * time.Second
	maxVisibility     = 12 * time.Hour
	maxDelay          = 12 * time.Hour
)

// Options set up a fake queue. Zero values take the defaults.
type Options struct {
	AccountID string
	QueueID   string
	// Token is the bearer token every call must carry.
	Token string
	// MaxRetries is the consumer's max_retries.
	MaxRetries int
	// Start is the fake clock's first reading (default 2024-05-24
	// 19:36:44 UTC).
	Start time.Time
}

// State is where a message is in its life.
type State string

// Message states.
const (
	Pending State = "pending" // waiting to be delivered, perhaps after a delay
	Leased  State = "leased"  // delivered, its lease running
	Acked   State = "acked"
	Dead    State = "dead" // out of retries
)

// MessageState describes one message, for assertions.
type MessageState struct {
	ID       string
	State    State
	Attempts int
	// VisibleAt is when a pending message may be delivered.
	VisibleAt time.Time
}

// Pull records one pull request.
type Pull struct {
	BatchSize         int
	VisibilityTimeout time.Duration
	// Delivered are the ids handed out.
	Delivered []string
}

// Retry records one message marked for retry.
type Retry struct {
	ID       string
	Delay    time.Duration
	Attempts int // the delivery that failed
}

// Ack records one acknowledgement request.
type Ack struct {
	Acked   []string
	Retried []Retry
}

// Fault is an answer given instead of the real one.
type Fault struct {
	// Op limits the fault to "pull" or "ack" requests (empty: either).
	Op string
	// Status is the HTTP status (default 200).
	Status int
	// RetryAfter, when set, is sent as the Retry-After header.
	RetryAfter string
	// Body, when set, is sent as it is instead of an error envelope.
	Body string
}

// RateLimited is a 429 with Retry-After, as the API sends when a
// consumer exceeds its rate limit (code 971, "Please wait and consider
// throttling your request speed").
func RateLimited(retryAfter string) Fault {
	return Fault{Status: http.StatusTooManyRequests, RetryAfter: retryAfter,
		Body: envelope(false, nil, apiError{971, "Please wait and consider throttling your request speed"})}
}

// ServerError is a 500 in the error envelope.
func ServerError() Fault {
	return Fault{Status: http.StatusInternalServerError, Body: envelope(false, nil, apiError{10001, "Internal error"})}
}

// Unsuccessful is a 200 whose envelope says "success": false.
func Unsuccessful() Fault {
	return Fault{Status: http.StatusOK, Body: envelope(false, nil, apiError{10002, "Temporarily unavailable"})}
}

// Malformed is a 200 whose body is cut off mid-way.
func Malformed() Fault {
	return Fault{Status: http.StatusOK, Body: `{"success":true,"errors":[],"messages":[],"result":{"messages":[{"id":"`}
}

type message struct {
	id          string
	body        string // as on the wire
	contentType string
	metadata    map[string]any
	published   time.Time

	state      State
	attempts   int
	visibleAt  time.Time
	lease      string
	leaseUntil time.Time
}

// Queue is a fake queue behind a fake Cloudflare API.
type Queue struct {
	*httptest.Server
	opts Options

	mu      sync.Mutex
	now     time.Time
	msgs    []*message
	byID    map[string]*message
	leases  map[string]*message // every lease ever issued
	faults  []Fault
	pulls   []Pull
	acks    []Ack
	calls   int
	changed chan struct{}
}

// New starts a fake queue, closed when the test ends.
func New(t testing.TB, opts Options) *Queue {
	if opts.AccountID == "" {
		opts.AccountID = DefaultAccountID
	}
	if opts.QueueID == "" {
		opts.QueueID = DefaultQueueID
	}
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2024, 5, 24, 19, 36, 44, 0, time.UTC)
	}
	q := &Queue{
		opts:    opts,
		now:     opts.Start,
		byID:    map[string]*message{},
		leases:  map[string]*message{},
		changed: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/client/v4/accounts/{account}/queues/{queue}/messages/{op}", q.serve)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusNotFound, envelope(false, nil, apiError{7003, "Could not route to " + r.URL.Path}))
	})
	q.Server = httptest.NewServer(mux)
	t.Cleanup(q.Server.Close)
	return q
}

// BaseURL is the API root to configure a consumer with.
func (q *Queue) BaseURL() string { return q.Server.URL + "/client/v4" }

// Options returns the queue's options, defaults filled in.
func (q *Queue) Options() Options { return q.opts }

// Send publishes body with a content type: "json" (body must be JSON),
// "text", "bytes" or "v8". It returns the message id.
func (q *Queue) Send(contentType string, body []byte) string {
	wire := base64.StdEncoding.EncodeToString(body)
	switch contentType {
	case "json":
		if !json.Valid(body) {
			panic(fmt.Sprintf("cfqueuetest: json message %q is not JSON", body))
		}
	case "text":
		wire = string(body)
	case "bytes", "v8":
	default:
		panic(fmt.Sprintf("cfqueuetest: unknown content type %q", contentType))
	}
	return q.SendWire(wire, map[string]any{"CF-sourceMessageSource": "api", "CF-Content-Type": contentType})
}

// SendJSON publishes v as a json message.
func (q *Queue) SendJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return q.Send("json", b)
}

// SendWire publishes a message whose body and metadata are sent exactly
// as given, to test consumers against what the encoding rules do not
// produce.
func (q *Queue) SendWire(body string, metadata map[string]any) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := &message{
		id:        randomHex(16),
		body:      body,
		metadata:  metadata,
		published: q.now,
		state:     Pending,
		visibleAt: q.now,
	}
	q.msgs = append(q.msgs, m)
	q.byID[m.id] = m
	q.notify()
	return m.id
}

// Advance moves the fake clock on: leases run out and delays pass.
func (q *Queue) Advance(d time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.now = q.now.Add(d)
	q.notify()
}

// Now reads the fake clock.
func (q *Queue) Now() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.now
}

// Inject queues faults; each answers the next request it matches.
func (q *Queue) Inject(faults ...Fault) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.faults = append(q.faults, faults...)
}

// Message describes the message with id.
func (q *Queue) Message(id string) MessageState {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire()
	m, ok := q.byID[id]
	if !ok {
		return MessageState{ID: id}
	}
	return MessageState{ID: id, State: m.state, Attempts: m.attempts, VisibleAt: m.visibleAt}
}

// Pulls returns the pull requests served so far (faults not included).
func (q *Queue) Pulls() []Pull {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Pull(nil), q.pulls...)
}

// Acks returns the acknowledgement requests served so far.
func (q *Queue) Acks() []Ack {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Ack(nil), q.acks...)
}

// Calls counts requests answered, faults and refusals included.
func (q *Queue) Calls() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

// Wait returns once cond holds, checking after every change to the
// queue (a request, Send, Advance), or when ctx is done.
func (q *Queue) Wait(ctx context.Context, cond func() bool) error {
	for {
		q.mu.Lock()
		ch := q.changed
		q.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (q *Queue) notify() {
	close(q.changed)
	q.changed = make(chan struct{})
}

type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func envelope(success bool, result any, errs ...apiError) string {
	if errs == nil {
		errs = []apiError{}
	}
	b, err := json.Marshal(map[string]any{"success": success, "errors": errs, "messages": []string{}, "result": result})
	if err != nil {
		panic(err)
	}
	return string(b)
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func (q *Queue) serve(w http.ResponseWriter, r *http.Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	defer q.notify()

	if r.Header.Get("Authorization") != "Bearer "+q.opts.Token {
		reply(w, http.StatusUnauthorized, envelope(false, nil, apiError{10000, "Authentication error"}))
		return
	}
	op := r.PathValue("op")
	if r.PathValue("account") != q.opts.AccountID || r.PathValue("queue") != q.opts.QueueID || (op != "pull" && op != "ack") {
		reply(w, http.StatusNotFound, envelope(false, nil, apiError{11000, "Queue not found"}))
		return
	}
	if r.Method != http.MethodPost {
		reply(w, http.StatusMethodNotAllowed, envelope(false, nil, apiError{10405, "Method not allowed"}))
		return
	}
	for i, f := range q.faults {
		if f.Op == "" || f.Op == op {
			q.faults = append(q.faults[:i], q.faults[i+1:]...)
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			status := f.Status
			if status == 0 {
				status = http.StatusOK
			}
			reply(w, status, f.Body)
			return
		}
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		reply(w, http.StatusBadRequest, envelope(false, nil, apiError{10400, "Content-Type must be application/json"}))
		return
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
		reply(w, http.StatusBadRequest, envelope(false, nil, apiError{10400, "reading body: " + err.Error()}))
		return
	}
	q.expire()
	var (
		result any
		err    error
	)
	if op == "pull" {
		result, err = q.pull(body.Bytes())
	} else {
		result, err = q.ack(body.Bytes())
	}
	if err != nil {
		reply(w, http.StatusBadRequest, envelope(false, nil, apiError{10400, err.Error()}))
		return
	}
	reply(w, http.StatusOK, envelope(true, result))
}

// expire ends the leases that have run out: their messages are
// delivered again, or deleted once out of retries.
func (q *Queue) expire() {
	for _, m := range q.msgs {
		if m.state == Leased && !q.now.Before(m.leaseUntil) {
			q.fail(m, m.leaseUntil)
		}
	}
}

// fail puts a message whose delivery failed back in the queue, visible
// from at, unless it is out of retries.
func (q *Queue) fail(m *message, at time.Time) {
	m.lease = ""
	if m.attempts >= q.opts.MaxRetries {
		m.state = Dead
		return
	}
	m.state = Pending
	m.visibleAt = at
}

// number reads an optional JSON number field that must be a whole
// number in [lo, hi].
func number(fields map[string]json.RawMessage, name string, lo, hi float64) (float64, bool, error) {
	raw, ok := fields[name]
	if !ok {
		return 0, false, nil
	}
	var v float64
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, false, fmt.Errorf("%s must be a number", name)
	}
	if v != math.Trunc(v) || v < lo || v > hi {
		return 0, false, fmt.Errorf("%s must be a whole number from %g to %g", name, lo, hi)
	}
	return v, true, nil
}

type wireMessage struct {
	ID          string         `json:"id"`
	Body        string         `json:"body"`
	Attempts    int            `json:"attempts"`
	LeaseID     string         `json:"lease_id"`
	Metadata    map[string]any `json:"metadata"`
	TimestampMs int64          `json:"timestamp_ms"`
}

func (q *Queue) pull(body []byte) (any, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("body must be a JSON object")
	}
	batch, visibility := defaultBatchSize, defaultVisibility
	if v, ok, err := number(fields, "batch_size", 1, maxBatchSize); err != nil {
		return nil, err
	} else if ok {
		batch = int(v)
	}
	for _, name := range []string{"visibility_timeout_ms", "visibility_timeout"} {
		if v, ok, err := number(fields, name, 1, float64(maxVisibility/time.Millisecond)); err != nil {
			return nil, err
		} else if ok {
			visibility = time.Duration(v) * time.Millisecond
		}
	}
	p := Pull{BatchSize: batch, VisibilityTimeout: visibility}
	out := []wireMessage{}
	backlog := 0
	for _, m := range q.msgs {
		if m.state != Pending {
			continue
		}
		backlog++
		if len(out) == batch || q.now.Before(m.visibleAt) {
			continue
		}
		m.state = Leased
		m.attempts++
		m.lease = randomLease()
		m.leaseUntil = q.now.Add(visibility)
		q.leases[m.lease] = m
		p.Delivered = append(p.Delivered, m.id)
		out = append(out, wireMessage{
			ID: m.id, Body: m.body, Attempts: m.attempts, LeaseID: m.lease,
			Metadata: m.metadata, TimestampMs: m.published.UnixMilli(),
		})
	}
	q.pulls = append(q.pulls, p)
	return map[string]any{"messages": out, "message_backlog_count": backlog - len(out)}, nil
}

func (q *Queue) ack(body []byte) (any, error) {
	var req struct {
		Acks *[]struct {
			LeaseID *string `json:"lease_id"`
		} `json:"acks"`
		Retries *[]struct {
			LeaseID      *string  `json:"lease_id"`
			DelaySeconds *float64 `json:"delay_seconds"`
		} `json:"retries"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("body: %v", err)
	}
	if req.Acks == nil && req.Retries == nil {
		return nil, fmt.Errorf("body needs acks or retries")
	}
	warnings := []string{}
	var rec Ack
	if req.Acks != nil {
		for _, a := range *req.Acks {
			if a.LeaseID == nil || *a.LeaseID == "" {
				return nil, fmt.Errorf("every ack needs a lease_id")
			}
			m, ok := q.leases[*a.LeaseID]
			switch {
			case !ok:
				warnings = append(warnings, "unknown lease_id")
			case m.state == Acked || m.state == Dead:
				warnings = append(warnings, "message "+m.id+" already "+string(m.state))
			default:
				// Late acks are accepted, even after redelivery.
				m.state = Acked
				m.lease = ""
				rec.Acked = append(rec.Acked, m.id)
			}
		}
	}
	if req.Retries != nil {
		for _, r := range *req.Retries {
			if r.LeaseID == nil || *r.LeaseID == "" {
				return nil, fmt.Errorf("every retry needs a lease_id")
			}
			var delay time.Duration
			if r.DelaySeconds != nil {
				d := *r.DelaySeconds
				if d < 0 || d > maxDelay.Seconds() {
					return nil, fmt.Errorf("delay_seconds must be from 0 to %g", maxDelay.Seconds())
				}
				delay = time.Duration(d * float64(time.Second))
			}
			m, ok := q.leases[*r.LeaseID]
			switch {
			case !ok:
				warnings = append(warnings, "unknown lease_id")
			case m.state != Leased || m.lease != *r.LeaseID:
				warnings = append(warnings, "message "+m.id+" is not leased by this lease_id")
			default:
				rec.Retried = append(rec.Retried, Retry{ID: m.id, Delay: delay, Attempts: m.attempts})
				q.fail(m, q.now.Add(delay))
			}
		}
	}
	q.acks = append(q.acks, rec)
	return map[string]any{"ackCount": len(rec.Acked), "retryCount": len(rec.Retried), "warnings": warnings}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomLease is opaque, as the API's JWE lease ids are.
func randomLease() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
