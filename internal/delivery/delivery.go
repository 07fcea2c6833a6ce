// Package delivery serves stored outputs over HTTP the way a CDN origin
// should: correct Content-Type, strong ETags, Last-Modified, byte ranges
// (including multiple ranges), conditional requests answered with 304, and
// Cache-Control that lets caches keep versioned URLs forever.
//
// Output URLs carry the object's ETag in a "v" query parameter. An output
// can be replaced at the same key (a reprocess), so only a request whose v
// matches the current ETag is marked immutable; any other gets a short
// max-age and revalidates.
//
// Variants (variant.go) renders pictures from an asset's video on demand,
// stores them beside its outputs and serves them the same way.
package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/telemetry"
)

// Prefix is the URL path under which outputs are served.
const Prefix = "/o/"

// servable is the part of a bucket delivery may serve: outputs only, never
// the uploaded sources.
const servable = "assets/"

// Server serves objects from a bucket.
type Server struct {
	bucket  blob.Bucket
	metrics *telemetry.Metrics
	// ShortMaxAge is the Cache-Control max-age, in seconds, for URLs that
	// are not pinned to the current version.
	ShortMaxAge int
	// Access, when set, says how an asset's outputs may be served: held
	// back (a quarantine after moderation), or private. Nil: all public.
	Access func(ctx context.Context, assetID string) (Access, error)
	// Signer signs and checks the tokens of private outputs' URLs.
	Signer *auth.Signer
	now    func() time.Time
}

// Access is how one asset's outputs may be served.
type Access struct {
	// Held says why the outputs are held back; "" when they are not.
	Held string
	// Private outputs are served only through signed URLs (or to
	// authenticated API calls).
	Private bool
}

// Errors of Serve.
var (
	// ErrHeld means the asset's outputs are quarantined.
	ErrHeld = errors.New("delivery: the asset is quarantined")
	// ErrSignatureRequired means the asset is private and the URL is not
	// signed.
	ErrSignatureRequired = errors.New("delivery: this asset's outputs are private; use the signed URL the API gives")
)

// New returns a delivery server for b.
func New(b blob.Bucket, m *telemetry.Metrics) *Server {
	return &Server{bucket: b, metrics: m, ShortMaxAge: 60, now: time.Now}
}

// URL returns the versioned URL of an output under base (scheme and host).
func URL(base, key, etag string) string {
	u := base + Prefix + (&url.URL{Path: key}).EscapedPath()
	if etag != "" {
		u += "?v=" + url.QueryEscape(etag)
	}
	return u
}

// Serve writes the object at key, honouring the request's range and
// conditional headers. key may start with a signed token segment (see
// SignedURL), which private assets require. Errors are returned before
// anything is written: blob.ErrNotFound for a missing or non-servable
// key, ErrSignatureRequired, auth's errors for a bad or expired token.
func (s *Server) Serve(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) error {
	granted := false
	if tok, rest, ok := strings.Cut(key, "/"); ok && strings.HasPrefix(tok, tokenMark) {
		if err := s.verifyToken(tok, assetOf(rest)); err != nil {
			return err
		}
		key, granted = rest, true
	}
	return s.serve(ctx, w, r, key, false, granted)
}

// ServeImmutable is Serve for an object whose key never holds other
// content (a variant, whose key is derived from what it shows): it is
// marked immutable whatever the URL's v. Its callers have authenticated
// the request, so private assets are served too.
func (s *Server) ServeImmutable(ctx context.Context, w http.ResponseWriter, r *http.Request, key string) error {
	return s.serve(ctx, w, r, key, true, true)
}

// assetOf is the asset id in an output key (assets/{id}/...).
func assetOf(key string) string {
	id, _, _ := strings.Cut(strings.TrimPrefix(key, servable), "/")
	return id
}

func (s *Server) serve(ctx context.Context, w http.ResponseWriter, r *http.Request, key string, immutable, granted bool) error {
	if !strings.HasPrefix(key, servable) || path.Clean(key) != key {
		return fmt.Errorf("%w: %s", blob.ErrNotFound, key)
	}
	var acc Access
	if s.Access != nil {
		var err error
		if acc, err = s.Access(ctx, assetOf(key)); err != nil {
			return err
		}
		if acc.Held != "" {
			return fmt.Errorf("%w: %s", ErrHeld, acc.Held)
		}
		if acc.Private && !granted {
			return ErrSignatureRequired
		}
	}
	obj, err := s.bucket.Open(ctx, key)
	if err != nil {
		return err
	}
	defer obj.Close()
	a := obj.Attrs()
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("ETag", `"`+a.ETag+`"`)
	h.Set("X-Content-Type-Options", "nosniff")
	// Shared caches may keep public outputs; private ones only the
	// browser that was given the signed URL.
	scope := "public"
	if acc.Private {
		scope = "private"
	}
	if v := r.URL.Query().Get("v"); immutable || (v != "" && v == a.ETag) {
		h.Set("Cache-Control", scope+", max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", fmt.Sprintf("%s, max-age=%d", scope, s.ShortMaxAge))
	}
	if normalizeRange(w, r, a.Size) {
		return nil
	}
	cw := &countingWriter{ResponseWriter: w}
	// ServeContent handles Range, If-Range, If-None-Match (against the
	// ETag set above), If-Modified-Since and HEAD.
	http.ServeContent(cw, r, "", a.ModTime, obj)
	s.metrics.DeliveryBytes.Add(float64(cw.n))
	return nil
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}
