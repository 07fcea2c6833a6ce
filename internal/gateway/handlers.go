package gateway

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/media"
	"github.com/sluice-media/sluice/internal/pipeline"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

func (g *Gateway) createUpload(w http.ResponseWriter, r *http.Request) {
	var req wire.UploadRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	up, err := g.deps.Uploads.Create(r.Context(), req, g.baseURL(r))
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.Header().Set("Location", "/v1/assets/"+up.AssetID)
	writeJSON(w, http.StatusCreated, up)
}

// ingest creates an asset whose bytes Sluice fetches from a URL.
func (g *Gateway) ingest(w http.ResponseWriter, r *http.Request) {
	var req wire.IngestRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	a, err := g.deps.Uploads.Ingest(r.Context(), req)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.Header().Set("Location", "/v1/assets/"+a.ID)
	writeJSON(w, http.StatusAccepted, assetView(a, nil, nil, ""))
}

// putContent receives the body of a signed upload URL. The signature is
// checked before a byte of the body is read.
func (g *Gateway) putContent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c, err := g.deps.Signer.Verify(r.Method, upload.ContentPath(id), r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	sum, err := checksumHeader(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	size, _ := strconv.ParseInt(c["size"], 10, 64)
	body := http.MaxBytesReader(w, r.Body, size)
	res, err := g.deps.Uploads.Receive(r.Context(), upload.Put{
		AssetID:       id,
		Body:          body,
		ContentLength: r.ContentLength,
		ContentType:   r.Header.Get("Content-Type"),
		Constraints:   c,
		SHA256:        sum,
	})
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.Header().Set("ETag", `"`+res.ETag+`"`)
	writeJSON(w, http.StatusOK, res)
}

// checksumHeader reads an optional SHA-256 of the body, hex in
// X-Checksum-Sha256 or base64 in x-amz-checksum-sha256 (as S3 takes it).
func checksumHeader(r *http.Request) ([]byte, error) {
	if v := r.Header.Get("X-Checksum-Sha256"); v != "" {
		b, err := hex.DecodeString(v)
		if err != nil || len(b) != 32 {
			return nil, badRequest("X-Checksum-Sha256 must be 64 hex digits")
		}
		return b, nil
	}
	if v := r.Header.Get("X-Amz-Checksum-Sha256"); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != 32 {
			return nil, badRequest("x-amz-checksum-sha256 must be a base64 SHA-256")
		}
		return b, nil
	}
	return nil, nil
}

// seesAll reports whether the request's principal may see every asset:
// always unless PerKeyAssets, then only with the admin scope.
func (g *Gateway) seesAll(r *http.Request) bool {
	p, _ := auth.PrincipalFrom(r.Context())
	return !g.cfg.PerKeyAssets || p.Can(auth.ScopeAdmin)
}

// sees reports whether the request's principal may see asset a.
func (g *Gateway) sees(r *http.Request, a store.Asset) bool {
	if g.seesAll(r) {
		return true
	}
	p, _ := auth.PrincipalFrom(r.Context())
	return p.KeyID != "" && a.Owner == p.KeyID
}

// assetFor loads the asset named by the request's {id}; one the
// principal may not see is not found, so that ids do not leak.
func (g *Gateway) assetFor(r *http.Request) (store.Asset, error) {
	a, err := g.deps.Store.GetAsset(r.Context(), r.PathValue("id"))
	if err == nil && !g.sees(r, a) {
		return store.Asset{}, store.ErrNotFound
	}
	return a, err
}

