package dashboard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler("https://cdn.example.com")
	get := func(path string, hdr map[string]string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}

	page := get("/ui/", nil)
	if page.Code != http.StatusOK || !strings.Contains(page.Body.String(), `<script type="module" src="app.js">`) {
		t.Fatalf("GET /ui/: %d %.200s", page.Code, page.Body)
	}
	csp := page.Header().Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self';", "frame-ancestors 'none'", "media-src 'self' blob: https://cdn.example.com;"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows unsafe code: %q", csp)
	}
	etag := page.Header().Get("ETag")
	if etag == "" || page.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /ui/: ETag %q, Cache-Control %q", etag, page.Header().Get("Cache-Control"))
	}
	if again := get("/ui/", map[string]string{"If-None-Match": etag}); again.Code != http.StatusNotModified {
		t.Errorf("revalidation: %d, want 304", again.Code)
	}

	js := get("/ui/app.js", nil)
	if js.Code != http.StatusOK || !strings.HasPrefix(js.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("GET /ui/app.js: %d %q", js.Code, js.Header().Get("Content-Type"))
	}
	if js.Header().Get("ETag") == etag {
		t.Error("two files share an ETag")
	}
	for _, p := range []string{"/ui/missing.js", "/ui/../dashboard.go", "/ui/%2e%2e/dashboard.go"} {
		if w := get(p, nil); w.Code != http.StatusNotFound && w.Code != http.StatusMovedPermanently {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
}
