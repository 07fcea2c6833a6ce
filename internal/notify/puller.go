package notify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/event"
)

// Defaults and limits of the Cloudflare Queues pull API.
const (
	// DefaultBaseURL is Cloudflare's API.
	DefaultBaseURL = "https://api.cloudflare.com/client/v4"
	// DefaultBatchSize is how many messages a pull asks for.
	DefaultBatchSize = 10
	// MaxBatchSize is the most the API hands out in one pull.
	MaxBatchSize = 100
	// DefaultVisibilityTimeout is how long pulled messages stay leased.
	DefaultVisibilityTimeout = time.Minute
	// MaxVisibilityTimeout is the longest lease the API grants.
	MaxVisibilityTimeout = 12 * time.Hour
	// DefaultPollInterval is the pause after an empty pull: the API
	// answers at once when the queue is empty (no long polling).
	DefaultPollInterval = 5 * time.Second
	// DefaultRetryDelay is how long a failed message waits before its
	// second attempt; each later attempt waits twice as long as the one
	// before, up to DefaultMaxRetryDelay.
	DefaultRetryDelay    = 10 * time.Second
	DefaultMaxRetryDelay = 15 * time.Minute
	// MaxRetryDelay is the longest delay_seconds the API accepts.
	MaxRetryDelay = 12 * time.Hour
	// DefaultMaxBackoff caps the wait after a failed API call that
	// named no Retry-After.
	DefaultMaxBackoff = time.Minute
)

const (
	// maxResponseBytes bounds a pull answer: 100 messages of at most
	// 128 KB each, base64-encoded, fit with room to spare.
	maxResponseBytes = 32 << 20
	// maxRetryAfter bounds the wait a Retry-After header may ask for.
	maxRetryAfter = time.Hour
	// ackTries is how often an acknowledgement is sent before its
	// messages are left to come back after their visibility timeout.
	ackTries = 5
)

// Config says which Cloudflare Queue to pull from and how. Zero values
// take the defaults.
type Config struct {
	// AccountID and QueueID name the queue (the queue's id, not its
	// name). Required.
	AccountID string
	QueueID   string
	// Token is an API token with Queues read and write permission
	// (acknowledging a message writes to the queue). Required. The
	// caller reads it from the environment; String and LogValue never
	// show it.
	Token string
	// BaseURL is the API root (default DefaultBaseURL).
	BaseURL string
	// BatchSize is how many messages one pull asks for, 1 to
	// MaxBatchSize (default DefaultBatchSize).
	BatchSize int
	// VisibilityTimeout is how long pulled messages are leased to this
	// consumer; one not acknowledged by then is delivered again. It must
	// outlast handling a whole batch. Millisecond precision, at most
	// MaxVisibilityTimeout (default DefaultVisibilityTimeout).
	VisibilityTimeout time.Duration
	// PollInterval is the pause after an empty pull (default
	// DefaultPollInterval).
	PollInterval time.Duration
	// RetryDelay and MaxRetryDelay shape the delay before a failed
	// message is delivered again: RetryDelay after the first attempt,
	// doubling with each attempt, at most MaxRetryDelay (defaults
	// DefaultRetryDelay, DefaultMaxRetryDelay; whole seconds on the
	// wire).
	RetryDelay    time.Duration
	MaxRetryDelay time.Duration
	// MaxBackoff caps the wait after a failed pull or acknowledgement
	// (default DefaultMaxBackoff); a Retry-After header is honoured
	// beyond it, up to an hour.
	MaxBackoff time.Duration
	// Logger receives poison messages, handler failures and API errors
	// (default slog.Default()).
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.VisibilityTimeout == 0 {
		c.VisibilityTimeout = DefaultVisibilityTimeout
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = DefaultRetryDelay
	}
	if c.MaxRetryDelay == 0 {
		c.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports what is wrong with the configuration, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("notify: "+format, args...)) }
	if strings.TrimSpace(c.AccountID) == "" {
		bad("queue puller needs an account id")
	}
	if strings.TrimSpace(c.QueueID) == "" {
		bad("queue puller needs a queue id")
	}
	if c.Token == "" {
		bad("queue puller needs an API token")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("base url %q is not an http(s) URL", c.BaseURL)
	}
	if c.BatchSize < 1 || c.BatchSize > MaxBatchSize {
		bad("batch size %d is not between 1 and %d", c.BatchSize, MaxBatchSize)
	}
	if c.VisibilityTimeout < time.Millisecond || c.VisibilityTimeout > MaxVisibilityTimeout {
		bad("visibility timeout %s is not between 1ms and %s", c.VisibilityTimeout, MaxVisibilityTimeout)
	}
	if c.PollInterval < 0 {
		bad("negative poll interval %s", c.PollInterval)
	}
	if c.RetryDelay < 0 || c.MaxRetryDelay < c.RetryDelay || c.MaxRetryDelay > MaxRetryDelay {
		bad("retry delays %s..%s are not within 0..%s", c.RetryDelay, c.MaxRetryDelay, MaxRetryDelay)
	}
	if c.MaxBackoff < 0 {
		bad("negative max backoff %s", c.MaxBackoff)
	}
	return errors.Join(errs...)
}

