// Package aitest runs fake inference servers for tests: OpenAI's HTTP
// API (NewOpenAI) and Cloudflare Workers AI's REST API (NewWorkersAI).
// Each answers in its provider's documented wire format, checks the
// request as the real service would (bearer token, multipart fields,
// model, data URLs, byte arrays) and answers a malformed one with the
// provider's error envelope, so that a provider sending the wrong shape
// fails its test.
//
// Tests steer the fakes with faults queued for the next calls (an HTTP
// status in the provider's error envelope, 429 with Retry-After, a slow
// or hanging answer, a body that is not JSON, a body cut off mid-way) and
// read back the calls they received.
//
// The package imports nothing of Sluice, so that tests inside package ai
// can use it too.
package aitest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Segment is a timed piece of a transcript, in seconds.
type Segment struct {
	Start, End float64
	Text       string
}

// Transcript is what a fake speech model hears.
type Transcript struct {
	Language string // ISO 639-1
	Duration float64
	Segments []Segment
}

// Text is the transcript's segments joined.
func (t Transcript) Text() string {
	texts := make([]string, 0, len(t.Segments))
	for _, s := range t.Segments {
		texts = append(texts, s.Text)
	}
	return strings.Join(texts, " ")
}

// Label is a class with a score in [0, 1].
type Label struct {
	Name  string
	Score float64
}

// SampleTranscript is what the fakes transcribe when a test sets no
// transcript.
func SampleTranscript() Transcript {
	return Transcript{
		Language: "en",
		Duration: 6.2,
		Segments: []Segment{
			{Start: 0, End: 2.4, Text: "Welcome to the Sluice demo."},
			{Start: 2.4, End: 6.2, Text: "Today we upload a video and watch it get processed."},
		},
	}
}

// SampleLabels are what the fakes see in an image when a test sets no
// labels.
func SampleLabels() []Label {
	return []Label{{"golden retriever", 0.91}, {"tennis ball", 0.62}, {"lawn", 0.35}}
}

// Texts the fakes generate when a test sets none.
const (
	SampleDescription = "A golden retriever chases a tennis ball across a sunny lawn."
	SampleSummary     = "A short demo of uploading a video to Sluice and watching it being processed."
)

// Fault is what a fake does with a call instead of answering it
// normally. Faults are queued with Fail and used in order, one per call.
type Fault struct {
	// Status answers with this HTTP status and the provider's error
	// envelope, carrying Code and Message (or the provider's usual ones
	// for the status).
	Status  int
	Code    string
	Message string
	// RetryAfter is sent verbatim as the Retry-After header: seconds
	// ("3") or an HTTP date (see RetryAfterDate).
	RetryAfter string
	// Body replaces the error envelope; with Status 0 it is sent with
	// 200 OK (e.g. a Workers AI envelope with success false).
	Body string
	// Malformed answers 200 OK, Content-Type application/json, with an
	// HTML error page, as a misbehaving proxy does.
	Malformed bool
	// Truncated sends the normal answer's headers and half its body,
	// then closes the connection.
	Truncated bool
	// Delay holds the answer this long (less if the client gives up).
	Delay time.Duration
	// Hang never answers: the call ends when the client gives up or the
	// test ends.
	Hang bool
}

// RetryAfterDate is a Retry-After value in HTTP-date form, d from now.
func RetryAfterDate(d time.Duration) string {
	return time.Now().Add(d).UTC().Format(http.TimeFormat)
}

// Request is a call a fake received.
type Request struct {
	// Route is what was called: "transcriptions", "chat" or
	// "moderations" for OpenAI; the model for Workers AI.
	Route  string
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Model is the model the call named (in the path or the body).
	Model string
	// Form and Files hold a multipart body's fields and files.
	Form  map[string][]string
	Files map[string]File
	// JSON is the body decoded, when it was JSON.
	JSON any
	// Images are the images the call carried, decoded (data URLs, byte
	// arrays, raw bodies).
	Images [][]byte
	// Faulted is true when the call got a queued fault, not an answer.
	Faulted bool
	// PromptTokens and CompletionTokens are what the fake billed.
	PromptTokens, CompletionTokens int
}

// File is an uploaded multipart file.
type File struct {
	Filename    string
	ContentType string
	Data        []byte
}

// reply is a fake's answer before faults and delays apply.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// core is what both fakes share: the server, the fault queue and the
// record of calls.
type core struct {
	t    testing.TB
	done chan struct{}

	// errorReply renders the provider's error envelope.
	errorReply func(status int, code, message string) reply
	// auth checks a call's credentials; a non-nil reply refuses it.
	auth func(r *http.Request) *reply

	mu       sync.Mutex
	faults   []Fault
	latency  time.Duration
	requests []Request
}

func newCore(t testing.TB) *core {
	return &core{t: t, done: make(chan struct{})}
}

// start serves mux and stops it when the test ends, releasing hung calls
// first so that closing does not wait for them.
func (c *core) start(mux http.Handler) *httptest.Server {
	srv := httptest.NewServer(mux)
	c.t.Cleanup(func() {
		close(c.done)
		srv.Close()
	})
	return srv
}

