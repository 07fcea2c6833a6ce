package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue"
)

// TestLiveUpdates follows an upload on GET /v1/events: its steps start
// and end, then the asset succeeds, without polling.
func TestLiveUpdates(t *testing.T) {
	h := start(t, testConfig(t))
	ctx := ctxT(t, time.Minute)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.URL()+"/v1/events", nil)
	setHeaders(req, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true, Audio: true})
	id := h.uploadPut(t, clip)

	steps := map[string]string{}
	var statuses []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var u queue.Update
		if err := json.Unmarshal([]byte(data), &u); err != nil {
			t.Fatalf("event data %q: %v", data, err)
		}
		if u.AssetID != id {
			continue
		}
		if u.Step != "" {
			steps[u.Step] = u.StepStatus
		}
		if u.Status != "" {
			statuses = append(statuses, u.Status)
		}
		if u.Status == "succeeded" {
			break
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("stream ended: %v (steps seen %v)", err, steps)
	}
	if len(statuses) < 3 || statuses[0] != "pending" || statuses[1] != "processing" {
		t.Errorf("asset statuses announced: %v, want pending (uploaded), processing, ..., succeeded", statuses)
	}
	for _, s := range []string{"probe", "thumbnail", "audio"} {
		if steps[s] != "succeeded" {
			t.Errorf("step %s: last update %q, want succeeded (all: %v)", s, steps[s], steps)
		}
	}
	// Without a key: refused like every /v1 route.
	if status, _, _ := request(t, "GET", h.URL()+"/v1/events", nil, map[string]string{"Authorization": ""}, -1); status != 401 {
		t.Errorf("events without a key: %d", status)
	}
}
