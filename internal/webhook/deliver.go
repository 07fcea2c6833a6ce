package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Event types Sluice sends.
const (
	AssetSucceeded = "asset.succeeded"
	AssetFailed    = "asset.failed"
	AssetDegraded  = "asset.degraded"
	AssetDeleted   = "asset.deleted"
)

// Event is one notification. ID stays the same across retries so receivers
// can drop duplicates; it becomes the webhook-id header.
type Event struct {
	ID        string
	Type      string
	Timestamp time.Time
	Data      any
}

// payload is the JSON body Standard Webhooks recommends.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

// Endpoint is a receiver. Every secret signs each request, so during a
// rotation a receiver holding either the old or the new secret accepts it.
type Endpoint struct {
	ID      string
	URL     string
	Secrets [][]byte
}

// Delivery errors. Deliver returns them wrapped; test with errors.Is or
// errors.As (StatusError).
var (
	ErrGone            = errors.New("webhook: endpoint gone")
	ErrTimeout         = errors.New("webhook: endpoint timed out")
	ErrInvalidEndpoint = errors.New("webhook: invalid endpoint")
	ErrInvalidEvent    = errors.New("webhook: invalid event")
)

// StatusError reports a response outside 2xx.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("webhook: endpoint returned %d", e.Code) }

// DefaultSchedule is the Standard Webhooks suggestion: after the first
// attempt, retry after 5s, 5m, 30m, 2h, 5h, 10h and 10h (about 27.5 hours).
var DefaultSchedule = []time.Duration{
	5 * time.Second,
	5 * time.Minute,
	30 * time.Minute,
	2 * time.Hour,
	5 * time.Hour,
	10 * time.Hour,
	10 * time.Hour,
}

// Config controls delivery. The zero value takes the defaults.
type Config struct {
	// Timeout bounds one attempt, from dial to response headers and body
	// drain. Default 15s.
	Timeout time.Duration
	// Schedule[i] is the delay after attempt i+1 fails; when it runs out
	// the event is abandoned. Default DefaultSchedule.
	Schedule []time.Duration
	// Jitter spreads each delay by up to this fraction either way, so
	// receivers that come back at once are not hit by every retry at once.
	// Default 0.2; negative disables.
	Jitter float64
	// MaxRetryAfter caps a receiver's Retry-After. Default 10h.
	MaxRetryAfter time.Duration
	// UserAgent is sent with every request. Default "Sluice-Webhooks/1".
	UserAgent string
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	if c.Schedule == nil {
		c.Schedule = DefaultSchedule
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	if c.MaxRetryAfter == 0 {
		c.MaxRetryAfter = 10 * time.Hour
	}
	if c.UserAgent == "" {
		c.UserAgent = "Sluice-Webhooks/1"
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	if c.Timeout < 0 {
		return errors.New("webhook: timeout must not be negative")
	}
	if c.Jitter >= 1 {
		return errors.New("webhook: jitter must be below 1")
	}
	if c.MaxRetryAfter < 0 {
		return errors.New("webhook: max retry-after must not be negative")
	}
	for _, d := range c.Schedule {
		if d < 0 {
			return errors.New("webhook: schedule delays must not be negative")
		}
	}
	return nil
}

// Attempt is one delivery try as the delivery log shows it.
type Attempt struct {
	EndpointID string
	EventID    string
	EventType  string
	Attempt    int // 1-based
	At         time.Time
	Status     int    // 0 when no response arrived
	Error      string // empty when delivered
	Duration   time.Duration
	// NextRetry is when the next attempt is due; zero when none will be
	// made (delivered, gone, or the schedule ran out).
	NextRetry time.Time
}

// Log records attempts, for the per-endpoint delivery log at the API.
type Log interface {
	Record(ctx context.Context, a Attempt) error
}

// MemoryLog is a Log held in memory, for tests and single-process setups.
type MemoryLog struct {
	mu       sync.Mutex
	attempts []Attempt
}

var _ Log = (*MemoryLog)(nil)

// Record appends a.
func (l *MemoryLog) Record(_ context.Context, a Attempt) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, a)
	return nil
}

// Attempts returns the attempts for endpointID, oldest first; "" means all.
func (l *MemoryLog) Attempts(endpointID string) []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Attempt
	for _, a := range l.attempts {
		if endpointID == "" || a.EndpointID == endpointID {
			out = append(out, a)
		}
	}
	return out
}

// Result describes one attempt.
type Result struct {
	Attempt   int
	Status    int // 0 when no response arrived
	Duration  time.Duration
	Delivered bool // a 2xx arrived
	// Gone is set on 410: the receiver asked to stop; disable the endpoint.
	Gone bool
	// Permanent is set when retrying cannot help (Gone, or an event or
	// endpoint that cannot be sent).
	Permanent bool
	// RetryAfter is the receiver's Retry-After on 429 or 503, capped.
	RetryAfter time.Duration
	// Retry and NextDelay are NextDelay's answer for this attempt.
	Retry     bool
	NextDelay time.Duration
}

// Sender delivers events to endpoints.
type Sender struct {
	cfg    Config
	client *http.Client
	log    Log

	// Replaceable in tests.
	now   func() time.Time
	rand  func() float64
	sleep func(ctx context.Context, d time.Duration) error
}

