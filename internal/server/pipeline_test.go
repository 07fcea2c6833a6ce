package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// writePipelines writes a pipelines file and returns its path.
func writePipelines(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pipelines.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func stepStates(a wire.Asset) map[string]wire.Step {
	m := map[string]wire.Step{}
	for _, s := range a.Steps {
		m[s.Name] = s
	}
	return m
}

func outputNames(a wire.Asset) []string {
	var names []string
	for _, o := range a.Outputs {
		names = append(names, o.Name)
	}
	return names
}

// TestDefaultPipelines runs the built-in pipelines, with no configuration,
// on a video with sound, a silent video and an audio file, and checks
// that every step the issue lists ran and stored its outputs.
func TestDefaultPipelines(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pipelines = nil
	h := start(t, cfg)
	dir := t.TempDir()
	video := mediatest.Generate(t, dir, "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true})
	silent := mediatest.Generate(t, dir, "silent", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true})
	song := mediatest.Generate(t, dir, "song", mediatest.Clip{Duration: 3, Audio: true, AudioCodec: "libmp3lame", Ext: ".mp3"})
	videoID, silentID, songID := h.uploadPut(t, video), h.uploadPut(t, silent), h.uploadPut(t, song)

	a := h.wait(t, videoID)
	if a.Status != wire.StatusSucceeded || a.Pipeline != "video" {
		t.Fatalf("video: %s %q via %q, want succeeded via video; steps %+v", a.Status, a.Error, a.Pipeline, a.Steps)
	}
	steps := stepStates(a)
	for _, id := range []string{"probe", "thumbnail", "audio", "waveform", "hls", "storyboard", "preview", "analyze"} {
		if s, ok := steps[id]; !ok || s.Status != wire.StatusSucceeded {
			t.Errorf("video step %s = %+v, want succeeded", id, s)
		}
	}
	names := outputNames(a)
	for _, want := range []string{"thumbnail.jpg", "audio.m4a", "hls/master.m3u8", "waveform.json", "waveform.png", "analysis.json"} {
		if !slices.Contains(names, want) {
			t.Errorf("video outputs lack %s: %v", want, names)
		}
	}
	for _, prefix := range []string{"storyboard/", "preview."} {
		if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, prefix) }) {
			t.Errorf("video outputs lack %s*: %v", prefix, names)
		}
	}
	// The master playlist is served, and so is every playlist it names,
	// relative to it: the output tree keeps its layout in the bucket.
	master := output(t, a, "hls/master.m3u8")
	resp, body := h.get(t, master.URL, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET master playlist: %s", resp.Status)
	}
	base := master.URL[:strings.LastIndex(master.URL, "/")+1]
	for _, line := range strings.Split(string(body), "\n") {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if r, _ := h.get(t, base+line, nil); r.StatusCode != http.StatusOK {
			t.Errorf("variant playlist %s: %s", line, r.Status)
		}
	}

	a = h.wait(t, silentID)
	steps = stepStates(a)
	if a.Status != wire.StatusSucceeded {
		t.Fatalf("silent video: %s %q", a.Status, a.Error)
	}
	for _, id := range []string{"audio", "waveform"} {
		if s := steps[id]; s.Status != "skipped" || !strings.Contains(s.Reason, "media.has_audio") {
			t.Errorf("silent video step %s = %+v, want skipped with the condition as reason", id, s)
		}
	}

	a = h.wait(t, songID)
	steps = stepStates(a)
	if a.Status != wire.StatusSucceeded || a.Pipeline != "audio" {
		t.Fatalf("audio: %s %q via %q", a.Status, a.Error, a.Pipeline)
	}
	for _, id := range []string{"probe", "audio", "waveform", "analyze"} {
		if steps[id].Status != wire.StatusSucceeded {
			t.Errorf("audio step %s = %+v", id, steps[id])
		}
	}
	if _, ok := steps["hls"]; ok {
		t.Errorf("audio pipeline ran hls")
	}
}

