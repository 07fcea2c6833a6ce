package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/wire"
)

// TestHostileRequests sends requests built to hurt: each is refused with
// a clear status and error code, nothing is stored, and the server goes
// on serving.
func TestHostileRequests(t *testing.T) {
	cfg := testConfig(t)
	cfg.ReadHeaderTimeout = time.Second
	cfg.Upload.MaxSize = 1 << 20
	h := start(t, cfg)
	base := h.URL()
	deep := strings.Repeat("[", 200000) + strings.Repeat("]", 200000)
	manyKeys := "{" + strings.Repeat(`"a":1,`, 150000) + `"b":1}`

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"JSON nested 200k deep", "POST", "/v1/uploads", deep, nil, 400, "invalid_json"},
		{"JSON over 1 MiB", "POST", "/v1/uploads", `{"name":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, "too_large"},
		{"JSON with 150k keys", "POST", "/v1/uploads", manyKeys, nil, 400, "invalid_json"},
		{"JSON unknown field", "POST", "/v1/uploads", `{"name":"a","size":1,"admin":true}`, nil, 400, "invalid_json"},
		{"JSON trailing document", "POST", "/v1/uploads", `{"name":"a","size":1}{"name":"b"}`, nil, 400, "invalid_json"},
		{"declared size over the limit", "POST", "/v1/uploads", `{"name":"a","size":2097152}`, nil, 413, "too_large"},
		{"negative size", "POST", "/v1/uploads", `{"name":"a","size":-1}`, nil, 400, "invalid_request"},
		{"bad checksum", "POST", "/v1/uploads", `{"name":"a","size":1,"sha256":"zz"}`, nil, 400, "invalid_request"},
		{"metadata key with control characters", "POST", "/v1/uploads", `{"name":"a","size":1,"metadata":{"a\u0000b":"x"}}`, nil, 400, "invalid_request"},
		{"too many metadata pairs", "POST", "/v1/uploads", `{"name":"a","size":1,"metadata":{` + manyPairs(40) + `}}`, nil, 400, "invalid_request"},
		{"tus without length", "POST", "/v1/tus/", "", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1"}, 400, ""},
		{"tus over the limit", "POST", "/v1/tus/", "", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "2097152"}, 413, ""},
		{"tus partial upload", "POST", "/v1/tus/", "", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Concat": "partial"}, 400, ""},
		{"tus concatenation of others' uploads", "POST", "/v1/tus/", "", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": "final;/v1/tus/a /v1/tus/b"}, 404, ""},
		{"output path traversal", "GET", "/o/assets/../secrets/signing.key", "", nil, 404, "not_found"},
		{"output escaped traversal", "GET", "/o/assets/%2e%2e/%2e%2e/secrets/signing.key", "", nil, 404, "not_found"},
		{"uploaded source is not served", "GET", "/o/uploads/x", "", nil, 404, "not_found"},
		{"asset id traversal", "GET", "/v1/assets/..%2f..%2fsecrets", "", nil, 404, "not_found"},
		{"dead letter seq not a number", "POST", "/v1/dead-letters/1e9999/replay", "", nil, 400, "invalid_request"},
		{"list limit out of range", "GET", "/v1/assets?limit=100000", "", nil, 400, "invalid_request"},
		{"cursor garbage", "GET", "/v1/assets?cursor=%00%ff", "", nil, 400, "invalid_request"},
		{"thumbnail absurd size", "GET", "/v1/assets/x/thumbnail.jpg?width=100000", "", nil, 400, "invalid_parameter"},
		{"ingest of a file URL", "POST", "/v1/assets", `{"source_url":"file:///etc/passwd"}`, nil, 400, "invalid_request"},
		{"ingest of the metadata service", "POST", "/v1/assets", `{"source_url":"http://169.254.169.254/latest/meta-data/"}`, nil, 400, "source_refused"},
		{"webhook to loopback", "POST", "/v1/webhooks", `{"url":"http://127.0.0.1:8080/"}`, nil, 400, "url_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code, body := request(t, tt.method, base+tt.path, strings.NewReader(tt.body), tt.hdr, -1)
			if status != tt.status || (tt.code != "" && code != tt.code) {
				t.Errorf("%d %s (%.200s), want %d %s", status, code, body, tt.status, tt.code)
			}
		})
	}

	// A file name that climbs directories is kept as its last element.
	up, err := h.client.CreateUpload(ctxT(t, 10*time.Second), wire.UploadRequest{Name: "../../etc/passwd\u0000.mp4", Size: 8})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.client.Asset(ctxT(t, 10*time.Second), up.AssetID)
	if err != nil || a.Name != "passwd.mp4" {
		t.Errorf("stored name = %q (%v), want passwd.mp4", a.Name, err)
	}

	t.Run("oversized headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 200<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("200 KiB of headers: %s, want 431", resp.Status)
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		// A client that never finishes its headers is cut off after the
		// header timeout, while others are served meanwhile.
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		if status, _, _ := request(t, "GET", base+"/healthz", nil, nil, -1); status != 200 {
			t.Errorf("healthz during the slow request: %d", status)
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("the slow request got %s", resp.Status)
			}
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server kept a half-sent request open for %s", time.Since(start))
		}
	})

	t.Run("slow body", func(t *testing.T) {
		// A body that stops arriving does not hold a handler: the JSON
		// read has its own deadline (here the whole request is cut).
		conn, err := net.Dial("tcp", h.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + testToken +
			"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":"
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		if status, _, _ := request(t, "GET", base+"/healthz", nil, nil, -1); status != 200 {
			t.Errorf("healthz during the slow body: %d", status)
		}
	})

	// Nothing hostile left anything in the bucket, and the server serves.
	if objs, err := h.bucket.List(ctxT(t, 10*time.Second), ""); err != nil || len(objs) != 0 {
		t.Errorf("hostile requests stored objects: %v %v", objs, err)
	}
	if status, _, _ := request(t, "GET", base+"/readyz", nil, nil, -1); status != 200 {
		t.Errorf("readyz after the hostile requests: %d", status)
	}
}

func manyPairs(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strings.Repeat("x", i) + `":"v"`)
	}
	return b.String()
}
