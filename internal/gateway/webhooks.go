package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/webhook"
	"github.com/sluice-media/sluice/internal/wire"
)

var eventTypes = []string{webhook.AssetSucceeded, webhook.AssetFailed, webhook.AssetDegraded, webhook.AssetDeleted}

// createWebhook registers an endpoint for the calling key's assets (or,
// for an admin asking for all_assets, every asset). Its URL is checked
// as URL ingest checks sources: no private or metadata addresses.
func (g *Gateway) createWebhook(w http.ResponseWriter, r *http.Request) {
	var req wire.WebhookRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	p, _ := auth.PrincipalFrom(r.Context())
	u, err := url.Parse(req.URL)
	switch {
	case err != nil || len(req.URL) > 2048 || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil:
		writeError(w, r, g.deps.Log, badRequest("url must be an absolute http or https URL without credentials, at most 2048 bytes"))
		return
	case len(req.Pipeline) > 100:
		writeError(w, r, g.deps.Log, badRequest("pipeline name too long"))
		return
	case req.AllAssets && !p.Can(auth.ScopeAdmin):
		writeError(w, r, g.deps.Log, scopeError(auth.ScopeAdmin))
		return
	case !req.AllAssets && p.KeyID == "":
		writeError(w, r, g.deps.Log, badRequest("dev mode has no key to own the endpoint; set all_assets"))
		return
	}
	for _, e := range req.Events {
		if !slices.Contains(eventTypes, e) {
			writeError(w, r, g.deps.Log, badRequest("unknown event type "+strconv.Quote(e)+" (want "+strings.Join(eventTypes, ", ")+")"))
			return
		}
	}
	if g.deps.CheckWebhookURL != nil {
		if err := g.deps.CheckWebhookURL(r.Context(), req.URL); err != nil {
			writeError(w, r, g.deps.Log, &httpError{http.StatusBadRequest, "url_refused",
				"the webhook URL's host is not allowed or resolves to an address Sluice does not send to (loopback, private, link-local or metadata)"})
			return
		}
	}
	h := store.Webhook{
		ID: "wh_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20], URL: req.URL, Pipeline: req.Pipeline,
		Events: req.Events, Owner: p.KeyID, CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
	// The secret is shown once, here; the store keeps it sealed.
	secret := webhook.NewSecret()
	if h.Secret, err = webhook.SealSecret(g.deps.Signer, h.ID, secret); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	if req.AllAssets {
		h.Owner = ""
	}
	if err := g.deps.Store.CreateWebhook(r.Context(), h); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	v := webhookView(h)
	v.Secret = secret
	w.Header().Set("Location", "/v1/webhooks/"+h.ID)
	writeJSON(w, http.StatusCreated, v)
}

func (g *Gateway) listWebhooks(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.PrincipalFrom(r.Context())
	hooks, err := g.deps.Store.ListWebhooks(r.Context())
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	out := wire.WebhookList{Webhooks: []wire.Webhook{}}
	for _, h := range hooks {
		if visible(p, h) {
			out.Webhooks = append(out.Webhooks, webhookView(h))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// ownWebhook loads an endpoint the principal may see; others' are "not
// found", so that ids do not leak.
func (g *Gateway) ownWebhook(r *http.Request) (store.Webhook, error) {
	p, _ := auth.PrincipalFrom(r.Context())
	h, err := g.deps.Store.GetWebhook(r.Context(), r.PathValue("id"))
	if err != nil {
		return store.Webhook{}, err
	}
	if !visible(p, h) {
		return store.Webhook{}, store.ErrNotFound
	}
	return h, nil
}

// visible: admins see every endpoint; other keys their own.
func visible(p auth.Principal, h store.Webhook) bool {
	return p.Can(auth.ScopeAdmin) || (p.KeyID != "" && h.Owner == p.KeyID)
}

func (g *Gateway) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	h, err := g.ownWebhook(r)
	if err == nil {
		err = g.deps.Store.DeleteWebhook(r.Context(), h.ID)
	}
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// secretOverlap is how long an endpoint's previous secret still signs
// after a rotation: a day for receivers to switch over, as Standard
// Webhooks providers commonly allow.
const secretOverlap = 24 * time.Hour

// rotateSecret gives an endpoint a new secret, shown once in the answer;
// requests carry signatures with both secrets for secretOverlap.
func (g *Gateway) rotateSecret(w http.ResponseWriter, r *http.Request) {
	h, err := g.ownWebhook(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	secret := webhook.NewSecret()
	sealed, err := webhook.SealSecret(g.deps.Signer, h.ID, secret)
	if err == nil {
		err = g.deps.Store.RotateWebhookSecret(r.Context(), h.ID, sealed, time.Now().Add(secretOverlap).UTC().Truncate(time.Microsecond))
	}
	if err == nil {
		h, err = g.deps.Store.GetWebhook(r.Context(), h.ID)
	}
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	v := webhookView(h)
	v.Secret = secret
	writeJSON(w, http.StatusOK, v)
}

// listDeliveries is an endpoint's delivery log, newest first.
func (g *Gateway) listDeliveries(w http.ResponseWriter, r *http.Request) {
	h, err := g.ownWebhook(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 1 || limit > 1000 {
			writeError(w, r, g.deps.Log, badRequest("limit must be between 1 and 1000"))
			return
		}
	}
	ds, err := g.deps.Store.ListDeliveries(r.Context(), h.ID, limit)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	out := wire.DeliveryList{Deliveries: []wire.Delivery{}}
	for _, d := range ds {
		out.Deliveries = append(out.Deliveries, wire.Delivery{
			ID: d.ID, Type: d.Type, AssetID: d.AssetID, State: d.State, Attempts: d.Attempts,
			LastStatus: d.LastStatus, LastError: d.LastError, NextAt: timePtr(d.NextAt),
			CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func webhookView(h store.Webhook) wire.Webhook {
	events := h.Events
	if len(events) == 0 {
		events = eventTypes
	}
	v := wire.Webhook{
		ID: h.ID, URL: h.URL, Events: events, Pipeline: h.Pipeline, Owner: h.Owner,
		CreatedAt: h.CreatedAt, DisabledAt: timePtr(h.DisabledAt), DisabledReason: h.DisabledReason,
	}
	if h.PreviousSecret != "" && time.Now().Before(h.PreviousUntil) {
		v.PreviousSecretUntil = timePtr(h.PreviousUntil)
	}
	return v
}
