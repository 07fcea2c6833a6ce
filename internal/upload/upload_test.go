package upload

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/fileblob"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/store/sqlite"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/wire"
)

type fixture struct {
	svc   *Service
	store *sqlite.Store
	bkt   *fileblob.Bucket
	q     *queue.Queue
	clock time.Time
}

// newFixture builds the service on real backends (SQLite, the file
// bucket, embedded JetStream) with a clock the test moves.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	b, err := fileblob.Open(filepath.Join(dir, "bucket"), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	q, err := queue.Open(ctx, queue.Config{StoreDir: filepath.Join(dir, "nats")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	signer, err := auth.NewSigner("k", map[string][]byte{"k": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: st, bkt: b, q: q, clock: time.Now()}
	f.svc = New(Config{TusDir: filepath.Join(dir, "tus")}, st, b, q, signer, telemetry.New(), slog.New(slog.DiscardHandler))
	f.svc.now = func() time.Time { return f.clock }
	return f
}

// pending is the number of events waiting for the fast pool. The
// server updates a consumer's count just after a publish is
// acknowledged, so a count that is still short is read again briefly.
func (f *fixture) pending(t *testing.T, want uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		d, err := f.q.Depth(t.Context(), queue.PoolFast)
		if err != nil {
			t.Fatal(err)
		}
		if d.Pending >= want || time.Now().After(deadline) {
			return d.Pending
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestReconcileCompletesStoredButUnrecordedUpload(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	up, err := f.svc.Create(ctx, wire.UploadRequest{Name: "a.mp4", Size: 8}, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	// The bytes landed, then the process died before recording them.
	if _, err := f.bkt.Put(ctx, SourceKey(up.AssetID), bytes.NewReader(pngHead), blob.PutOptions{Size: 8}); err != nil {
		t.Fatal(err)
	}
	if st, err := f.svc.Reconcile(ctx); err != nil || st != (ReconcileStats{}) {
		t.Fatalf("before expiry: %+v %v, want nothing done", st, err)
	}
	f.clock = f.clock.Add(f.svc.cfg.URLExpiry + 2*time.Minute)
	st, err := f.svc.Reconcile(ctx)
	if err != nil || st.Completed != 1 {
		t.Fatalf("Reconcile = %+v %v, want 1 completed", st, err)
	}
	a, _ := f.store.GetAsset(ctx, up.AssetID)
	if a.UploadedAt.IsZero() || a.Size != 8 || a.Status != store.StatusPending {
		t.Errorf("asset = %+v, want uploaded, 8 bytes, pending", a)
	}
	if got := f.pending(t, 1); got != 1 {
		t.Errorf("events queued = %d, want 1", got)
	}
}

func TestReconcileExpiresAbandonedPut(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	up, err := f.svc.Create(ctx, wire.UploadRequest{Name: "a.mp4", Size: 8}, "http://x")
	if err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(f.svc.cfg.URLExpiry + 2*time.Minute)
	st, err := f.svc.Reconcile(ctx)
	if err != nil || st.Expired != 1 {
		t.Fatalf("Reconcile = %+v %v, want 1 expired", st, err)
	}
	a, _ := f.store.GetAsset(ctx, up.AssetID)
	if a.Status != store.StatusFailed || !strings.Contains(a.Error, "not completed before its URL expired") {
		t.Errorf("asset = %s %q", a.Status, a.Error)
	}
	if st, _ := f.svc.Reconcile(ctx); st.Expired != 0 {
		t.Errorf("second pass expired %d again", st.Expired)
	}
}

// An uploaded asset whose event was lost is queued again; one whose event
// is still waiting in the queue is not duplicated.
func TestReconcileRequeuesOnlyLostEvents(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	put := func(name string) string {
		up, err := f.svc.Create(ctx, wire.UploadRequest{Name: name, Size: 8}, "http://x")
		if err != nil {
			t.Fatal(err)
		}
		u := strings.SplitN(up.URL, "?", 2)
		q, _ := urlQuery(u[1])
		c, err := f.svc.signer.Verify("PUT", ContentPath(up.AssetID), q, f.clock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Receive(ctx, Put{AssetID: up.AssetID, Body: bytes.NewReader(pngHead), ContentLength: 8, Constraints: c}); err != nil {
			t.Fatal(err)
		}
		return up.AssetID
	}
	waiting := put("waiting.mp4")
	lost := put("lost.mp4")
	// Take the lost asset's event off the queue without processing it.
	done := make(chan struct{})
	cons := f.q.Consume(ctx, queue.PoolFast, 1, func(ctx context.Context, d *queue.Delivery) {
		if d.Event.AssetID == lost {
			_ = d.Ack(ctx)
			close(done)
			return
		}
		_ = d.Defer(time.Hour)
	})
	<-done
	cons.Stop()
	cons.Wait()

	f.clock = f.clock.Add(f.svc.cfg.StaleAfter + time.Minute)
	st, err := f.svc.Reconcile(ctx)
	if err != nil || st.Requeued != 1 {
		t.Fatalf("Reconcile = %+v %v, want 1 requeued", st, err)
	}
	for id, want := range map[string]bool{waiting: true, lost: true} {
		if got, _ := f.q.Queued(ctx, id); got != want {
			t.Errorf("Queued(%s) = %v, want %v", id, got, want)
		}
	}
}

func TestTusExpirationAndTermination(t *testing.T) {
	f := newFixture(t)
	h, err := f.svc.TusHandler("/files/")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/files", h))
	defer srv.Close()
	create := func() (string, *http.Response) {
		req, _ := http.NewRequest("POST", srv.URL+"/files/", nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", "100")
		req.Header.Set("Upload-Metadata", "filename "+b64("movie.mp4"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("create: %s", resp.Status)
		}
		return resp.Header.Get("Sluice-Asset-Id"), resp
	}
	id, resp := create()
	if _, err := http.ParseTime(resp.Header.Get("Upload-Expires")); err != nil {
		t.Errorf("Upload-Expires = %q: %v", resp.Header.Get("Upload-Expires"), err)
	}
	opt, _ := http.NewRequest("OPTIONS", srv.URL+"/files/", nil)
	oresp, err := http.DefaultClient.Do(opt)
	if err != nil {
		t.Fatal(err)
	}
	oresp.Body.Close()
	if ext := oresp.Header.Get("Tus-Extension"); !strings.Contains(ext, "expiration") || !strings.Contains(ext, "termination") {
		t.Errorf("Tus-Extension = %q, want expiration and termination", ext)
	}
	a, err := f.store.GetAsset(t.Context(), id)
	if err != nil || a.Name != "movie.mp4" || a.Size != 100 {
		t.Fatalf("asset = %+v %v", a, err)
	}

	// Idle past the expiry: the upload and its files go, the asset fails.
	f.clock = f.clock.Add(25 * time.Hour)
	st, err := f.svc.Reconcile(t.Context())
	if err != nil || st.Expired != 1 {
		t.Fatalf("Reconcile = %+v %v, want 1 expired", st, err)
	}
	if left, _ := os.ReadDir(f.svc.cfg.TusDir); len(left) != 0 {
		t.Errorf("tus dir still holds %d files", len(left))
	}
	a, _ = f.store.GetAsset(t.Context(), id)
	if a.Status != store.StatusFailed || !strings.Contains(a.Error, "abandoned") {
		t.Errorf("asset = %s %q", a.Status, a.Error)
	}

	// Termination by the client fails the asset too.
	id2, _ := create()
	del, _ := http.NewRequest("DELETE", srv.URL+"/files/"+id2, nil)
	del.Header.Set("Tus-Resumable", "1.0.0")
	dresp, err := http.DefaultClient.Do(del)
	if err != nil {
		t.Fatal(err)
	}
	dresp.Body.Close()
	if dresp.StatusCode != 204 {
		t.Fatalf("DELETE: %s", dresp.Status)
	}
	a, _ = f.store.GetAsset(t.Context(), id2)
	if a.Status != store.StatusFailed || !strings.Contains(a.Error, "cancelled") {
		t.Errorf("terminated asset = %s %q", a.Status, a.Error)
	}
}

// pngHead is 8 bytes that sniff as a PNG image: content uploads accept.
var pngHead = []byte("\x89PNG\r\n\x1a\n")

func TestReceiveChecks(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	body := append(pngHead, 0, 0) // 10 bytes
	for _, tt := range []struct {
		name   string
		length int64
		ctype  string
		c      map[string]string
		want   error
		body   []byte // default body
	}{
		{"longer than declared", 11, "", map[string]string{"size": "10"}, ErrTooLarge, nil},
		{"shorter than declared", 9, "", map[string]string{"size": "10"}, ErrInvalid, nil},
		{"no size signed", 10, "", map[string]string{}, ErrInvalid, nil},
		{"wrong content type", 10, "text/plain", map[string]string{"size": "10", "type": "video/mp4"}, ErrInvalid, nil},
		{"wrong checksum", 10, "", map[string]string{"size": "10", "sha256": hex.EncodeToString(make([]byte, 32))}, blob.ErrChecksumMismatch, nil},
		{"not media", 10, "", map[string]string{"size": "10"}, ErrUnsupportedType, []byte("#EXTM3U\n#x\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up, err := f.svc.Create(ctx, wire.UploadRequest{Name: "x", Size: 10}, "")
			if err != nil {
				t.Fatal(err)
			}
			b := body
			if tt.body != nil {
				b = tt.body
			}
			_, err = f.svc.Receive(ctx, Put{AssetID: up.AssetID, Body: bytes.NewReader(b), ContentLength: tt.length, ContentType: tt.ctype, Constraints: tt.c})
			if !isErr(err, tt.want) {
				t.Errorf("Receive = %v, want %v", err, tt.want)
			}
			if _, err := f.bkt.Stat(ctx, SourceKey(up.AssetID)); err == nil {
				t.Error("rejected body was stored")
			}
		})
	}
}

func TestCleanName(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 bytes
	for _, tt := range []struct{ in, want string }{
		{"clip.mp4", "clip.mp4"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\me\video.mov`, "video.mov"},
		{"  .hidden  ", "hidden"},
		{"a\x00b\x1fc\u200bd", "abcd"},
		{"e\u0301", "\u00e9"}, // NFC
		{"", "upload"},
		{"/", "upload"},
		{"bad\xffutf8", "badutf8"},
	} {
		if got := CleanName(tt.in); got != tt.want {
			t.Errorf("CleanName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := CleanName(long); len(got) > 255 || !strings.HasPrefix(long, got) {
		t.Errorf("CleanName(long) = %d bytes, want a prefix of at most 255", len(got))
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }
