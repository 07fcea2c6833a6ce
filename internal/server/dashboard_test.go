package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/wire"
)

// browser is a headless Chromium driven over the DevTools protocol. It
// records the page's uncaught exceptions, console errors and browser log
// errors (CSP violations, failed loads); checkClean fails the test on
// them.
type browser struct {
	ctx context.Context
	t   *testing.T

	mu       sync.Mutex
	problems []string
}

// newBrowser starts Debian's chromium (scripts/deps.sh installs it).
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("no Chromium found: install Debian's chromium package (scripts/deps.sh does, as root)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
		// Root in a container has no user namespaces for the sandbox.
		chromedp.NoSandbox,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// The first call starts the browser, for as long as ctx lives.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	b := &browser{ctx: ctx, t: t}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.problems = append(b.problems, fmt.Sprintf("%s (%s)", m, m.URL))
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// checkClean fails the test for everything the page reported, except
// messages containing one of allow (errors the test provoked).
func (b *browser) checkClean(allow ...string) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
next:
	for _, p := range b.problems {
		for _, a := range allow {
			if strings.Contains(p, a) {
				continue next
			}
		}
		b.t.Errorf("page: %s", p)
	}
	b.problems = nil
}

// run runs actions, failing the test with what was being done.
func (b *browser) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

func (b *browser) fail(what string, err error) {
	b.t.Helper()
	b.screenshot("failed-" + strings.NewReplacer(" ", "-", "/", "-").Replace(what))
	b.checkClean()
	b.t.Fatalf("%s: %v", what, err)
}

// waitJS waits until the expression is truthy.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+10*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[any](expr,
		chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		b.fail(what, err)
	}
}

// clear empties an input as a user deleting its text would.
func (b *browser) clear(sel string) {
	b.t.Helper()
	eval[bool](b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); return true })()`, sel))
}

// eval evaluates a JavaScript expression.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.fail("evaluate "+expr, err)
	}
	return v
}

// screenshot saves the whole page as a test artifact: under
// $SLUICE_ARTIFACTS, else artifacts/ at the repository root.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "artifacts")
	}
	dir = filepath.Join(dir, "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	// From the top, so that the sticky header sits there in the picture.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.scrollTo(0, 0); true`)); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // the whole page, as PNG
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	abs, _ := filepath.Abs(path)
	b.t.Logf("screenshot: %s", abs)
}

