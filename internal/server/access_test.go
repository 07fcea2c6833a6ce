package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestAssetAccessPerKey: with --asset-access per-key a key without the
// admin scope lists, reads, reprocesses, renders, deletes and hears of
// only the assets it created; another key's are "not found" to it. An
// admin key sees all.
func TestAssetAccessPerKey(t *testing.T) {
	cfg := testConfig(t)
	cfg.AssetAccess = "per-key"
	h := start(t, cfg)
	ctx := ctxT(t, 2*time.Minute)
	scopes := []string{auth.ScopeUpload, auth.ScopeRead}
	k1, k2 := h.newKey(t, wire.KeyRequest{Name: "one", Scopes: scopes}), h.newKey(t, wire.KeyRequest{Name: "two", Scopes: scopes})
	c1, c2 := client.New(h.URL(), k1.Token), client.New(h.URL(), k2.Token)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 320, Height: 240, Duration: 1, Video: true})
	upload := func(c *client.Client) string {
		t.Helper()
		id, err := c.UploadFile(ctx, clip, client.UploadOptions{TusThreshold: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
			t.Fatalf("asset: %s %s", a.Status, a.Error)
		}
		return id
	}
	mine, theirs := upload(c1), upload(c2)

	ids := func(c *client.Client) []string {
		t.Helper()
		l, err := c.Assets(ctx, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range l.Assets {
			out = append(out, a.ID)
		}
		return out
	}
	if got := ids(c1); len(got) != 1 || got[0] != mine {
		t.Errorf("key one lists %v, want only %s", got, mine)
	}
	if got := ids(h.client); len(got) != 2 {
		t.Errorf("the admin lists %v, want both", got)
	}
	if _, err := c1.Asset(ctx, mine); err != nil {
		t.Errorf("own asset: %v", err)
	}
	for name, req := range map[string]struct{ method, path string }{
		"read":      {"GET", "/v1/assets/" + theirs},
		"variant":   {"GET", "/v1/assets/" + theirs + "/thumbnail.jpg?time=0.5s&width=64"},
		"reprocess": {"POST", "/v1/assets/" + theirs + "/reprocess"},
		"delete":    {"DELETE", "/v1/assets/" + theirs},
		"events":    {"GET", "/v1/events?asset=" + theirs},
	} {
		if status, code, _ := request(t, req.method, h.URL()+req.path, nil, bearerOf(k1.Token), -1); status != http.StatusNotFound {
			t.Errorf("%s another key's asset: %d %s, want 404", name, status, code)
		}
	}
	if _, err := h.client.Asset(ctx, theirs); err != nil {
		t.Errorf("the admin reads any asset: %v", err)
	}

	// The live stream of key one carries none of key two's updates.
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL()+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+k1.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if _, err := c2.Reprocess(ctx, theirs, nil); err != nil {
		t.Fatal(err)
	}
	if a, err := c2.Wait(ctx, theirs, 100*time.Millisecond); err != nil || a.Status != wire.StatusSucceeded {
		t.Fatalf("reprocess of key two's asset: %v %v", a.Status, err)
	}
	if _, err := c1.Reprocess(ctx, mine, nil); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	heard := false
	for !heard && sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var u queue.Update
		if err := json.Unmarshal([]byte(data), &u); err != nil {
			t.Fatal(err)
		}
		if u.AssetID == theirs {
			t.Fatalf("key one heard of key two's asset: %s", data)
		}
		heard = u.AssetID == mine && u.Status == "succeeded"
	}
	if !heard {
		t.Fatalf("the stream ended before key one heard its own asset succeed: %v", sc.Err())
	}
}