// Fail queues f for the next n calls.
func (c *core) Fail(n int, f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		c.faults = append(c.faults, f)
	}
}

// ClearFaults drops the faults not yet served: the server answers
// normally again.
func (c *core) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = nil
}

// FailNext answers the next n calls with status in the provider's error
// envelope.
func (c *core) FailNext(n, status int) { c.Fail(n, Fault{Status: status}) }

// RateLimit answers the next n calls with 429 and the given Retry-After
// header value ("" for none).
func (c *core) RateLimit(n int, retryAfter string) {
	c.Fail(n, Fault{Status: http.StatusTooManyRequests, RetryAfter: retryAfter})
}

// SetLatency delays every answer by d (less if the client gives up).
func (c *core) SetLatency(d time.Duration) {
	c.mu.Lock()
	c.latency = d
	c.mu.Unlock()
}

// Calls is how many calls the fake has received, faulted ones included.
func (c *core) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.requests)
}

// CallsTo is how many calls went to route (see Request.Route).
func (c *core) CallsTo(route string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.requests {
		if r.Route == route {
			n++
		}
	}
	return n
}

// Requests returns the calls received so far, in order.
func (c *core) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.requests...)
}

// LastRequest returns the latest call, failing the test if there was
// none.
func (c *core) LastRequest() Request {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.requests) == 0 {
		c.t.Fatalf("aitest: no request received")
	}
	return c.requests[len(c.requests)-1]
}

// handle wraps a route's answer with recording, auth, faults and delays.
func (c *core) handle(route func(r *http.Request) string, answer func(r *http.Request, rec *Request) reply) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		rec := Request{Route: route(r), Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body}

		c.mu.Lock()
		idx := len(c.requests)
		c.requests = append(c.requests, rec)
		var f Fault
		faulted := len(c.faults) > 0
		if faulted {
			f, c.faults = c.faults[0], c.faults[1:]
		}
		delay := c.latency
		c.mu.Unlock()

		if faulted && f.Hang {
			c.wait(r.Context(), -1)
			return
		}
		if faulted && f.Delay > 0 {
			delay = f.Delay
		}
		if delay > 0 && !c.wait(r.Context(), delay) {
			return
		}

		var rep reply
		switch {
		case faulted && f.Status != 0:
			rep = c.errorReply(f.Status, f.Code, f.Message)
			if f.Body != "" {
				rep.body = []byte(f.Body)
			}
		case faulted && f.Body != "":
			rep = reply{status: http.StatusOK, body: []byte(f.Body)}
		default:
			if refused := c.auth(r); refused != nil {
				rep = *refused
			} else {
				rep = answer(r, &rec)
			}
		}
		if faulted && (f.Status != 0 || f.Body != "" || f.Malformed || f.Truncated) {
			rec.Faulted = true
		}
		c.mu.Lock()
		c.requests[idx] = rec
		c.mu.Unlock()

		if rep.header == nil {
			rep.header = http.Header{}
		}
		if rep.header.Get("Content-Type") == "" {
			rep.header.Set("Content-Type", "application/json")
		}
		if faulted && f.RetryAfter != "" {
			rep.header.Set("Retry-After", f.RetryAfter)
		}
		switch {
		case faulted && f.Malformed:
			rep.status = http.StatusOK
			rep.body = []byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
		case faulted && f.Truncated:
			c.truncate(w, rep)
			return
		}
		for k, v := range rep.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rep.status)
		w.Write(rep.body)
	}
}

// wait sleeps for d (forever if d < 0) and reports whether it slept the
// whole time, rather than the client going away or the test ending.
func (c *core) wait(ctx context.Context, d time.Duration) bool {
	var timeout <-chan time.Time
	if d >= 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-ctx.Done():
	case <-c.done:
	}
	return false
}

// truncate writes rep's status line and headers, declaring its full
// length, then half its body, and closes the connection.
func (c *core) truncate(w http.ResponseWriter, rep reply) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		c.t.Errorf("aitest: cannot truncate: connection cannot be hijacked")
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		c.t.Errorf("aitest: cannot truncate: %v", err)
		return
	}
	defer conn.Close()
	writeTruncated(buf, rep)
}

func writeTruncated(buf *bufio.ReadWriter, rep reply) {
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rep.status, http.StatusText(rep.status))
	rep.header.Set("Content-Length", fmt.Sprint(len(rep.body)))
	rep.header.Set("Connection", "close")
	rep.header.Write(buf)
	buf.WriteString("\r\n")
	buf.Write(rep.body[:len(rep.body)/2])
	buf.Flush()
}

// bearer reports whether r carries "Authorization: Bearer key", and the
// token it does carry.
func bearer(r *http.Request, key string) (string, bool) {
	token, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return token, found && token == key
}

// maskKey shows a key as OpenAI's 401 messages do: its start and end.
func maskKey(k string) string {
	if len(k) <= 8 {
		return strings.Repeat("*", len(k))
	}
	return k[:3] + strings.Repeat("*", 4) + k[len(k)-4:]
}