// NewSender returns a Sender. client may be nil; pass one whose dialer
// refuses private addresses when endpoints are user-supplied. Redirects are
// never followed, since a redirect could carry a signed request elsewhere.
// log may be nil.
func NewSender(cfg Config, client *http.Client, log Log) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &http.Client{}
	if client != nil {
		cp := *client
		c = &cp
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Sender{
		cfg:    cfg.withDefaults(),
		client: c,
		log:    log,
		now:    time.Now,
		rand:   rand.Float64,
		sleep:  sleepCtx,
	}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// maxDrain bounds how much of a response body is read so the connection can
// be reused; receivers' bodies are otherwise ignored.
const maxDrain = 64 << 10

// Deliver makes attempt number attempt (1-based) to send ev to ep, records
// it in the log, and reports the outcome. err is nil only when the event was
// delivered; whether and when to try again is in Result.Retry and
// Result.NextDelay (the same answer as NextDelay), so a durable queue can
// schedule the next attempt.
func (s *Sender) Deliver(ctx context.Context, ep Endpoint, ev Event, attempt int) (Result, error) {
	if attempt < 1 {
		attempt = 1
	}
	start := s.now()
	res, err := s.do(ctx, ep, ev, attempt)
	res.Attempt = attempt
	res.Duration = s.now().Sub(start)
	res.NextDelay, res.Retry = s.NextDelay(attempt, res)

	if s.log != nil {
		a := Attempt{
			EndpointID: ep.ID,
			EventID:    ev.ID,
			EventType:  ev.Type,
			Attempt:    attempt,
			At:         start,
			Status:     res.Status,
			Duration:   res.Duration,
		}
		if err != nil {
			a.Error = err.Error()
		}
		if res.Retry {
			a.NextRetry = start.Add(res.Duration + res.NextDelay)
		}
		// The attempt happened even if ctx ended during it; record it anyway.
		if lerr := s.log.Record(context.WithoutCancel(ctx), a); lerr != nil {
			err = errors.Join(err, fmt.Errorf("webhook: record attempt: %w", lerr))
		}
	}
	return res, err
}

func (s *Sender) do(ctx context.Context, ep Endpoint, ev Event, attempt int) (Result, error) {
	if err := checkEndpoint(ep); err != nil {
		return Result{Permanent: true}, err
	}
	if ev.ID == "" || ev.Type == "" {
		return Result{Permanent: true}, fmt.Errorf("%w: id and type are required", ErrInvalidEvent)
	}
	body, err := json.Marshal(payload{Type: ev.Type, Timestamp: ev.Timestamp.UTC(), Data: ev.Data})
	if err != nil {
		return Result{Permanent: true}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}

	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return Result{Permanent: true}, fmt.Errorf("%w: %w", ErrInvalidEndpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	// The signature's timestamp is the send time, not the event time, so
	// a retry hours later still passes the receiver's tolerance check.
	SignHeaders(req.Header, ep.Secrets, ev.ID, s.now(), body)

	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() == nil && actx.Err() != nil {
			return Result{}, fmt.Errorf("%w after %s", ErrTimeout, s.cfg.Timeout)
		}
		return Result{}, fmt.Errorf("webhook: post: %w", err)
	}
	// A slow or failed body read after the status line does not change the
	// outcome: the status is the receiver's answer.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	resp.Body.Close()

	res := Result{Status: resp.StatusCode}
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		res.Delivered = true
		return res, nil
	case resp.StatusCode == http.StatusGone:
		res.Gone, res.Permanent = true, true
		return res, ErrGone
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		res.RetryAfter = s.retryAfter(resp.Header.Get("Retry-After"))
	}
	return res, &StatusError{Code: resp.StatusCode}
}

func checkEndpoint(ep Endpoint) error {
	if len(ep.Secrets) == 0 {
		return fmt.Errorf("%w: no secrets", ErrInvalidEndpoint)
	}
	u, err := url.Parse(ep.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url must be absolute http or https", ErrInvalidEndpoint)
	}
	return nil
}

// retryAfter parses delay-seconds or an HTTP date, capped at MaxRetryAfter;
// 0 when absent or unparsable.
func (s *Sender) retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		if n > int64(s.cfg.MaxRetryAfter/time.Second) {
			return s.cfg.MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(s.now())
	} else {
		return 0
	}
	return max(0, min(d, s.cfg.MaxRetryAfter))
}

// NextDelay says whether to retry after attempt number attempt (1-based)
// ended with res, and after how long. A Retry-After from the receiver
// replaces the scheduled delay for that retry but still uses up a slot of
// the schedule, so a receiver cannot keep an event alive forever.
func (s *Sender) NextDelay(attempt int, res Result) (time.Duration, bool) {
	if res.Delivered || res.Permanent || attempt < 1 || attempt > len(s.cfg.Schedule) {
		return 0, false
	}
	if res.RetryAfter > 0 {
		return res.RetryAfter, true
	}
	d := s.cfg.Schedule[attempt-1]
	if j := s.cfg.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*s.rand()-1)))
	}
	return d, true
}

// Send delivers ev to ep, retrying in-process along the schedule until it is
// delivered, the endpoint is gone, the schedule runs out or ctx ends. It
// returns the last attempt's result. Prefer driving Deliver from a durable
// queue: a restart loses Send's pending retries.
func (s *Sender) Send(ctx context.Context, ep Endpoint, ev Event) (Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := s.Deliver(ctx, ep, ev, attempt)
		if !res.Retry {
			return res, err
		}
		if serr := s.sleep(ctx, res.NextDelay); serr != nil {
			return res, errors.Join(err, serr)
		}
	}
}