// visibleAsset lets through to h only requests for an asset the
// principal may see.
func (g *Gateway) visibleAsset(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.seesAll(r) {
			if _, err := g.assetFor(r); err != nil {
				writeError(w, r, g.deps.Log, err)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (g *Gateway) listAssets(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	opts := store.ListOptions{Cursor: q.Get("cursor"), Status: store.Status(q.Get("status")),
		Pipeline: q.Get("pipeline"), Name: strings.TrimSpace(q.Get("q"))}
	if !g.seesAll(r) {
		p, _ := auth.PrincipalFrom(r.Context())
		opts.Owner = p.KeyID
		if opts.Owner == "" {
			writeJSON(w, http.StatusOK, wire.AssetList{Assets: []wire.Asset{}})
			return
		}
	}
	if len(opts.Name) > 200 || len(opts.Pipeline) > 200 {
		writeError(w, r, g.deps.Log, badRequest("q and pipeline are at most 200 bytes"))
		return
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, r, g.deps.Log, badRequest("limit must be between 1 and 1000"))
			return
		}
		opts.Limit = n
	}
	switch opts.Status {
	case "", store.StatusPending, store.StatusProcessing, store.StatusSucceeded, store.StatusFailed:
	default:
		writeError(w, r, g.deps.Log, badRequest("status must be pending, processing, succeeded or failed"))
		return
	}
	page, err := g.deps.Store.ListAssets(r.Context(), opts)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	out := wire.AssetList{Assets: []wire.Asset{}, NextCursor: page.Next}
	for _, a := range page.Assets {
		// The list shows the asset without its outputs and steps; fetch
		// one asset for those.
		v := assetView(a, nil, nil, "")
		if g.private(a) {
			v.Visibility = pipeline.DeliveryPrivate
		}
		if v.ThumbnailURL, err = g.thumbnailURL(r, a); err != nil {
			writeError(w, r, g.deps.Log, err)
			return
		}
		out.Assets = append(out.Assets, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) getAsset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	a, err := g.assetFor(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	outputs, err := g.deps.Store.ListOutputs(ctx, id)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	steps, err := g.deps.Store.ListSteps(ctx, id)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	v := assetView(a, outputs, steps, g.baseURL(r))
	if g.private(a) {
		v.Visibility = pipeline.DeliveryPrivate
		for i, o := range outputs {
			v.Outputs[i].URL = g.outputURL(r, a, o)
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// thumbnailURL is the URL of a small picture of the asset for lists: its
// thumbnail output, or an image variant; "" when it has none yet or its
// outputs are held back.
func (g *Gateway) thumbnailURL(r *http.Request, a store.Asset) (string, error) {
	if a.Quarantine != "" || a.Status == store.StatusPending {
		return "", nil
	}
	outputs, err := g.deps.Store.ListOutputs(r.Context(), a.ID)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(outputs, func(o store.Output) bool { return o.Name == media.ThumbnailName })
	if i < 0 {
		i = slices.IndexFunc(outputs, func(o store.Output) bool {
			return o.Step == "image" && strings.HasPrefix(o.ContentType, "image/")
		})
	}
	if i < 0 {
		return "", nil
	}
	return g.outputURL(r, a, outputs[i]), nil
}

// outputURL is where a client fetches one of an asset's outputs: signed
// and expiring when the asset is private.
func (g *Gateway) outputURL(r *http.Request, a store.Asset, o store.Output) string {
	if g.private(a) {
		return g.deps.Delivery.SignedURL(g.baseURL(r), a.ID, o.Key, o.ETag, time.Now().Add(g.cfg.PrivateURLTTL))
	}
	return delivery.URL(g.baseURL(r), o.Key, o.ETag)
}

// private reports whether an asset's outputs are served only through
// signed URLs.
func (g *Gateway) private(a store.Asset) bool {
	return g.deps.Private != nil && g.deps.Private(a)
}

// assetView renders an asset as the API shows it.
func assetView(a store.Asset, outputs []store.Output, steps []store.Step, base string) wire.Asset {
	v := wire.Asset{
		ID: a.ID, Name: a.Name, Status: string(a.Status), Error: a.Error,
		ContentType: a.ContentType, Size: a.Size, ETag: a.ETag,
		CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt, UploadedAt: timePtr(a.UploadedAt),
		Metadata: a.Metadata, Pipeline: a.Pipeline, Quarantined: a.Quarantine, Visibility: pipeline.DeliveryPublic,
		Media:   a.Media,
		Outputs: []wire.Output{},
		Steps:   []wire.Step{},
	}
	if len(v.Media) == 0 {
		v.Media = []byte("null")
	}
	for _, o := range outputs {
		v.Outputs = append(v.Outputs, wire.Output{
			Name: o.Name, Step: o.Step, Key: o.Key, ContentType: o.ContentType, Size: o.Size, ETag: o.ETag,
			URL: delivery.URL(base, o.Key, o.ETag),
		})
	}
	for _, s := range steps {
		ws := wire.Step{
			Name: s.Name, Status: string(s.Status), Attempts: s.Attempts, Error: s.Error,
			StartedAt: timePtr(s.StartedAt), FinishedAt: timePtr(s.FinishedAt),
			DurationMS: float64(s.Duration.Microseconds()) / 1000,
		}
		if s.Status == store.StatusSkipped || s.Status == store.StatusDegraded {
			ws.Reason, ws.Error = s.Error, ""
		}
		if s.Status == store.StatusDegraded {
			v.Degraded = append(v.Degraded, wire.Missing{Step: s.Name, Reason: s.Error})
		}
		v.Steps = append(v.Steps, ws)
	}
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (g *Gateway) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, r, g.deps.Log, badRequest("after must be a sequence number"))
			return
		}
		after = n
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, r, g.deps.Log, badRequest("limit must be between 1 and 1000"))
			return
		}
		limit = n
	}
	dls, err := g.deps.DeadLetters.DeadLetters(r.Context(), after, limit)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	out := wire.DeadLetterList{DeadLetters: []wire.DeadLetter{}}
	for _, d := range dls {
		out.DeadLetters = append(out.DeadLetters, wire.DeadLetter{
			Seq: d.Seq, AssetID: d.AssetID, Reason: d.Reason, Deliveries: d.Deliveries, FailedAt: d.FailedAt, Event: d.Event,
		})
	}
	if len(dls) == limit {
		out.Next = dls[len(dls)-1].Seq
	}
	writeJSON(w, http.StatusOK, out)
}

func (g *Gateway) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		writeError(w, r, g.deps.Log, badRequest("seq must be a sequence number"))
		return
	}
	if err := g.deps.DeadLetters.Replay(r.Context(), seq); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"replayed": seq})
}

