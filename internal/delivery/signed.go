package delivery

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
)

// tokenMark starts the path segment that carries a signed token:
// /o/~TOKEN/assets/{id}/...
const tokenMark = "~"

// scope is what a delivery token signs: one asset's outputs.
func scope(assetID string) string { return "asset:" + assetID }

// SignedURL returns the URL of a private asset's output key, valid until
// expires. The signature sits in a path segment and covers every output
// of the asset, not only key: an HLS playlist's relative URLs (renditions,
// segments) resolve under the same segment, so players need nothing
// special, while the token opens no other asset.
func (s *Server) SignedURL(base, assetID, key, etag string, expires time.Time) string {
	q := s.Signer.Sign(http.MethodGet, scope(assetID), expires, nil)
	tok := tokenMark + base64.RawURLEncoding.EncodeToString([]byte(q.Encode()))
	u := base + Prefix + tok + "/" + (&url.URL{Path: key}).EscapedPath()
	if etag != "" {
		u += "?v=" + url.QueryEscape(etag)
	}
	return u
}

// verifyToken checks a token segment for the asset.
func (s *Server) verifyToken(tok, assetID string) error {
	if s.Signer == nil || assetID == "" {
		return auth.ErrBadSignature
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(tok, tokenMark))
	if err != nil || len(raw) > 1024 {
		return auth.ErrBadSignature
	}
	q, err := url.ParseQuery(string(raw))
	if err != nil {
		return auth.ErrBadSignature
	}
	_, err = s.Signer.Verify(http.MethodGet, scope(assetID), q, s.now())
	return err
}
