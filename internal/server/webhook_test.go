package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/webhook"
	"github.com/sluice-media/sluice/internal/wire"
)

// receiver is a webhook endpoint on loopback that checks signatures.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	secret []byte
	also   []byte // when set, requests must verify with this secret alone too
	fail   int    // answer 503 to this many requests first
	got    []received
}

type received struct {
	id, typ string
	data    webhook.AssetData
	sigs    int // signatures the request carried
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if r.URL.Path == "/gone" {
		w.WriteHeader(http.StatusGone)
		return
	}
	secrets := [][]byte{rc.secret}
	if rc.also != nil {
		secrets = append(secrets, rc.also)
	}
	for _, secret := range secrets {
		if err := webhook.Verify([][]byte{secret}, r.Header, body, time.Now(), 0); err != nil {
			rc.t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
	}
	var ev struct {
		Type string            `json:"type"`
		Data webhook.AssetData `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("webhook body %s: %v", body, err)
	}
	rc.got = append(rc.got, received{id: r.Header.Get(webhook.HeaderID), typ: ev.Type, data: ev.Data,
		sigs: len(strings.Fields(r.Header.Get(webhook.HeaderSignature)))})
	if rc.fail > 0 {
		rc.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) events() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// TestWebhooks sends signed asset events to the endpoints that want
// them, retries failures with the same webhook-id, keeps a delivery log,
// and disables an endpoint that answers 410.
func TestWebhooks(t *testing.T) {
	cfg := testConfig(t)
	cfg.WebhookAllowPrivate = true
	cfg.Webhooks.Schedule = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}
	cfg.Webhooks.Jitter = -1
	h := start(t, cfg)
	ctx := ctxT(t, 2*time.Minute)

	app := h.newKey(t, wire.KeyRequest{Name: "app", Scopes: []string{auth.ScopeUpload, auth.ScopeRead}})
	appClient := client.New(h.URL(), app.Token)
	appHook := &receiver{t: t, fail: 1}
	appSrv := httptest.NewServer(appHook)
	defer appSrv.Close()
	adminHook := &receiver{t: t}
	adminSrv := httptest.NewServer(adminHook)
	defer adminSrv.Close()

	create := func(c *client.Client, token string, req wire.WebhookRequest) wire.Webhook {
		t.Helper()
		body, _ := json.Marshal(req)
		status, code, resp := request(t, "POST", h.URL()+"/v1/webhooks", strings.NewReader(string(body)), bearerOf(token), -1)
		if status != http.StatusCreated {
			t.Fatalf("create webhook %+v: %d %s %s", req, status, code, resp)
		}
		var w wire.Webhook
		decode(t, resp, &w)
		return w
	}
	mine := create(appClient, app.Token, wire.WebhookRequest{URL: appSrv.URL + "/hook"})
	all := create(h.client, testToken, wire.WebhookRequest{URL: adminSrv.URL + "/hook", AllAssets: true, Events: []string{webhook.AssetFailed}})
	gone := create(h.client, testToken, wire.WebhookRequest{URL: adminSrv.URL + "/gone", AllAssets: true})
	for _, w := range []wire.Webhook{mine, all, gone} {
		if !strings.HasPrefix(w.Secret, webhook.SecretPrefix) {
			t.Fatalf("webhook %s created without a secret", w.ID)
		}
	}
	appHook.secret, _ = webhook.ParseSecret(mine.Secret)
	adminHook.secret, _ = webhook.ParseSecret(all.Secret)

	// Only admins may hear about every asset; others' endpoints are not
	// visible.
	if status, code, _ := request(t, "POST", h.URL()+"/v1/webhooks", strings.NewReader(`{"url":"`+appSrv.URL+`","all_assets":true}`), bearerOf(app.Token), -1); status != 403 {
		t.Errorf("all_assets with an app key: %d %s, want 403", status, code)
	}
	if status, code, _ := request(t, "POST", h.URL()+"/v1/webhooks", strings.NewReader(`{"url":"`+appSrv.URL+`","events":["asset.renamed"]}`), bearerOf(app.Token), -1); status != 400 {
		t.Errorf("unknown event type: %d %s, want 400", status, code)
	}
	var list wire.WebhookList
	_, _, body := request(t, "GET", h.URL()+"/v1/webhooks", nil, bearerOf(app.Token), -1)
	decode(t, body, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != mine.ID || list.Webhooks[0].Secret != "" {
		t.Errorf("app key's webhooks: %+v, want its own, without the secret", list.Webhooks)
	}
	if status, _, _ := request(t, "GET", h.URL()+"/v1/webhooks/"+all.ID+"/deliveries", nil, bearerOf(app.Token), -1); status != 404 {
		t.Errorf("another key's delivery log: %d, want 404", status)
	}

	// The app uploads a clip: its endpoint hears asset.succeeded after
	// one 503, with the same webhook-id both times.
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "clip", mediatest.Clip{Duration: 1, Video: true})
	id, err := appClient.UploadFile(ctx, clip, client.UploadOptions{TusThreshold: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s %s", a.Status, a.Error)
	}
	got := waitFor(t, func() []received { return appHook.events() }, 2)
	if got[0].id != got[1].id || got[1].typ != webhook.AssetSucceeded || got[1].data.Asset.ID != id || got[1].data.Asset.Status != "succeeded" {
		t.Errorf("app endpoint got %+v, want asset.succeeded twice under one id", got)
	}

	// The admin uploads a broken picture: the all-assets endpoint hears
	// asset.failed; the app's endpoint hears nothing of it.
	bad := filepath.Join(dir, "bad.png")
	if err := os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot a picture"), 0o644); err != nil {
		t.Fatal(err)
	}
	badID := h.uploadPut(t, bad)
	if a := h.wait(t, badID); a.Status != wire.StatusFailed {
		t.Fatalf("bad asset: %s", a.Status)
	}
	failed := waitFor(t, func() []received { return adminHook.events() }, 1)
	if failed[0].typ != webhook.AssetFailed || failed[0].data.Asset.ID != badID || failed[0].data.Asset.Error == "" {
		t.Errorf("admin endpoint got %+v, want asset.failed of %s with the reason", failed, badID)
	}
	for _, e := range adminHook.events() {
		if e.data.Asset.ID == id {
			t.Errorf("the failed-only endpoint heard of the succeeded asset: %+v", e)
		}
	}
	for _, e := range appHook.events() {
		if e.data.Asset.ID == badID {
			t.Errorf("the app's endpoint heard of another key's asset: %+v", e)
		}
	}

	// The delivery log shows the retry.
	var log wire.DeliveryList
	_, _, body = request(t, "GET", h.URL()+"/v1/webhooks/"+mine.ID+"/deliveries", nil, bearerOf(app.Token), -1)
	decode(t, body, &log)
	if len(log.Deliveries) != 1 || log.Deliveries[0].State != "delivered" || log.Deliveries[0].Attempts != 2 || log.Deliveries[0].LastStatus != 204 {
		t.Errorf("delivery log: %+v, want one delivered in 2 attempts", log.Deliveries)
	}

	// The endpoint that answered 410 is disabled.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, body = request(t, "GET", h.URL()+"/v1/webhooks", nil, nil, -1)
		decode(t, body, &list)
		var disabled bool
		for _, w := range list.Webhooks {
			disabled = disabled || (w.ID == gone.ID && w.DisabledAt != nil)
		}
		if disabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 410 endpoint was not disabled: %+v", list.Webhooks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, _, _ := request(t, "DELETE", h.URL()+"/v1/webhooks/"+mine.ID, nil, bearerOf(app.Token), -1); status != 204 {
		t.Errorf("delete own webhook: %d", status)
	}
}

// waitFor polls get until it returns at least n items.
func waitFor[T any](t *testing.T, get func() []T, n int) []T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := get(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d items after 30s, want %d: %+v", len(get()), n, get())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhookSecretsSealed: endpoint secrets are sealed in the store, an
// endpoint kept in the clear by an older version is sealed at the next
// start, and rotating the signing key reseals them, so that once every
// process has started with the new key the previous one can go: both
// endpoints still get deliveries signed with the secrets they were given.
func TestWebhookSecretsSealed(t *testing.T) {
	cfg := testConfig(t)
	cfg.WebhookAllowPrivate = true
	ctx := ctxT(t, 2*time.Minute)
	fresh, legacy := &receiver{t: t}, &receiver{t: t}
	freshSrv, legacySrv := httptest.NewServer(fresh), httptest.NewServer(legacy)
	defer freshSrv.Close()
	defer legacySrv.Close()

	h := start(t, cfg)
	status, code, body := request(t, "POST", h.URL()+"/v1/webhooks",
		strings.NewReader(`{"url":"`+freshSrv.URL+`/hook","all_assets":true}`), nil, -1)
	if status != http.StatusCreated {
		t.Fatalf("create webhook: %d %s %s", status, code, body)
	}
	var created wire.Webhook
	decode(t, body, &created)
	fresh.secret, _ = webhook.ParseSecret(created.Secret)
	stored, err := h.store.GetWebhook(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !auth.IsSealed(stored.Secret) || strings.Contains(stored.Secret, strings.TrimPrefix(created.Secret, webhook.SecretPrefix)) {
		t.Fatalf("the store keeps %q for the secret %q, want it sealed", stored.Secret, created.Secret)
	}
	// As a version before sealing stored it.
	plain := webhook.NewSecret()
	legacy.secret, _ = webhook.ParseSecret(plain)
	if err := h.store.CreateWebhook(ctx, store.Webhook{ID: "wh_legacy", URL: legacySrv.URL + "/hook", Secret: plain}); err != nil {
		t.Fatal(err)
	}
	h.stop()

	// Rotate: the old key becomes a previous key, a new one is made.
	secrets := filepath.Join(cfg.DataDir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "previous"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(secrets, "signing.key"), filepath.Join(secrets, "previous", "old.key")); err != nil {
		t.Fatal(err)
	}
	h = start(t, cfg)
	for _, id := range []string{created.ID, "wh_legacy"} {
		w, err := h.store.GetWebhook(ctx, id)
		if err != nil || !auth.IsSealed(w.Secret) || w.Secret == stored.Secret {
			t.Errorf("%s after the rotation: %q, %v; want sealed anew", id, w.Secret, err)
		}
	}
	h.stop()

	// The previous key is retired: deliveries still carry the right
	// signatures.
	if err := os.Remove(filepath.Join(secrets, "previous", "old.key")); err != nil {
		t.Fatal(err)
	}
	h = start(t, cfg)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true})
	id := h.uploadPut(t, clip)
	if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s %s", a.Status, a.Error)
	}
	for name, rc := range map[string]*receiver{"new endpoint": fresh, "older endpoint": legacy} {
		got := waitFor(t, rc.events, 1)
		if got[0].typ != webhook.AssetSucceeded || got[0].data.Asset.ID != id || got[0].sigs != 1 {
			t.Errorf("%s got %+v, want asset.succeeded of %s with one signature", name, got, id)
		}
	}

	// Rotating the endpoint's secret: the new one is shown once, and for
	// a day requests carry signatures with both, so a receiver that has
	// switched and one that has not both accept them.
	status, code, body = request(t, "POST", h.URL()+"/v1/webhooks/"+created.ID+"/rotate-secret", nil, nil, -1)
	if status != http.StatusOK {
		t.Fatalf("rotate: %d %s %s", status, code, body)
	}
	var rotated wire.Webhook
	decode(t, body, &rotated)
	if !strings.HasPrefix(rotated.Secret, webhook.SecretPrefix) || rotated.Secret == created.Secret ||
		rotated.PreviousSecretUntil == nil || rotated.PreviousSecretUntil.Sub(time.Now()) < 23*time.Hour {
		t.Fatalf("rotated endpoint: %+v, want a new secret and the previous one valid for a day", rotated)
	}
	fresh.mu.Lock()
	fresh.also, _ = webhook.ParseSecret(rotated.Secret) // a receiver that switched
	fresh.mu.Unlock()
	id2 := h.uploadPut(t, clip)
	if a := h.wait(t, id2); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s %s", a.Status, a.Error)
	}
	got := waitFor(t, fresh.events, 2)
	if got[1].data.Asset.ID != id2 || got[1].sigs != 2 {
		t.Errorf("after the rotation the endpoint got %+v, want %s signed twice", got[1], id2)
	}
	// Another key's endpoint cannot be rotated by it.
	app := h.newKey(t, wire.KeyRequest{Name: "app", Scopes: []string{auth.ScopeRead}})
	if status, _, _ := request(t, "POST", h.URL()+"/v1/webhooks/"+created.ID+"/rotate-secret", nil, bearerOf(app.Token), -1); status != 404 {
		t.Errorf("rotating an admin's endpoint with another key: %d, want 404", status)
	}
}