func (g *Gateway) serveOutput(w http.ResponseWriter, r *http.Request) {
	if err := g.deps.Delivery.Serve(r.Context(), w, r, r.PathValue("key")); err != nil {
		writeError(w, r, g.deps.Log, err)
	}
}

// reprocess queues a new run of an asset's pipeline, as configured now.
func (g *Gateway) reprocess(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var req wire.ReprocessRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, &req); err != nil {
			writeError(w, r, g.deps.Log, err)
			return
		}
	}
	a, err := g.assetFor(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	p := g.deps.Pipelines.Match(pipeline.AssetInfo{Name: a.Name, ContentType: a.ContentType, Key: a.Key, Size: a.Size, Metadata: a.Metadata})
	if p == nil {
		writeError(w, r, g.deps.Log, &httpError{http.StatusConflict, "no_pipeline", "no pipeline matches this asset"})
		return
	}
	if len(req.Steps) > 64 {
		writeError(w, r, g.deps.Log, badRequest("at most 64 steps"))
		return
	}
	for _, id := range req.Steps {
		if p.Step(id) == nil {
			var ids []string
			for _, s := range p.Steps {
				ids = append(ids, s.ID)
			}
			writeError(w, r, g.deps.Log, badRequest(fmt.Sprintf("pipeline %q has no step %q (it has %s)", p.Name, id, strings.Join(ids, ", "))))
			return
		}
	}
	var base string
	if job, err := g.deps.Store.LatestJob(ctx, a.ID); err == nil {
		base = job.Key
	} else if !errors.Is(err, store.ErrNotFound) {
		writeError(w, r, g.deps.Log, err)
		return
	}
	if err := g.deps.Uploads.Reprocess(ctx, a, req.Steps, base); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	if a, err = g.deps.Store.GetAsset(ctx, a.ID); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	writeJSON(w, http.StatusAccepted, assetView(a, nil, nil, ""))
}

func (g *Gateway) listPipelines(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, PipelineList(g.deps.Pipelines))
}

// PipelineList renders pipelines as the API shows them.
func PipelineList(set *pipeline.Set) wire.PipelineList {
	out := wire.PipelineList{Pipelines: []wire.Pipeline{}}
	for _, p := range set.All() {
		wp := wire.Pipeline{Name: p.Name, Doc: p.Doc, Source: p.Source, Steps: []wire.PipelineStep{}, Delivery: p.Delivery,
			Match: wire.PipelineMatch{ContentTypes: p.Match.ContentTypes, Keys: p.Match.Keys, Metadata: p.Match.Metadata}}
		for _, s := range p.Steps {
			wp.Steps = append(wp.Steps, wire.PipelineStep{
				ID: s.ID, Uses: s.Uses, With: s.With, Needs: s.Needs, When: s.When,
				TimeoutMS: s.Timeout.Milliseconds(), Retries: s.Retries, OnError: s.OnError, Pool: s.Pool, Engine: s.Engine,
			})
		}
		out.Pipelines = append(out.Pipelines, wp)
	}
	return out
}

// release lifts a quarantine: the asset's outputs are delivered again.
// deleteAsset deletes an asset and everything of it (source, outputs,
// variants, records; a resumable upload in progress is aborted). A key
// deletes the assets it created; an admin any.
func (g *Gateway) deleteAsset(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	a, err := g.assetFor(r)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	if p, _ := auth.PrincipalFrom(ctx); !p.Can(auth.ScopeAdmin) && (p.KeyID == "" || a.Owner != p.KeyID) {
		writeError(w, r, g.deps.Log, &httpError{http.StatusForbidden, "not_owner", "only the key that created an asset, or an admin key, may delete it"})
		return
	}
	if err := g.deps.Uploads.DeleteAsset(ctx, a.ID); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) release(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if err := g.deps.Store.SetQuarantine(ctx, id, ""); err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	a, err := g.deps.Store.GetAsset(ctx, id)
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	writeJSON(w, http.StatusOK, assetView(a, nil, nil, ""))
}
