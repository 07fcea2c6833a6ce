package webhook

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
)

// TestDispatcher routes asset events to the endpoints that want them,
// queues each once however often it is announced, and records outcomes.
func TestDispatcher(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var mu sync.Mutex
	got := map[string][]string{} // endpoint path -> event types
	fails := map[string]int{"/flaky": 1}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		got[r.URL.Path] = append(got[r.URL.Path], r.Header.Get(HeaderID))
		if fails[r.URL.Path] > 0 {
			fails[r.URL.Path]--
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()

	secret := NewSecret()
	hooks := []store.Webhook{
		{ID: "mine", URL: srv.URL + "/mine", Owner: "k1", Secret: secret},
		{ID: "other-key", URL: srv.URL + "/other", Owner: "k2", Secret: secret},
		{ID: "all-video", URL: srv.URL + "/video", Pipeline: "video", Secret: secret},
		{ID: "all-audio", URL: srv.URL + "/audio", Pipeline: "audio", Secret: secret},
		{ID: "failed-only", URL: srv.URL + "/failed", Events: []string{AssetFailed}, Secret: secret},
		{ID: "flaky", URL: srv.URL + "/flaky", Secret: secret},
		{ID: "off", URL: srv.URL + "/off", Secret: secret, DisabledAt: time.Now()},
		// Sealed under a key this dispatcher lacks: retried, as the key
		// may be configured again. Malformed: failed at once.
		{ID: "sealed", URL: srv.URL + "/sealed", Secret: "sealed1:k9:c2VhbGVk"},
		{ID: "malformed", URL: srv.URL + "/malformed", Secret: SecretPrefix + "!!"},
	}
	for _, h := range hooks {
		if err := st.CreateWebhook(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	a := store.Asset{ID: "a1", Name: "clip.mp4", Owner: "k1", Pipeline: "video", Status: store.StatusPending}
	if err := st.CreateAsset(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimJob(ctx, store.Claim{Key: "job1", AssetID: "a1", Owner: "w", Now: time.Now(), Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	step, _ := st.StartStep(ctx, "job1", "a1", "transcript", time.Now())
	step.Status, step.Error, step.FinishedAt = store.StatusDegraded, "every provider failed", time.Now()
	if err := st.FinishStep(ctx, step); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishJob(ctx, "job1", "w", store.StatusSucceeded, ""); err != nil {
		t.Fatal(err)
	}

	sender, err := NewSender(Config{Timeout: 2 * time.Second, Schedule: []time.Duration{10 * time.Millisecond}, Jitter: -1}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(DispatchConfig{Poll: 10 * time.Millisecond}, st, sender, slog.New(slog.DiscardHandler))
	// Announced twice (a worker that died after announcing): queued once.
	for range 2 {
		if err := d.AssetFinished(ctx, "a1", "job1"); err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got["/mine"]) + len(got["/video"]) + len(got["/flaky"])
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries after 10s: %v", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for {
		if l, _ := st.ListDeliveries(ctx, "sealed", 10); len(l) == 1 && l[0].State == store.DeliveryFailed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delivery to the endpoint with an unopenable secret did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // let anything unwanted arrive
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	var paths []string
	for p := range got {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if want := "[/flaky /mine /video]"; fmt.Sprint(paths) != want {
		t.Errorf("endpoints called: %s, want %s (not another key's, another pipeline's, a failed-only or a disabled one)", fmt.Sprint(paths), want)
	}
	if len(got["/mine"]) != 1 || len(got["/video"]) != 1 {
		t.Errorf("deliveries: %v, want one each though announced twice", got)
	}
	if f := got["/flaky"]; len(f) != 2 || f[0] != f[1] {
		t.Errorf("flaky endpoint: %v, want a retry with the same webhook-id", f)
	}
	log, err := st.ListDeliveries(ctx, "mine", 10)
	if err != nil || len(log) != 1 || log[0].Type != AssetDegraded || log[0].State != store.DeliveryDelivered || log[0].LastStatus != 200 {
		t.Errorf("delivery log of mine: %+v %v, want one asset.degraded delivered", log, err)
	}
	for id, attempts := range map[string]int{"sealed": 2, "malformed": 1} {
		l, _ := st.ListDeliveries(ctx, id, 10)
		if len(l) != 1 || l[0].State != store.DeliveryFailed || l[0].Attempts != attempts || !strings.Contains(l[0].LastError, "secret unusable") {
			t.Errorf("delivery log of %s: %+v, want failed after %d attempts, saying the secret is unusable", id, l, attempts)
		}
	}
	flaky, _ := st.ListDeliveries(ctx, "flaky", 10)
	if len(flaky) != 1 || flaky[0].Attempts != 2 || flaky[0].State != store.DeliveryDelivered {
		t.Errorf("delivery log of flaky: %+v", flaky)
	}
}
