package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/wire"
)

// newKey creates an API key through the API with the test admin key.
func (h *harness) newKey(t *testing.T, req wire.KeyRequest) wire.KeyCreated {
	t.Helper()
	k, err := h.client.CreateKey(ctxT(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("create key %+v: %v", req, err)
	}
	return k
}

func bearerOf(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// TestAPIKeys checks that every /v1 route wants a key with the right
// scope, and that keys can be created, listed and revoked.
func TestAPIKeys(t *testing.T) {
	h := start(t, testConfig(t))
	base := h.URL()
	reader := h.newKey(t, wire.KeyRequest{Name: "reader", Scopes: []string{auth.ScopeRead}})
	uploader := h.newKey(t, wire.KeyRequest{Name: "uploader", Scopes: []string{auth.ScopeUpload}})
	uploadBody := `{"name":"a.mp4","size":10}`

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"no key", "GET", "/v1/assets", "", map[string]string{"Authorization": ""}, 401, "unauthenticated"},
		{"not bearer", "GET", "/v1/assets", "", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthenticated"},
		{"malformed token", "GET", "/v1/assets", "", bearerOf("sk_short"), 401, "unauthenticated"},
		{"unknown token", "GET", "/v1/assets", "", bearerOf(auth.NewToken()), 401, "unauthenticated"},
		{"read key lists", "GET", "/v1/assets", "", bearerOf(reader.Token), 200, ""},
		{"read key cannot upload", "POST", "/v1/uploads", uploadBody, bearerOf(reader.Token), 403, "forbidden"},
		{"upload key uploads", "POST", "/v1/uploads", uploadBody, bearerOf(uploader.Token), 201, ""},
		{"upload key cannot read", "GET", "/v1/assets", "", bearerOf(uploader.Token), 403, "forbidden"},
		{"upload key cannot list keys", "GET", "/v1/keys", "", bearerOf(uploader.Token), 403, "forbidden"},
		{"read key cannot see dead letters", "GET", "/v1/dead-letters", "", bearerOf(reader.Token), 403, "forbidden"},
		{"read key cannot release", "POST", "/v1/assets/x/release", "", bearerOf(reader.Token), 403, "forbidden"},
		{"tus needs a key", "POST", "/v1/tus/", "", map[string]string{"Authorization": "", "Tus-Resumable": "1.0.0", "Upload-Length": "10"}, 401, "unauthenticated"},
		{"thumbnails need a key", "GET", "/v1/assets/x/thumbnail.jpg", "", map[string]string{"Authorization": ""}, 401, "unauthenticated"},
		{"pipelines need a key", "GET", "/v1/pipelines", "", map[string]string{"Authorization": ""}, 401, "unauthenticated"},
		{"bad scope", "POST", "/v1/keys", `{"name":"x","scopes":["root"]}`, nil, 400, "invalid_request"},
		{"no scope", "POST", "/v1/keys", `{"name":"x","scopes":[]}`, nil, 400, "invalid_request"},
		{"negative limit", "POST", "/v1/keys", `{"name":"x","scopes":["read"],"limits":{"burst":-1}}`, nil, 400, "invalid_request"},
		{"health needs none", "GET", "/healthz", "", map[string]string{"Authorization": ""}, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, bytes.NewReader([]byte(tt.body)))
			setHeaders(req, tt.hdr)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e wire.Error
			_ = json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != tt.status || e.Error.Code != tt.code {
				t.Fatalf("%s %s: %d %q (%s), want %d %q", tt.method, tt.path, resp.StatusCode, e.Error.Code, e.Error.Message, tt.status, tt.code)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// The list shows keys without their secrets.
	list, err := h.client.Keys(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Keys) != 3 {
		t.Fatalf("keys: %+v, want the admin key, reader and uploader", list.Keys)
	}
	raw, _ := json.Marshal(list)
	for _, tok := range []string{testToken, reader.Token, uploader.Token} {
		if bytes.Contains(raw, []byte(tok)) || bytes.Contains(raw, []byte(tok[len(auth.TokenPrefix)+6:])) {
			t.Fatal("the key list shows a token")
		}
	}

	// Revoking takes effect on the next request.
	rc := client.New(base, reader.Token)
	if _, err := rc.Assets(ctxT(t, 5*time.Second), "", 1); err != nil {
		t.Fatalf("reader before revoke: %v", err)
	}
	if err := h.client.RevokeKey(ctxT(t, 5*time.Second), reader.ID); err != nil {
		t.Fatal(err)
	}
	_, err = rc.Assets(ctxT(t, 5*time.Second), "", 1)
	if ce, ok := err.(*client.Error); !ok || ce.Status != 401 {
		t.Fatalf("reader after revoke: %v, want 401", err)
	}
	list, _ = h.client.Keys(ctxT(t, 10*time.Second))
	for _, k := range list.Keys {
		if k.ID == reader.ID && k.RevokedAt == nil {
			t.Error("revoked key listed without revoked_at")
		}
	}
	// An admin key cannot revoke itself (and lock everyone out).
	for _, k := range list.Keys {
		if k.Name == "admin (first start)" {
			if err := h.client.RevokeKey(ctxT(t, 5*time.Second), k.ID); err == nil {
				t.Error("the admin key revoked itself")
			}
		}
	}
}

// TestDevMode serves without keys to loopback clients only.
func TestDevMode(t *testing.T) {
	cfg := testConfig(t)
	cfg.Dev = true
	h := start(t, cfg)
	if status, _, _ := request(t, "GET", h.URL()+"/v1/assets", nil, map[string]string{"Authorization": ""}, -1); status != 200 {
		t.Errorf("dev mode, no key: %d, want 200", status)
	}
	// The dashboard asks for usage to learn that no sign-in is needed.
	if status, _, body := request(t, "GET", h.URL()+"/v1/usage", nil, map[string]string{"Authorization": ""}, -1); status != 200 || !strings.Contains(string(body), `"key_id": "dev"`) {
		t.Errorf("dev mode usage, no key: %d %s, want 200 for key dev", status, body)
	}
	// A key that is sent is still checked.
	if status, _, _ := request(t, "GET", h.URL()+"/v1/assets", nil, bearerOf(auth.NewToken()), -1); status != 401 {
		t.Errorf("dev mode, bad key: %d, want 401", status)
	}
	bad := testConfig(t)
	bad.Dev, bad.Addr = true, "0.0.0.0:0"
	if _, err := New(t.Context(), bad, newTestLogger(t)); err == nil {
		t.Error("dev mode started on all interfaces")
	}
}

// TestKeyRateLimit is the loopback load test: a key hammering the API
// past its rate gets 429s with Retry-After while another key, at the
// same time, is served.
func TestKeyRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.IPRate = 0 // all clients share 127.0.0.1 here
	h := start(t, cfg)
	limits := wire.Limits{RatePerSecond: 5, Burst: 10}
	hot := h.newKey(t, wire.KeyRequest{Name: "hot", Scopes: []string{auth.ScopeRead}, Limits: limits})
	calm := h.newKey(t, wire.KeyRequest{Name: "calm", Scopes: []string{auth.ScopeRead}, Limits: limits})

	// Eight clients hammer with the hot key for two seconds.
	const workers, hammer = 8, 2 * time.Second
	var ok, limited, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < hammer {
				req, _ := http.NewRequest("GET", h.URL()+"/v1/pipelines", nil)
				req.Header.Set("Authorization", "Bearer "+hot.Token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					bad.Add(1)
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
					if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
						bad.Add(1)
					}
				default:
					bad.Add(1)
				}
			}
		}()
	}
	// Meanwhile the calm key makes a request every 250 ms (4/s, under
	// its 5/s): every one must succeed.
	calmDone := make(chan []int)
	go func() {
		var codes []int
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				calmDone <- codes
				return
			case <-tick.C:
				status, _, _ := request(t, "GET", h.URL()+"/v1/pipelines", nil, bearerOf(calm.Token), -1)
				codes = append(codes, status)
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)
	close(stop)
	codes := <-calmDone

	// The hot key may get its burst plus what refilled while it ran.
	maxOK := int64(limits.Burst) + int64(elapsed.Seconds()*limits.RatePerSecond) + 1
	t.Logf("hot key: %d ok, %d limited in %s (allowed at most %d); calm key: %v", ok.Load(), limited.Load(), elapsed, maxOK, codes)
	if bad.Load() != 0 {
		t.Errorf("%d requests failed or lacked Retry-After", bad.Load())
	}
	if ok.Load() > maxOK || limited.Load() == 0 {
		t.Errorf("hot key got %d successes (at most %d allowed) and %d 429s", ok.Load(), maxOK, limited.Load())
	}
	for i, c := range codes {
		if c != 200 {
			t.Errorf("calm key request %d: %d, want 200 while the other key is limited", i, c)
		}
	}
}

