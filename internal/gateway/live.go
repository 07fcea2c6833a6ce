package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
)

// livePing is how often an idle event stream gets a comment line, so
// that proxies and the write deadline keep it open.
const livePing = 15 * time.Second

// liveBuffer is how many updates a client may fall behind before it
// misses some (it then catches up from the API).
const liveBuffer = 64

// hub fans the updates every process announces out to the event streams
// this gateway serves.
type hub struct {
	mu      sync.Mutex
	clients map[chan queue.Update]string // the asset each client follows; "" for all
}

func (h *hub) add(asset string) chan queue.Update {
	ch := make(chan queue.Update, liveBuffer)
	h.mu.Lock()
	h.clients[ch] = asset
	h.mu.Unlock()
	return ch
}

func (h *hub) remove(ch chan queue.Update) {
	h.mu.Lock()
	delete(h.clients, ch)
	h.mu.Unlock()
}

func (h *hub) publish(u queue.Update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch, asset := range h.clients {
		if asset != "" && asset != u.AssetID {
			continue
		}
		select {
		case ch <- u:
		default: // a slow client misses this one
		}
	}
}

// events streams asset and step changes as server-sent events (event
// "update", data the JSON of queue.Update), for all assets or, with
// ?asset=ID, one. The stream is live only: a client reads the state from
// the API, then follows changes here.
func (g *Gateway) events(w http.ResponseWriter, r *http.Request) {
	if g.live == nil {
		writeError(w, r, g.deps.Log, &httpError{http.StatusNotImplemented, "not_implemented", "live updates are not available on this server"})
		return
	}
	asset := r.URL.Query().Get("asset")
	if len(asset) > 64 {
		writeError(w, r, g.deps.Log, badRequest("asset id too long"))
		return
	}
	// A key limited to its own assets hears only of those; an asset's
	// owner never changes, so each answer is kept for the stream.
	visible := func(string) bool { return true }
	if !g.seesAll(r) {
		seen := map[string]bool{}
		visible = func(id string) bool {
			v, ok := seen[id]
			if !ok {
				a, err := g.deps.Store.GetAsset(r.Context(), id)
				v = err == nil && g.sees(r, a)
				if len(seen) < 10000 {
					seen[id] = v
				}
			}
			return v
		}
		if asset != "" && !visible(asset) {
			writeError(w, r, g.deps.Log, store.ErrNotFound)
			return
		}
	}
	ch := g.live.add(asset)
	defer g.live.remove(ch)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	ping := time.NewTicker(livePing)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
		case u := <-ch:
			if !visible(u.AssetID) {
				continue
			}
			data, _ := json.Marshal(u)
			if _, err := fmt.Fprintf(w, "event: update\ndata: %s\n\n", data); err != nil {
				return
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
