package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/sluice-media/sluice/internal/auth"
)

// scoped wraps a /v1 handler: the request must carry an API key holding
// scope, and the key's rate limit must allow it. The principal travels
// in the request's context.
func (g *Gateway) scoped(scope string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := g.authenticate(r)
		if err != nil {
			writeError(w, r, g.deps.Log, err)
			return
		}
		if !p.Can(scope) {
			writeError(w, r, g.deps.Log, scopeError(scope))
			return
		}
		if err := g.limits.allowKey(p); err != nil {
			writeError(w, r, g.deps.Log, err)
			return
		}
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

// scopedFunc is scoped for a handler function.
func (g *Gateway) scopedFunc(scope string, h http.HandlerFunc) http.Handler {
	return g.scoped(scope, h)
}

// devPrincipal is who an unauthenticated request acts as in dev mode.
var devPrincipal = auth.Principal{Name: "dev", Scopes: []string{auth.ScopeAdmin}}

// authenticate finds the request's principal from its bearer token. In
// dev mode a request with no Authorization header from a loopback peer
// acts as admin; a request that sends a key is checked as always.
func (g *Gateway) authenticate(r *http.Request) (auth.Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if g.cfg.Dev && loopbackPeer(r) {
			return devPrincipal, nil
		}
		return auth.Principal{}, auth.ErrNoKey
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return auth.Principal{}, auth.ErrNoKey
	}
	return g.deps.Keys.Authenticate(r.Context(), strings.TrimSpace(token))
}

// loopbackPeer reports whether the connection itself comes from this
// machine (forwarding headers do not count).
func loopbackPeer(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func scopeError(scope string) error {
	return &scopeErr{scope}
}

// scopeErr is a refusal for lack of a scope; it names the one needed.
type scopeErr struct{ scope string }

func (e *scopeErr) Error() string {
	return "this request needs an API key with the " + e.scope + " scope"
}
func (e *scopeErr) Unwrap() error { return auth.ErrScope }