// TestIPRateLimit limits by client address, from forwarding headers only
// when the peer is a trusted proxy.
func TestIPRateLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.IPRate, cfg.Limits.IPBurst = 0.001, 3
	cfg.Limits.TrustedProxies = []string{"127.0.0.1"}
	h := start(t, cfg)
	get := func(xff string) int {
		status, _, _ := request(t, "GET", h.URL()+"/v1/pipelines", nil, map[string]string{"X-Forwarded-For": xff}, -1)
		return status
	}
	for i := range 3 {
		if s := get("203.0.113.7"); s != 200 {
			t.Fatalf("request %d from 203.0.113.7: %d", i, s)
		}
	}
	if s := get("203.0.113.7"); s != 429 {
		t.Errorf("4th request from 203.0.113.7: %d, want 429", s)
	}
	// A client cannot escape by prepending a spoofed address: the proxy
	// appends the real one, which is what counts.
	if s := get("198.51.100.1, 203.0.113.7"); s != 429 {
		t.Errorf("spoofed XFF: %d, want 429", s)
	}
	if s := get("203.0.113.8"); s != 200 {
		t.Errorf("another client: %d, want 200", s)
	}
}

// TestQuotas refuses work over a key's daily quotas before anything is
// stored, and shows usage at /v1/usage.
func TestQuotas(t *testing.T) {
	h := start(t, testConfig(t))
	k := h.newKey(t, wire.KeyRequest{Name: "quota", Scopes: []string{auth.ScopeUpload, auth.ScopeRead},
		Limits: wire.Limits{AssetsPerDay: 2, BytesPerDay: 1000}})
	c := client.New(h.URL(), k.Token)
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.CreateUpload(ctx, wire.UploadRequest{Name: "a", Size: 600}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateUpload(ctx, wire.UploadRequest{Name: "b", Size: 600})
	if ce, ok := err.(*client.Error); !ok || ce.Status != 429 || ce.Code != "quota_exceeded" {
		t.Fatalf("upload over the byte quota: %v, want 429 quota_exceeded", err)
	}
	_, err = c.TusUpload(ctx, bytes.NewReader(make([]byte, 600)), 600, client.TusOptions{Name: "t"})
	if ce, ok := err.(*client.Error); !ok || ce.Status != 429 {
		t.Fatalf("tus upload over the byte quota: %v, want 429", err)
	}
	if _, err := c.CreateUpload(ctx, wire.UploadRequest{Name: "c", Size: 400}); err != nil {
		t.Fatalf("upload to exactly the quota: %v", err)
	}
	_, err = c.CreateUpload(ctx, wire.UploadRequest{Name: "d", Size: 0})
	if ce, ok := err.(*client.Error); !ok || ce.Code != "quota_exceeded" {
		t.Fatalf("third asset: %v, want quota_exceeded", err)
	}
	u, err := c.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u.Assets != 2 || u.Bytes != 1000 || u.Limits.AssetsPerDay != 2 || u.KeyID != k.ID {
		t.Errorf("usage = %+v, want 2 assets, 1000 bytes of the key's limits", u)
	}
	page, err := h.client.Assets(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Assets) != 2 {
		t.Errorf("%d assets stored, want the 2 accepted ones", len(page.Assets))
	}
	// An admin may read another key's usage; others may not.
	var adminView wire.Usage
	_, _, body := request(t, "GET", h.URL()+"/v1/usage?key="+k.ID, nil, nil, -1)
	decode(t, body, &adminView)
	if adminView.KeyID != k.ID || adminView.Assets != 2 {
		t.Errorf("admin's view of the key's usage: %s", body)
	}
	if status, _, _ := request(t, "GET", h.URL()+"/v1/usage?key=key_other", nil, bearerOf(k.Token), -1); status != 403 {
		t.Errorf("another key's usage with a non-admin key: %d, want 403", status)
	}
	// The retry header says when the quota day ends.
	status, _, _ := request(t, "POST", h.URL()+"/v1/uploads", bytes.NewReader([]byte(`{"name":"e","size":1}`)), bearerOf(k.Token), -1)
	if status != 429 {
		t.Errorf("over quota: %d", status)
	}
}