// String describes the configuration without its token.
func (c Config) String() string {
	tok := ""
	if c.Token != "" {
		tok = " token=[redacted]"
	}
	return fmt.Sprintf("cloudflare queue %s/%s at %s batch=%d visibility=%s poll=%s%s",
		c.AccountID, c.QueueID, c.BaseURL, c.BatchSize, c.VisibilityTimeout, c.PollInterval, tok)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return "notify.Config{" + c.String() + "}" }

// LogValue keeps the token out of structured logs.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("account_id", c.AccountID),
		slog.String("queue_id", c.QueueID),
		slog.String("base_url", c.BaseURL),
		slog.Int("batch_size", c.BatchSize),
		slog.Duration("visibility_timeout", c.VisibilityTimeout),
		slog.Bool("token_set", c.Token != ""),
	)
}

// Message is one message pulled from the queue.
type Message struct {
	ID string
	// Body is the message as published: the API's base64 is already
	// undone for the json and bytes content types.
	Body []byte
	// ContentType is the content type it was published with: json,
	// text or bytes.
	ContentType string
	// Attempts counts deliveries of this message, this one included.
	Attempts  int
	Timestamp time.Time
	// Metadata holds the message's string metadata, CF-Content-Type
	// among them.
	Metadata map[string]string

	lease string
	// undecodable says why Body could not be recovered: the message is
	// poison before any handler sees it.
	undecodable error
}

// Handler handles one message. A nil error acknowledges it; an error
// wrapping ErrPoison acknowledges and logs it, since no retry can help;
// any other error marks it for retry after a delay.
type Handler func(ctx context.Context, msg Message) error

// ErrPoison marks a message that can never be handled, such as one that
// does not decode: it is acknowledged and logged rather than retried.
var ErrPoison = errors.New("notify: poison message")

// HandleR2 returns a Handler for R2 event notifications: each message is
// decoded with DecodeR2 and created objects are passed to h. Deletions
// are acknowledged; a message that does not decode is poison.
func HandleR2(h func(ctx context.Context, e event.ObjectCreated) error) Handler {
	return func(ctx context.Context, msg Message) error {
		e, ok, err := DecodeR2(msg.Body)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrPoison, err)
		}
		if !ok {
			return nil
		}
		return h(ctx, e)
	}
}

// APIError is an answer from the Queues API that was not a success.
type APIError struct {
	// Op is "pull" or "ack".
	Op string
	// Status is the HTTP status; 200 when the envelope said
	// "success": false.
	Status int
	// Errors are the envelope's errors, when it had any.
	Errors []APIErrorDetail
	// RetryAfter is what a Retry-After header asked for (0 if none).
	RetryAfter time.Duration
}

// APIErrorDetail is one entry of a Cloudflare API envelope's errors.
type APIErrorDetail struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "notify: queue %s: HTTP %d", e.Op, e.Status)
	if e.Status == http.StatusOK {
		b.WriteString(" with success false")
	}
	for i, d := range e.Errors {
		if i == 0 {
			b.WriteString(":")
		} else {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " [%d] %s", d.Code, d.Message)
	}
	return b.String()
}

// Temporary reports whether trying again later may succeed: rate limits,
// server errors and unsuccessful envelopes are; a refused token or an
// unknown queue is not.
func (e *APIError) Temporary() bool {
	return e.Status == http.StatusOK || e.Status == http.StatusTooManyRequests ||
		e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// Puller consumes a Cloudflare Queue over the HTTP pull API.
type Puller struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	// sleep waits for d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
}

// NewPuller returns a Puller for cfg, calling the API with client
// (http.DefaultClient if nil; give it a timeout).
func NewPuller(cfg Config, client *http.Client) (*Puller, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	if client == nil {
		client = http.DefaultClient
	}
	return &Puller{
		cfg:    cfg,
		client: client,
		log:    cfg.Logger.With("queue", cfg.QueueID),
		sleep:  sleep,
	}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run pulls batches and hands each message to handle, in order, until
// ctx is done; then it returns nil. Messages it had no time to handle
// stay leased and come back after the visibility timeout; those handled
// are still acknowledged. A failed pull or acknowledgement is retried
// with backoff (honouring Retry-After on 429); Run returns an error only
// when the API refuses the token or does not know the queue, which no
// retry mends.
func (p *Puller) Run(ctx context.Context, handle Handler) error {
	failures := 0
	for ctx.Err() == nil {
		msgs, err := p.pull(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ae, ok := errors.AsType[*APIError](err); ok && !ae.Temporary() {
				return err
			}
			failures++
			wait := p.backoff(failures, err)
			p.log.Warn("queue pull failed", "err", err, "retry_in", wait)
			if p.sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		failures = 0
		if len(msgs) == 0 {
			if p.sleep(ctx, p.cfg.PollInterval) != nil {
				return nil
			}
			continue
		}
		if err := p.handleBatch(ctx, msgs, handle); err != nil {
			return err
		}
	}
	return nil
}

type leaseRef struct {
	LeaseID string `json:"lease_id"`
}

type retryRef struct {
	LeaseID      string `json:"lease_id"`
	DelaySeconds int    `json:"delay_seconds"`
}

func (p *Puller) handleBatch(ctx context.Context, msgs []Message, handle Handler) error {
	acks := []leaseRef{}
	retries := []retryRef{}
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		log := p.log.With("message", m.ID, "attempts", m.Attempts)
		if m.lease == "" {
			// Nothing to acknowledge it by: the queue delivers it again
			// until its retries run out.
			log.Error("queue message without a lease id; skipped")
			continue
		}
		if m.undecodable != nil {
			log.Error("dropping poison queue message", "err", m.undecodable)
			acks = append(acks, leaseRef{m.lease})
			continue
		}
		err := handle(ctx, m)
		switch {
		case err == nil:
			acks = append(acks, leaseRef{m.lease})
		case errors.Is(err, ErrPoison):
			log.Error("dropping poison queue message", "err", err)
			acks = append(acks, leaseRef{m.lease})
		case ctx.Err() != nil:
			// Interrupted by shutdown, not failed: leave it leased.
		default:
			delay := p.retryDelay(m.Attempts)
			log.Warn("queue message failed; retrying", "err", err, "delay", delay)
			retries = append(retries, retryRef{m.lease, int(delay / time.Second)})
		}
	}
	if len(acks) == 0 && len(retries) == 0 {
		return nil
	}
	// Work done must be acknowledged even when shutting down, or it is
	// done again; the lease bounds how long that is worth trying.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.VisibilityTimeout)
	defer cancel()
	body, err := json.Marshal(struct {
		Acks    []leaseRef `json:"acks"`
		Retries []retryRef `json:"retries"`
	}{acks, retries})
	if err != nil {
		return fmt.Errorf("notify: encoding acknowledgement: %w", err)
	}
	for try := 1; ; try++ {
		err := p.call(actx, "ack", body, nil)
		if err == nil {
			return nil
		}
		if ae, ok := errors.AsType[*APIError](err); ok && !ae.Temporary() {
			return err
		}
		if try == ackTries || actx.Err() != nil {
			p.log.Error("queue acknowledgement failed; its messages will be delivered again",
				"err", err, "acks", len(acks), "retries", len(retries))
			return nil
		}
		wait := p.backoff(try, err)
		p.log.Warn("queue acknowledgement failed", "err", err, "retry_in", wait)
		if p.sleep(actx, wait) != nil {
			return nil
		}
	}
}

// retryDelay is RetryDelay doubled for each attempt after the first,
// capped, rounded up to the API's whole seconds.
func (p *Puller) retryDelay(attempts int) time.Duration {
	d := p.cfg.RetryDelay
	for i := 1; i < attempts && d < p.cfg.MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, p.cfg.MaxRetryDelay)
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}

// backoff is the wait before the next call after the failures-th failure
// in a row: what Retry-After asked for, else 1s doubling up to
// MaxBackoff.
func (p *Puller) backoff(failures int, err error) time.Duration {
	if ae, ok := errors.AsType[*APIError](err); ok && ae.RetryAfter > 0 {
		return min(ae.RetryAfter, maxRetryAfter)
	}
	d := time.Second
	for i := 1; i < failures && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, p.cfg.MaxBackoff)
}

type wireMessage struct {
	ID          string         `json:"id"`
	Body        *string        `json:"body"`
	Attempts    float64        `json:"attempts"`
	LeaseID     string         `json:"lease_id"`
	Metadata    map[string]any `json:"metadata"`
	TimestampMs float64        `json:"timestamp_ms"`
}

func (p *Puller) pull(ctx context.Context) ([]Message, error) {
	body, err := json.Marshal(map[string]int64{
		"batch_size":            int64(p.cfg.BatchSize),
		"visibility_timeout_ms": p.cfg.VisibilityTimeout.Milliseconds(),
	})
	if err != nil {
		return nil, fmt.Errorf("notify: encoding pull: %w", err)
	}
	var result struct {
		Messages []wireMessage `json:"messages"`
	}
	if err := p.call(ctx, "pull", body, &result); err != nil {
		return nil, err
	}
	msgs := make([]Message, 0, len(result.Messages))
	for _, w := range result.Messages {
		msgs = append(msgs, fromWire(w))
	}
	return msgs, nil
}

// fromWire recovers a message as published. The API base64-encodes the
// json and bytes content types (json is the default) and sends text as
// it is; v8, the Workers runtime's own serialization, cannot be read
// outside it.
func fromWire(w wireMessage) Message {
	m := Message{
		ID:        w.ID,
		Attempts:  int(w.Attempts),
		Timestamp: time.UnixMilli(int64(w.TimestampMs)),
		Metadata:  map[string]string{},
		lease:     w.LeaseID,
	}
	for k, v := range w.Metadata {
		if s, ok := v.(string); ok {
			m.Metadata[k] = s
		}
	}
	m.ContentType = m.Metadata["CF-Content-Type"]
	if m.ContentType == "" {
		m.ContentType = "json"
	}
	if w.Body == nil {
		m.undecodable = errors.New("message has no body")
		return m
	}
	switch m.ContentType {
	case "text":
		m.Body = []byte(*w.Body)
	case "json", "bytes":
		b, err := base64.StdEncoding.DecodeString(*w.Body)
		if err != nil {
			m.undecodable = fmt.Errorf("%s body is not base64: %w", m.ContentType, err)
		}
		m.Body = b
	default:
		m.undecodable = fmt.Errorf("content type %q cannot be decoded by a pull consumer", m.ContentType)
	}
	return m
}

// call POSTs body to .../messages/{op} and decodes the envelope's result
// into out (if not nil).
func (p *Puller) call(ctx context.Context, op string, body []byte, out any) error {
	u := fmt.Sprintf("%s/accounts/%s/queues/%s/messages/%s", p.cfg.BaseURL,
		url.PathEscape(p.cfg.AccountID), url.PathEscape(p.cfg.QueueID), op)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("notify: queue %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("notify: queue %s: %s", op, p.redact(err.Error()))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("notify: queue %s: reading answer: %w", op, err)
	}
	if len(data) > maxResponseBytes {
		return fmt.Errorf("notify: queue %s: answer over %d bytes", op, maxResponseBytes)
	}
	var env struct {
		Success *bool            `json:"success"`
		Errors  []APIErrorDetail `json:"errors"`
		Result  json.RawMessage  `json:"result"`
	}
	jsonErr := json.Unmarshal(data, &env)
	if resp.StatusCode != http.StatusOK || (jsonErr == nil && env.Success != nil && !*env.Success) {
		ae := &APIError{Op: op, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		if jsonErr == nil {
			ae.Errors = env.Errors
			for i := range ae.Errors {
				ae.Errors[i].Message = p.redact(ae.Errors[i].Message)
			}
		}
		return ae
	}
	if jsonErr != nil {
		return fmt.Errorf("notify: queue %s: answer is not a JSON envelope: %w", op, jsonErr)
	}
	if env.Success == nil {
		return fmt.Errorf("notify: queue %s: answer has no success field", op)
	}
	if out == nil || len(env.Result) == 0 || string(env.Result) == "null" {
		return nil
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("notify: queue %s: malformed result: %w", op, err)
	}
	return nil
}

// redact keeps the token out of text that came from elsewhere.
func (p *Puller) redact(s string) string {
	return strings.ReplaceAll(s, p.cfg.Token, "[redacted]")
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		if s < 0 {
			return 0
		}
		if s > int(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(time.Until(t), 0), maxRetryAfter)
	}
	return 0
}
