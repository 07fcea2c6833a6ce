package ai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Bounds on what a remote provider may send back. A transcript of the
// largest accepted upload or a chat completion is far below them; more is
// a fault, and reading it whole would let a broken server exhaust memory.
const (
	maxResponseBytes = 16 << 20
	maxErrorBytes    = 64 << 10
)

// httpClient sends the calls of one remote provider: it adds the bearer
// key, bounds what it reads, and turns every failure into a
// *ProviderError the gateway can classify. The key never appears in what
// it returns.
type httpClient struct {
	provider string
	key      string
	hc       *http.Client
}

func newHTTPClient(provider, key string) *httpClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The gateway bounds concurrency per provider; let that many calls
	// keep their connections.
	tr.MaxIdleConnsPerHost = 32
	// No client-wide timeout: a long transcription legitimately takes
	// minutes, and every call carries the gateway's deadline in its ctx.
	return &httpClient{provider: provider, key: key, hc: &http.Client{Transport: tr}}
}

// envelopeFunc extracts a code and message from an error body in the
// provider's format; ok is false when the body is not in that format.
type envelopeFunc func(body []byte) (code, message string, ok bool)

// post sends body to endpoint and returns the body of a 2xx answer.
func (c *httpClient) post(ctx context.Context, endpoint, contentType string, body []byte, envelope envelopeFunc) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &ProviderError{Provider: c.provider, Message: c.redact("building request: " + err.Error())}
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()

	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	limit := int64(maxErrorBytes)
	if ok {
		limit = maxResponseBytes
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if ok {
		if err != nil {
			// Cut off mid-body: a reset, a deadline, or a server that
			// closed early. Worth another try.
			return nil, c.transportError(ctx, err)
		}
		if int64(len(data)) > limit {
			return nil, &ProviderError{Provider: c.provider, Status: resp.StatusCode,
				Message: fmt.Sprintf("response larger than %d MiB", maxResponseBytes>>20)}
		}
		return data, nil
	}
	// An error answer: what could be read of it is enough to classify it.
	if int64(len(data)) > limit {
		data = data[:limit]
	}
	pe := &ProviderError{
		Provider:   c.provider,
		Status:     resp.StatusCode,
		RetryAfter: parseRetryAfter(resp.Header, time.Now()),
		Temporary:  temporaryHTTPStatus(resp.StatusCode),
	}
	code, msg, found := envelope(data)
	pe.Code, pe.Message = code, msg
	if !found || msg == "" {
		pe.Message = httpStatusMessage(resp.StatusCode, data)
	}
	pe.Code = c.redact(pe.Code)
	pe.Message = c.redact(pe.Message)
	return nil, pe
}

// malformed reports a 2xx answer whose body could not be understood:
// a proxy's HTML page, a cut-off body, JSON of another shape. Temporary,
// since a second try usually gets a proper answer.
func (c *httpClient) malformed(what string, err error) *ProviderError {
	msg := "malformed response"
	if what != "" {
		msg += " (" + what + ")"
	}
	if err != nil {
		msg += ": " + err.Error()
	}
	return &ProviderError{Provider: c.provider, Status: http.StatusOK, Message: c.redact(msg), Temporary: true}
}

// transportError turns a failed round trip into a *ProviderError that
// still unwraps to the cause, so that errors.Is(err,
// context.DeadlineExceeded) holds for a timeout.
func (c *httpClient) transportError(ctx context.Context, err error) error {
	pe := &ProviderError{Provider: c.provider, Temporary: true}
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil:
		// The caller gave up; trying again is the caller's decision.
		pe.Temporary = false
		pe.Message = "call canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		pe.Message = "timed out: " + c.redact(err.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		pe.Message = "truncated response: " + c.redact(err.Error())
	default:
		pe.Message = "request failed: " + c.redact(err.Error())
	}
	return &causeError{pe: pe, cause: err}
}

// redact removes the key from text that came from elsewhere (an error
// body that quotes the request, a transport error).
func (c *httpClient) redact(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, "[redacted]")
}

// causeError is a *ProviderError together with the error that caused it;
// its text is the ProviderError's alone.
type causeError struct {
	pe    *ProviderError
	cause error
}

func (e *causeError) Error() string   { return e.pe.Error() }
func (e *causeError) Unwrap() []error { return []error{e.pe, e.cause} }

// temporaryHTTPStatus says which HTTP statuses are worth retrying: timeouts,
// rate limits and server-side failures.
func temporaryHTTPStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return status >= 500
}

// parseRetryAfter reads how long the server asked callers to wait: OpenAI's
// retry-after-ms, or Retry-After as seconds or an HTTP date. Zero when
// absent, unreadable or already past.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e12 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 || s > 1e9 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// httpStatusMessage describes an error answer that is not in the provider's
// envelope (a proxy's page, an empty body): the status text and the
// start of the body.
func httpStatusMessage(status int, body []byte) string {
	msg := http.StatusText(status)
	if msg == "" {
		msg = "HTTP " + strconv.Itoa(status)
	}
	snippet := strings.Join(strings.Fields(string(body)), " ")
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	if snippet != "" {
		msg += ": " + snippet
	}
	return strings.ToLower(msg[:1]) + msg[1:]
}

// jsonScalarString renders a JSON scalar (a string, a number) as text: error
// codes are strings at OpenAI, numbers at Cloudflare and llama.cpp.
func jsonScalarString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return string(raw)
}

// checkProviderBaseURL validates a configured base URL and returns it without a
// trailing slash.
func checkProviderBaseURL(provider, base string) (string, error) {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("ai: provider %q: base URL must be an http(s) URL", provider)
	}
	if u.User != nil {
		return "", fmt.Errorf("ai: provider %q: base URL must not carry credentials; use the API key setting", provider)
	}
	return base, nil
}

// jsonBytes marshals as a JSON array of integers, the form Workers AI
// models take binary input in ([]byte would marshal as base64).
type jsonBytes []byte

func (b jsonBytes) MarshalJSON() ([]byte, error) {
	out := make([]byte, 0, 2+4*len(b))
	out = append(out, '[')
	for i, v := range b {
		if i > 0 {
			out = append(out, ',')
		}
		out = strconv.AppendUint(out, uint64(v), 10)
	}
	return append(out, ']'), nil
}

// imageMIME returns an image's declared type or sniffs it.
func imageMIME(img Image) string {
	if img.ContentType != "" {
		return img.ContentType
	}
	return http.DetectContentType(img.Data)
}

// remoteSetup is what every HTTP provider's constructor starts with: the
// name and base URL, defaulted and checked, and the models per task, the
// defaults overridden by pc.Models for the tasks that serves accepts.
func remoteSetup(pc ProviderConfig, kind, defName, defBase string, defaults map[Task]string, serves func(Task) bool) (name, base string, models map[Task]string, err error) {
	name = pc.Name
	if name == "" {
		name = defName
	}
	base = pc.BaseURL
	if strings.TrimSpace(base) == "" {
		base = defBase
	}
	if base, err = checkProviderBaseURL(name, base); err != nil {
		return "", "", nil, err
	}
	models = maps.Clone(defaults)
	for t, m := range pc.Models {
		if !serves(t) {
			return "", "", nil, fmt.Errorf("ai: provider %q: %s does not serve task %q", name, kind, t)
		}
		if m = strings.TrimSpace(m); m != "" {
			models[t] = m
		}
	}
	return name, base, models, nil
}