// TestDashboard drives the dashboard in headless Chromium the way an
// operator would: sign in with an API key, upload a clip through the
// page (tus), watch it reach succeeded without a reload, open it, play
// the HLS rendition, seek with the transcript, and replay a dead letter
// from the queue page. Screenshots of each page are saved as artifacts.
func TestDashboard(t *testing.T) {
	_, cfg := fakeOpenAI(t, "{transcribe: whisper-1}")
	cfg.HistoryInterval = time.Second
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: video
    match: {content_types: ["video/*"]}
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: waveform
      - {uses: hls, with: {heights: [240], segment_duration: 2s}}
      - uses: storyboard
      - uses: transcript
  - name: audio
    match: {content_types: ["audio/*"]}
    steps:
      - uses: probe
      - uses: audio
      - uses: waveform
  - name: image
    match: {content_types: ["image/*"]}
    steps:
      - uses: probe
      - uses: image
`)}
	h := start(t, cfg)
	dir := t.TempDir()
	clip := mediatest.Generate(t, dir, "talk", mediatest.Clip{Width: 426, Height: 240, Duration: 6, Video: true, Audio: true})
	b := newBrowser(t)

	// Sign in. The key is typed into a password field and never appears
	// in the page afterwards.
	b.run("open the dashboard", chromedp.Navigate(h.URL()+"/"), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	b.screenshot("sign-in")
	b.run("sign in", chromedp.SendKeys(chromedp.CSS("#api-key"), "sk_wrong"), chromedp.Click(chromedp.CSS("#sign-in")))
	b.waitJS("a wrong key refused", `(document.querySelector('#sign-in-error')?.textContent || '').length > 0`, 10*time.Second)
	b.clear("#api-key")
	b.run("sign in", chromedp.SendKeys(chromedp.CSS("#api-key"), testToken), chromedp.Click(chromedp.CSS("#sign-in")),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="whoami"]`)))
	if eval[bool](b, fmt.Sprintf(`[document.documentElement.outerHTML, document.title, location.href].some(s => s.includes(%q))`, testToken)) {
		t.Error("the API key is shown in the page after sign-in")
	}
	// The wrong key's 401 is the only error the page may have logged.
	b.checkClean("401")

	// Upload through the page; the tab is never reloaded (the marker
	// would be gone).
	b.run("go to assets", chromedp.Navigate(h.URL()+"/ui/#/assets"), chromedp.WaitVisible(chromedp.CSS("#dropzone")))
	eval[bool](b, `window.__sluiceNoReload = true`)
	b.run("choose the clip", chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{clip}))
	row := `.upload-row[data-name="talk.mp4"]`
	b.waitJS("the upload row gets its asset", fmt.Sprintf(`!!document.querySelector('%s[data-asset-id]')`, row), 30*time.Second)
	id := eval[string](b, fmt.Sprintf(`document.querySelector('%s').dataset.assetId`, row))
	b.waitJS("the upload completes", fmt.Sprintf(`document.querySelector('%s progress').value == 100`, row), 30*time.Second)
	assetRow := fmt.Sprintf(`tr.asset-row[data-id="%s"]`, id)
	b.waitJS("the asset appears in the list", fmt.Sprintf(`!!document.querySelector('%s')`, assetRow), 30*time.Second)
	b.waitJS("the asset reaches succeeded live", fmt.Sprintf(
		`document.querySelector('%s')?.dataset.status === 'succeeded' && document.querySelector('%[1]s .status').textContent.includes('succeeded')`, assetRow),
		2*time.Minute)
	if !eval[bool](b, `window.__sluiceNoReload === true`) {
		t.Error("the page reloaded while the asset was processed")
	}
	if a := h.wait(t, id); a.Status != wire.StatusSucceeded {
		t.Fatalf("asset %s: %s %q", id, a.Status, a.Error)
	}
	// The page uploaded with tus (resumable).
	if _, body := h.get(t, h.URL()+"/metrics", nil); !strings.Contains(string(body), `sluice_uploads_total{method="tus",outcome="ok"} 1`) {
		t.Error("the page's upload was not a tus upload")
	}
	b.waitJS("the thumbnail shows", fmt.Sprintf(`(() => { const i = document.querySelector('%s img'); return i && i.complete && i.naturalWidth > 0 })()`, assetRow), 20*time.Second)
	b.screenshot("assets")

	// Resume: an upload that stopped part way (here: begun outside the
	// page, and remembered the way the page remembers its own) goes on
	// from where it stopped when the same file is chosen again.
	part := mediatest.Generate(t, dir, "resumed", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true})
	partID, location := startTusUpload(t, h, part, 64<<10)
	st, err := os.Stat(part)
	if err != nil {
		t.Fatal(err)
	}
	eval[bool](b, fmt.Sprintf(`localStorage.setItem('sluice.uploads', JSON.stringify({[%q]: {location: %q, assetId: %q}})); true`,
		fmt.Sprintf("tus:resumed.mp4:%d:%d", st.Size(), st.ModTime().UnixMilli()), location, partID))
	b.run("choose the stopped upload's file", chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{part}))
	resumed := `.upload-row[data-name="resumed.mp4"]`
	b.waitJS("the upload resumes and completes", fmt.Sprintf(`document.querySelector('%s progress')?.value == 100`, resumed), 30*time.Second)
	if got := eval[string](b, fmt.Sprintf(`document.querySelector('%s').dataset.assetId`, resumed)); got != partID {
		t.Errorf("the page uploaded the file as asset %q, want the stopped upload's %q resumed", got, partID)
	}
	if a := h.wait(t, partID); a.Status != wire.StatusSucceeded {
		t.Errorf("resumed asset: %s %q", a.Status, a.Error)
	}

	// Filters: a search that excludes the clip empties the table.
	b.run("search", chromedp.SendKeys(chromedp.CSS("#search"), "no-such-name"))
	b.waitJS("the search filters", fmt.Sprintf(`!document.querySelector('%s')`, assetRow), 10*time.Second)
	b.clear("#search")
	b.run("search again", chromedp.SendKeys(chromedp.CSS("#search"), "talk"))
	b.waitJS("the search finds it", fmt.Sprintf(`!!document.querySelector('%s')`, assetRow), 10*time.Second)

	// The asset page: play the HLS rendition.
	b.run("open the asset", chromedp.Click(chromedp.CSS(assetRow+" a.asset-link")),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#asset[data-id="%s"]`, id))))
	b.waitJS("the player is set up", `['mse', 'native'].includes(document.querySelector('#player')?.dataset.source)`, 20*time.Second)
	eval[bool](b, `document.querySelector('#player').muted = true; document.querySelector('#player').play(); true`)
	b.waitJS("the video plays", `document.querySelector('#player').currentTime > 1`, 30*time.Second)
	playing := eval[struct {
		Width  int     `json:"w"`
		Height int     `json:"h"`
		Dur    float64 `json:"d"`
	}](b, `(() => { const v = document.querySelector('#player'); return {w: v.videoWidth, h: v.videoHeight, d: v.duration} })()`)
	if playing.Width != 426 || playing.Height != 240 || playing.Dur < 5.5 || playing.Dur > 6.5 {
		t.Errorf("playing %+v, want the 426x240 rendition of a 6 s clip", playing)
	}
	// The step timeline, waveform and storyboard are there.
	b.waitJS("the step timeline", `document.querySelectorAll('#steps .step[data-status="succeeded"]').length === 6`, 10*time.Second)
	b.waitJS("the waveform", `document.querySelector('canvas#waveform')?.width > 0`, 10*time.Second)
	b.waitJS("the storyboard", `!!document.querySelector('#storyboard')`, 10*time.Second)

	// The transcript: clicking the second line seeks the player to it.
	b.waitJS("the transcript", `document.querySelectorAll('#transcript .cue').length === 2`, 10*time.Second)
	// Every seek's target is recorded, so that the check does not race
	// the playback that follows it.
	eval[bool](b, `(() => { const v = document.querySelector('#player'); v.pause(); window.__seeks = [];
		v.addEventListener('seeking', () => window.__seeks.push(v.currentTime)); return true })()`)
	b.run("click a transcript line", chromedp.Click(chromedp.CSS(`#transcript .cue[data-start="2.4"]`)))
	b.waitJS("the player seeks to the line", `window.__seeks.some(t => Math.abs(t - 2.4) < 0.05)`, 10*time.Second)
	b.waitJS("the line is marked", `document.querySelector('#transcript .cue[data-start="2.4"]').classList.contains('active')`, 10*time.Second)

	// Storyboard scrubbing: pointing at 90% of the bar (5.4 s of 6)
	// shows the second tile (one per 5 s) and the time; a click seeks.
	storyboardPoint := func() (x, y float64) {
		b.run("scroll to the storyboard", chromedp.ScrollIntoView(chromedp.CSS("#storyboard .sb-track")))
		at := eval[struct{ X, Y float64 }](b, `(() => { const r = document.querySelector('#storyboard .sb-track').getBoundingClientRect();
			return {x: r.left + r.width * 0.9, y: r.top + r.height / 2} })()`)
		return at.X, at.Y
	}
	x, y := storyboardPoint()
	b.run("point at the storyboard", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y))
	b.waitJS("the storyboard tile shows", `(() => { const p = document.querySelector('#storyboard .sb-preview'), t = p.querySelector('.sb-tile');
		return !p.hidden && t.style.backgroundImage.includes('storyboard') && t.style.backgroundPosition.startsWith('-160px')
			&& p.querySelector('.sb-time').textContent.includes('0:05') })()`, 10*time.Second)
	b.screenshot("asset") // scrolls
	x, y = storyboardPoint()
	b.run("click the storyboard", chromedp.MouseClickXY(x, y))
	b.waitJS("the player seeks to the storyboard's time", `window.__seeks.some(t => Math.abs(t - 5.4) < 0.3)`, 10*time.Second)

	// Reprocess from the page: the status goes back to pending or processing
	// to succeeded, live, and the player is the same element throughout.
	eval[bool](b, `(() => { window.confirm = () => true; window.__player = document.querySelector('#player'); window.__statuses = [];
		const el = document.querySelector('#asset-status');
		new MutationObserver(() => window.__statuses.push(el.textContent)).observe(el, {childList: true, characterData: true, subtree: true});
		return true })()`)
	b.run("reprocess", chromedp.Click(chromedp.CSS("#reprocess")))
	b.waitJS("the reprocessed asset succeeds again", `window.__statuses.some(s => s.includes('processing') || s.includes('pending')) &&
		window.__statuses.at(-1).includes('succeeded')`, time.Minute)
	if !eval[bool](b, `window.__player === document.querySelector('#player')`) {
		t.Error("the player was replaced when the asset was reprocessed")
	}

	// The metrics page charts the history.
	b.run("open metrics", chromedp.Navigate(h.URL()+"/ui/#/metrics"))
	b.waitJS("the charts", `document.querySelectorAll('#charts figure.chart canvas').length >= 6`, 20*time.Second)
	b.screenshot("metrics")

	// An audio asset plays in the same player, with its waveform; an
	// image shows its picture.
	song := h.wait(t, h.uploadPut(t, mediatest.Generate(t, dir, "song", mediatest.Clip{Duration: 4, Audio: true, Ext: ".m4a"})))
	b.run("open the audio asset", chromedp.Navigate(h.URL()+"/ui/#/assets/"+song.ID),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#asset[data-id="%s"]`, song.ID))))
	b.waitJS("the audio player is set up", `document.querySelector('#player')?.dataset.source === 'audio'`, 20*time.Second)
	eval[bool](b, `document.querySelector('#player').muted = true; document.querySelector('#player').play(); true`)
	b.waitJS("the audio plays", `document.querySelector('#player').currentTime > 0.5`, 30*time.Second)
	b.waitJS("the audio's waveform", `document.querySelector('canvas#waveform')?.width > 0`, 10*time.Second)
	png := filepath.Join(dir, "picture.png")
	mediatest.Run(t, "ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=640x480", "-frames:v", "1", "-update", "1", png)
	picture := h.wait(t, h.uploadPut(t, png))
	b.run("open the image asset", chromedp.Navigate(h.URL()+"/ui/#/assets/"+picture.ID),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#asset[data-id="%s"]`, picture.ID))))
	b.waitJS("the image's media info, without a frame rate", `(() => { const t = document.querySelector('#media-info')?.textContent || '';
		return t.includes('640×480') && !t.includes('fps') })()`, 20*time.Second)
	b.waitJS("the image shows", `(() => { const i = document.querySelector('.player-fallback img'); return i && i.complete && i.naturalWidth > 0 })()`, 20*time.Second)
	b.screenshot("image")

	// Deleting the image from its page: back to the list, which no longer
	// has it; the API has forgotten it.
	eval[bool](b, `window.confirm = () => true; true`)
	b.run("delete the image", chromedp.Click(chromedp.CSS("#delete-asset")))
	b.waitJS("back on the assets list", `location.hash === '#/assets' && !!document.querySelector('#assets')`, 10*time.Second)
	b.waitJS("the deleted image is not listed", fmt.Sprintf(`!document.querySelector('tr.asset-row[data-id="%s"]') && document.querySelectorAll('tr.asset-row').length > 0`, picture.ID), 10*time.Second)
	if _, err := h.client.Asset(ctxT(t, 10*time.Second), picture.ID); !isStatus(err, http.StatusNotFound) {
		t.Errorf("the image after its deletion from the page: %v, want 404", err)
	}

	// A dead letter, replayed from the queue page once its bytes are back.
	lost := mediatest.Generate(t, dir, "lost", mediatest.Clip{Width: 320, Height: 240, Duration: 2, Video: true, Audio: true})
	lostID, restore := h.lostUpload(t, lost)
	if a := h.wait(t, lostID); a.Status != wire.StatusFailed {
		t.Fatalf("lost upload: %s, want failed", a.Status)
	}
	b.run("open the queue", chromedp.Navigate(h.URL()+"/ui/#/queue"))
	letter := `tr.dead-letter`
	b.waitJS("the dead letter is listed", fmt.Sprintf(`[...document.querySelectorAll('%s')].some(r => r.textContent.includes('%s'))`, letter, lostID), 20*time.Second)
	b.screenshot("queue")
	restore()
	b.run("replay", chromedp.Click(chromedp.CSS(letter+" button.replay")))
	b.waitJS("the dead letter is gone", fmt.Sprintf(`!document.querySelector('%s')`, letter), 10*time.Second)
	waitUntil(t, "the replayed asset to succeed", func() bool {
		a, err := h.client.Asset(ctxT(t, 10*time.Second), lostID)
		return err == nil && a.Status == wire.StatusSucceeded
	})

	// Signing out forgets the key: the API calls the page makes are refused.
	b.run("sign out", chromedp.Click(chromedp.CSS("#sign-out")), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	if eval[bool](b, fmt.Sprintf(`[sessionStorage, localStorage].some(s => Object.values(s).some(v => v.includes(%q)))`, testToken)) {
		t.Error("the key is still stored after signing out")
	}
	b.checkClean()

	// The dashboard's files carry a strict CSP.
	resp, err := http.Get(h.URL() + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("dashboard CSP = %q", csp)
	}
}

// startTusUpload creates a tus upload of path and sends its first n
// bytes, as a client that then went away would have.
func startTusUpload(t *testing.T, h *harness, path string, n int64) (assetID, location string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	name := base64.StdEncoding.EncodeToString([]byte(filepath.Base(path)))
	req, _ := http.NewRequest("POST", h.URL()+"/v1/tus/", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
	req.Header.Set("Upload-Metadata", "filename "+name)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	location, assetID = resp.Header.Get("Location"), resp.Header.Get("Sluice-Asset-Id")
	if resp.StatusCode != http.StatusCreated || location == "" || assetID == "" {
		t.Fatalf("tus create: %s, Location %q, asset %q", resp.Status, location, assetID)
	}
	req, _ = http.NewRequest("PATCH", location, bytes.NewReader(data[:n]))
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Offset", "0")
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Offset") != strconv.FormatInt(n, 10) {
		t.Fatalf("tus patch: %s, offset %q", resp.Status, resp.Header.Get("Upload-Offset"))
	}
	return assetID, location
}