// TestReprocess reruns one step and then the whole pipeline: the rerun
// step's outputs move to new keys at once, the old objects go, and the
// other steps' outputs and records stay.
func TestReprocess(t *testing.T) {
	h := start(t, testConfig(t))
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 3, Video: true, Audio: true})
	id := h.uploadPut(t, clip)
	first := h.wait(t, id)
	if first.Status != wire.StatusSucceeded {
		t.Fatalf("first run: %s %q", first.Status, first.Error)
	}
	oldThumb, oldAudio := output(t, first, "thumbnail.jpg"), output(t, first, "audio.m4a")

	ctx := ctxT(t, time.Minute)
	a, err := h.client.Reprocess(ctx, id, []string{"thumbnail"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != wire.StatusPending && a.Status != wire.StatusProcessing {
		t.Errorf("status right after reprocess = %s, want pending (or processing, if a worker was quick)", a.Status)
	}
	second := h.wait(t, id)
	if second.Status != wire.StatusSucceeded {
		t.Fatalf("reprocess: %s %q", second.Status, second.Error)
	}
	newThumb, newAudio := output(t, second, "thumbnail.jpg"), output(t, second, "audio.m4a")
	if newThumb.Key == oldThumb.Key {
		t.Errorf("thumbnail key unchanged after reprocess: %s", newThumb.Key)
	}
	if newAudio.Key != oldAudio.Key {
		t.Errorf("audio was not selected but moved: %s -> %s", oldAudio.Key, newAudio.Key)
	}
	if r, _ := h.get(t, oldThumb.URL, nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("old thumbnail object: %s, want 404", r.Status)
	}
	if r, _ := h.get(t, newThumb.URL, nil); r.StatusCode != http.StatusOK {
		t.Errorf("new thumbnail: %s", r.Status)
	}
	steps := stepStates(second)
	if len(steps) != 3 || steps["probe"].Status != wire.StatusSucceeded || steps["audio"].Status != wire.StatusSucceeded ||
		steps["thumbnail"].Status != wire.StatusSucceeded {
		t.Errorf("steps after reprocessing one = %+v, want all three succeeded", second.Steps)
	}
	if !steps["thumbnail"].StartedAt.After(*steps["audio"].FinishedAt) {
		t.Errorf("thumbnail did not run again: started %v, audio finished %v", steps["thumbnail"].StartedAt, steps["audio"].FinishedAt)
	}

	// Everything again.
	if _, err := h.client.Reprocess(ctx, id, nil); err != nil {
		t.Fatal(err)
	}
	third := h.wait(t, id)
	if third.Status != wire.StatusSucceeded || output(t, third, "audio.m4a").Key == newAudio.Key {
		t.Errorf("full reprocess: %s, audio key %s", third.Status, output(t, third, "audio.m4a").Key)
	}
	if len(third.Outputs) != 2 {
		t.Errorf("outputs after full reprocess = %v, want 2", outputNames(third))
	}

	// Refusals.
	var ce *client.Error
	if _, err := h.client.Reprocess(ctx, id, []string{"nope"}); !errors.As(err, &ce) || ce.Status != http.StatusBadRequest ||
		!strings.Contains(ce.Message, `has no step "nope"`) {
		t.Errorf("unknown step: %v", err)
	}
	if _, err := h.client.Reprocess(ctx, "no-such-asset", nil); !errors.As(err, &ce) || ce.Status != http.StatusNotFound {
		t.Errorf("unknown asset: %v", err)
	}
}

// TestPipelineMatching: a configured pipeline that matches on metadata is
// chosen for the assets that carry it, and the built-ins for the rest.
func TestPipelineMatching(t *testing.T) {
	cfg := testConfig(t)
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: pro
    match:
      metadata: {tier: pro}
    steps:
      - uses: probe
      - id: small
        uses: thumbnail
        with: {width: 160}
  - extends: video
    disable: [hls, storyboard, preview, analyze, waveform, ocr, moderation, tags, describe, transcript, summary]
`)}
	h := start(t, cfg)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 2, Video: true, Audio: true})
	ctx := ctxT(t, time.Minute)
	proID, err := h.client.UploadFile(ctx, clip, client.UploadOptions{Metadata: map[string]string{"tier": "pro"}})
	if err != nil {
		t.Fatal(err)
	}
	plainID := h.uploadPut(t, clip)
	pro := h.wait(t, proID)
	if pro.Pipeline != "pro" || pro.Metadata["tier"] != "pro" || pro.Status != wire.StatusSucceeded {
		t.Fatalf("pro asset: pipeline %q, metadata %v, %s %q", pro.Pipeline, pro.Metadata, pro.Status, pro.Error)
	}
	if w, _ := mediatest.Dimensions(t, h.download(t, output(t, pro, "small/thumbnail.jpg"))); w != 160 {
		t.Errorf("pro thumbnail width = %d, want 160", w)
	}
	plain := h.wait(t, plainID)
	if plain.Pipeline != "video" || !slices.Equal(outputNames(plain), []string{"audio.m4a", "thumbnail.jpg"}) {
		t.Errorf("plain asset: pipeline %q, outputs %v", plain.Pipeline, outputNames(plain))
	}
	list, err := h.client.Pipelines(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range list.Pipelines {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "pro,video,audio,image,media" {
		t.Errorf("GET /v1/pipelines = %s", got)
	}
}

// TestHeavyBacklogDoesNotDelayThumbnails: with one worker in each pool,
// an upload whose HLS encode is running does not hold up the thumbnail
// of the next upload, which the fast pool takes at once.
func TestHeavyBacklogDoesNotDelayThumbnails(t *testing.T) {
	cfg := testConfig(t)
	cfg.Worker.Concurrency, cfg.Worker.HeavyConcurrency = 1, 1
	cfg.Engine = "native"
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: t
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: hls
        with: {heights: [720, 480, 360]}
`)}
	h := start(t, cfg)
	dir := t.TempDir()
	long := mediatest.Generate(t, dir, "long", mediatest.Clip{Width: 1280, Height: 720, Duration: 10, Video: true, Audio: true})
	short := mediatest.Generate(t, dir, "short", mediatest.Clip{Width: 640, Height: 360, Duration: 2, Video: true})
	longID := h.uploadPut(t, long)
	ctx := ctxT(t, 2*time.Minute)
	// Wait until the long clip's encode is under way in the heavy pool.
	for {
		a, err := h.client.Asset(ctx, longID)
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := stepStates(a)["hls"]; ok && s.Status == wire.StatusProcessing {
			break
		}
		if a.Done() {
			t.Fatalf("long clip finished before its encode was seen running: %+v", a.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
	shortID := h.uploadPut(t, short)
	for {
		a, err := h.client.Asset(ctx, shortID)
		if err != nil {
			t.Fatal(err)
		}
		if stepStates(a)["thumbnail"].Status == wire.StatusSucceeded {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	a, err := h.client.Asset(ctx, longID)
	if err != nil {
		t.Fatal(err)
	}
	if s := stepStates(a)["hls"]; s.Status != wire.StatusProcessing {
		t.Errorf("the long clip's encode ended (%s) before the short clip's thumbnail: nothing shown", s.Status)
	}
	// Both finish in the end; the short clip's encode waited its turn.
	if a := h.wait(t, longID); a.Status != wire.StatusSucceeded {
		t.Errorf("long: %s %q", a.Status, a.Error)
	}
	if a := h.wait(t, shortID); a.Status != wire.StatusSucceeded {
		t.Errorf("short: %s %q", a.Status, a.Error)
	}
}

// TestOnDemandThumbnail: a thumbnail rendered at delivery from URL
// parameters, stored and then served with long-lived caching; bad
// parameters are refused before any work.
func TestOnDemandThumbnail(t *testing.T) {
	h := start(t, testConfig(t))
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Width: 640, Height: 360, Duration: 4, Video: true})
	id := h.uploadPut(t, clip)
	if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset: %s %q", a.Status, a.Error)
	}
	url := h.URL() + "/v1/assets/" + id + "/thumbnail.jpg?time=50%25&width=160"
	resp, body := h.get(t, url, nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
		t.Fatalf("GET %s: %s %s %q", url, resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	p := filepath.Join(t.TempDir(), "t.jpg")
	if err := os.WriteFile(p, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if w, hh := mediatest.Dimensions(t, p); w != 160 || hh != 90 {
		t.Errorf("thumbnail = %dx%d, want 160x90", w, hh)
	}
	again, _ := h.get(t, url, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: %s, want 304", again.Status)
	}
	gif, _ := h.get(t, h.URL()+"/v1/assets/"+id+"/thumbnail.gif?duration=1&fps=5&width=120", nil)
	if gif.StatusCode != http.StatusOK || gif.Header.Get("Content-Type") != "image/gif" {
		t.Errorf("GIF: %s %s", gif.Status, gif.Header.Get("Content-Type"))
	}
	for _, q := range []string{"width=5000", "time=abc", "fit=stretch", "width=100&width=200", "colour=red"} {
		r, b := h.get(t, h.URL()+"/v1/assets/"+id+"/thumbnail.jpg?"+q, nil)
		if r.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"invalid_parameter"`) {
			t.Errorf("?%s: %s %s, want 400 invalid_parameter", q, r.Status, b)
		}
	}
	if r, _ := h.get(t, h.URL()+"/v1/assets/nope/thumbnail.jpg", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown asset: %s", r.Status)
	}
}
