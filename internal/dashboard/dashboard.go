// Package dashboard serves the operator's web dashboard: an HTML page,
// a style sheet and ES modules under ui/, embedded in the binary with
// go:embed and served by the gateway at /ui/. The page is a client of
// the public API (/v1, with the API key the operator signs in with, kept
// in the browser's session storage) and of the live update stream
// (/v1/events); it has no server-side state and no routes of its own
// beyond its files.
//
// It is written without JavaScript libraries or a build step: the only
// piece a library would usually provide, HLS playback, is a small Media
// Source Extensions player for Sluice's own fMP4 renditions (ui/player.js),
// which keeps the binary self-contained and the setup to `go build`.
package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed ui
var files embed.FS

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// policy is the Content-Security-Policy of the dashboard's files:
// scripts, styles and connections only from the serving origin (images,
// media and fetches also from origins), no inline code, no plugins, no
// framing.
func policy(origins []string) string {
	extra := ""
	if len(origins) > 0 {
		extra = " " + strings.Join(origins, " ")
	}
	return "default-src 'self'; img-src 'self' data: blob:" + extra + "; media-src 'self' blob:" + extra +
		"; connect-src 'self'" + extra + "; style-src 'self'; script-src 'self'; object-src 'none'; " +
		"base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
}

// Handler serves the dashboard's files under Prefix. mediaOrigins are
// further origins outputs are served from (a CDN or the public URL when
// it differs from the address the dashboard is opened at).
func Handler(mediaOrigins ...string) http.Handler {
	sub, err := fs.Sub(files, "ui")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := map[string]string{}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags["/"+p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	csp := policy(mediaOrigins)
	files := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		// Revalidated on each load (cheap: the ETag is the content's
		// hash), so an upgraded server never runs a stale page.
		h.Set("Cache-Control", "no-cache")
		p := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(Prefix, "/"))
		if strings.HasSuffix(p, "/") {
			p += "index.html"
		}
		if tag, ok := etags[p]; ok {
			h.Set("ETag", tag)
		}
		files.ServeHTTP(w, r)
	})
}
