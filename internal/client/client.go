// Package client talks to a Sluice server's HTTP API: it creates uploads
// and sends their bytes (a signed PUT, or tus for large files, resuming
// after interruptions), and reads assets. The CLI is built on it.
//
// The tus client here is small and hand-written: the Go tus clients on the
// module proxy are unmaintained, and Sluice needs only the core protocol
// plus creation, against its own server.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/wire"
)

// Client is a Sluice API client.
type Client struct {
	Base string // e.g. http://127.0.0.1:8080
	// Key is the API key sent with every request to Base (never to other
	// hosts, such as a bucket a signed upload URL points at).
	Key  string
	HTTP *http.Client
}

// New returns a client for the server at base, authenticating with key
// ("" for a server in dev mode).
func New(base, key string) *Client {
	return &Client{Base: strings.TrimRight(base, "/"), Key: key, HTTP: &http.Client{}}
}

// send sends req, with the API key when it goes to the server.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.Key != "" && strings.HasPrefix(req.URL.String(), c.Base+"/") && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+c.Key)
	}
	return c.HTTP.Do(req)
}

// Error is an error response from the server.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("server: %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) do(req *http.Request, out any) error {
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func decodeError(resp *http.Response) error {
	var body wire.Error
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &body) == nil && body.Error.Code != "" {
		return &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
	}
	return &Error{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(data))}
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

// Asset fetches one asset.
func (c *Client) Asset(ctx context.Context, id string) (wire.Asset, error) {
	var a wire.Asset
	err := c.getJSON(ctx, "/v1/assets/"+url.PathEscape(id), &a)
	return a, err
}

// MetricsHistory is the dashboard's chart data: the last hour of derived
// metrics, of the serving process and those that report to it.
func (c *Client) MetricsHistory(ctx context.Context) (wire.MetricsHistory, error) {
	var h wire.MetricsHistory
	err := c.getJSON(ctx, "/v1/metrics/history", &h)
	return h, err
}

// Assets lists assets, newest first.
func (c *Client) Assets(ctx context.Context, cursor string, limit int) (wire.AssetList, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var l wire.AssetList
	err := c.getJSON(ctx, "/v1/assets?"+q.Encode(), &l)
	return l, err
}

// DeadLetters lists dead letters after a sequence.
func (c *Client) DeadLetters(ctx context.Context, after uint64) (wire.DeadLetterList, error) {
	var l wire.DeadLetterList
	err := c.getJSON(ctx, fmt.Sprintf("/v1/dead-letters?after=%d", after), &l)
	return l, err
}

// Wait polls an asset until it succeeds or fails, or ctx ends.
func (c *Client) Wait(ctx context.Context, id string, every time.Duration) (wire.Asset, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		a, err := c.Asset(ctx, id)
		if err != nil {
			return a, err
		}
		if a.Done() {
			return a, nil
		}
		select {
		case <-ctx.Done():
			return a, ctx.Err()
		case <-t.C:
		}
	}
}

// postJSON sends in as JSON and decodes the answer into out.
func (c *Client) postJSON(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.do(req, out)
}

// CreateKey creates an API key (admin scope). The token in the answer is
// shown only this once.
func (c *Client) CreateKey(ctx context.Context, r wire.KeyRequest) (wire.KeyCreated, error) {
	var k wire.KeyCreated
	return k, c.postJSON(ctx, http.MethodPost, "/v1/keys", r, &k)
}

// Keys lists the API keys (admin scope).
func (c *Client) Keys(ctx context.Context) (wire.KeyList, error) {
	var l wire.KeyList
	return l, c.getJSON(ctx, "/v1/keys", &l)
}

// RevokeKey revokes an API key (admin scope).
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.postJSON(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, nil)
}

// Usage returns the calling key's use today against its quotas.
func (c *Client) Usage(ctx context.Context) (wire.Usage, error) {
	var u wire.Usage
	return u, c.getJSON(ctx, "/v1/usage", &u)
}

// DeleteAsset deletes an asset with its source, outputs and records.
func (c *Client) DeleteAsset(ctx context.Context, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.Base+"/v1/assets/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	return c.do(req, nil)
}

// Reprocess asks for the asset's pipeline to run again: the given steps,
// or all of them.
func (c *Client) Reprocess(ctx context.Context, id string, steps []string) (wire.Asset, error) {
	body, err := json.Marshal(wire.ReprocessRequest{Steps: steps})
	if err != nil {
		return wire.Asset{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/assets/"+url.PathEscape(id)+"/reprocess", bytes.NewReader(body))
	if err != nil {
		return wire.Asset{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var a wire.Asset
	return a, c.do(req, &a)
}

// Pipelines lists the server's pipelines.
func (c *Client) Pipelines(ctx context.Context) (wire.PipelineList, error) {
	var l wire.PipelineList
	return l, c.getJSON(ctx, "/v1/pipelines", &l)
}

// CreateUpload asks for a signed upload URL.
func (c *Client) CreateUpload(ctx context.Context, r wire.UploadRequest) (wire.Upload, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return wire.Upload{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/uploads", bytes.NewReader(body))
	if err != nil {
		return wire.Upload{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	var up wire.Upload
	return up, c.do(req, &up)
}

// Put sends size bytes from body to a signed upload URL.
func (c *Client) Put(ctx context.Context, up wire.Upload, body io.Reader, size int64) (wire.UploadResult, error) {
	req, err := http.NewRequestWithContext(ctx, up.Method, up.URL, body)
	if err != nil {
		return wire.UploadResult{}, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	for k, v := range up.Headers {
		req.Header.Set(k, v)
	}
	var res wire.UploadResult
	return res, c.do(req, &res)
}

// ErrTooManyRetries means a tus upload kept failing.
var ErrTooManyRetries = errors.New("client: upload failed too many times")
