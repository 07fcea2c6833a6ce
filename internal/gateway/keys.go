package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/wire"
)

// UsageReader reads quota use.
type UsageReader interface {
	GetUsage(ctx context.Context, keyID, day string) (store.Usage, error)
}

func (g *Gateway) createKey(w http.ResponseWriter, r *http.Request) {
	var req wire.KeyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	rec, token, err := g.deps.Keys.Create(r.Context(), auth.NewKey{
		Name: req.Name, Scopes: req.Scopes, Limits: store.Limits(req.Limits),
	})
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.Header().Set("Location", "/v1/keys/"+rec.ID)
	writeJSON(w, http.StatusCreated, wire.KeyCreated{Key: KeyView(rec), Token: token})
}

func (g *Gateway) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := g.deps.Keys.List(r.Context())
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	out := wire.KeyList{Keys: []wire.Key{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, KeyView(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if p, _ := auth.PrincipalFrom(r.Context()); p.KeyID == id {
		writeError(w, r, g.deps.Log, &httpError{http.StatusConflict, "conflict", "a key cannot revoke itself; use another admin key"})
		return
	}
	if err := g.deps.Keys.Revoke(r.Context(), id); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// KeyView renders a key as the API shows it (never its hash).
func KeyView(k store.Key) wire.Key {
	return wire.Key{
		ID: k.ID, Name: k.Name, Prefix: k.Prefix, Scopes: k.Scopes, Limits: wire.Limits(k.Limits),
		CreatedAt: k.CreatedAt, RevokedAt: timePtr(k.RevokedAt),
	}
}

// usage shows the calling key's use today. An admin key may ask for
// another key's with ?key=ID.
func (g *Gateway) usage(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.PrincipalFrom(r.Context())
	id, limits := p.KeyID, p.Limits
	if other := r.URL.Query().Get("key"); other != "" && other != id {
		if !p.Can(auth.ScopeAdmin) {
			writeError(w, r, g.deps.Log, scopeError(auth.ScopeAdmin))
			return
		}
		k, err := g.deps.Keys.Get(r.Context(), other)
		if err != nil {
			writeError(w, r, g.deps.Log, err)
			return
		}
		id, limits = k.ID, g.deps.Keys.Effective(k.Limits)
	}
	if id == "" {
		// A keyless caller in --dev mode: nothing is counted against it
		// (the dashboard reads this to learn it needs no sign-in).
		writeJSON(w, http.StatusOK, wire.Usage{KeyID: "dev", Day: store.Day(time.Now())})
		return
	}
	u, err := g.deps.Usage.GetUsage(r.Context(), id, store.Day(time.Now()))
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Usage{
		KeyID: id, Day: u.Day, Bytes: u.Bytes, Assets: u.Assets, AIUnits: u.AIUnits, Limits: wire.Limits(limits),
	})
}
