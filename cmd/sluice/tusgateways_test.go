package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/blob/s3blob/s3test"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/queue/natstest"
	"github.com/sluice-media/sluice/internal/store/postgres/pgtest"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestTusAcrossGateways: the requests of one resumable upload reach two
// gateways (no session affinity). While the first gateway is receiving a
// PATCH, a HEAD at the second asks for the upload's lock through NATS;
// the first lets go (its PATCH ends with what it got), the second answers
// with the offset, the rest is sent to the second, and the upload
// completes whole and is processed.
func TestTusAcrossGateways(t *testing.T) {
	cluster := natstest.StartCluster(t, 1)
	dsn := pgtest.Start(t)
	s3 := s3test.StartServer(t)
	mustBucket(t, s3, "media")
	env := []string{"SLUICE_DATABASE_URL=" + dsn, "SLUICE_S3_ACCESS_KEY_ID=" + s3.AccessKey, "SLUICE_S3_SECRET_ACCESS_KEY=" + s3.SecretKey}
	pipelines := filepath.Join(t.TempDir(), "light.yaml")
	if err := os.WriteFile(pipelines, []byte("pipelines:\n  - name: light\n    steps:\n      - uses: probe\n      - uses: thumbnail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	common := func() []string {
		return []string{"--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--nats-url", cluster.URLs(),
			"--pipelines", pipelines, "--s3-endpoint", s3.Endpoint, "--s3-bucket", "media", "--s3-path-style",
			"--s3-part-size", strconv.Itoa(5 << 20)}
	}
	gw1 := startProcess(t, env, append([]string{"gateway"}, common()...)...)
	gw2 := startProcess(t, env, append([]string{"gateway"}, common()...)...)
	startProcess(t, env, append([]string{"worker", "--pool", "all"}, common()...)...)

	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, make([]byte, 13<<20)...) // past two parts; MP4 readers ignore the tail
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	tus := func(method, url string, body io.Reader, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Tus-Resumable", "1.0.0")
		for i := 0; i < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	patchHeaders := func(offset int) []string {
		return []string{"Upload-Offset", strconv.Itoa(offset), "Content-Type", "application/offset+octet-stream"}
	}

	resp := tus("POST", gw1.url+"/v1/tus/", nil, "Upload-Length", strconv.Itoa(len(data)), "Upload-Metadata", "filename Y2xpcC5tcDQ=")
	id, loc := resp.Header.Get("Sluice-Asset-Id"), resp.Header.Get("Location")
	if resp.StatusCode != http.StatusCreated || id == "" || !strings.HasPrefix(loc, gw1.url) {
		t.Fatalf("create at gateway 1: %s, asset %q, Location %q", resp.Status, id, loc)
	}
	at2 := gw2.url + strings.TrimPrefix(loc, gw1.url)

	// Gateway 1 receives a PATCH whose client stalls after 6 MiB.
	body, w := io.Pipe()
	stalled := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "PATCH", loc, body)
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", "0")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.ContentLength = int64(len(data))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			stalled <- nil
			return
		}
		resp.Body.Close()
		stalled <- resp
	}()
	if _, err := w.Write(data[:6<<20]); err != nil {
		t.Fatal(err)
	}
	// Gateway 2 is asked where the upload stands: it needs the lock that
	// gateway 1 holds, asks for it, and gets it.
	head := tus("HEAD", at2, nil)
	offset, err := strconv.Atoi(head.Header.Get("Upload-Offset"))
	if head.StatusCode != http.StatusOK || err != nil || offset <= 0 || offset > 6<<20 {
		t.Fatalf("HEAD at gateway 2: %s, Upload-Offset %q; want what gateway 1 received (up to 6 MiB)", head.Status, head.Header.Get("Upload-Offset"))
	}
	t.Logf("gateway 1 let go of the upload at %d bytes", offset)
	select {
	case <-stalled:
		// Gateway 1 let go of the upload and ended its PATCH.
	case <-time.After(30 * time.Second):
		t.Fatal("gateway 1 kept the stalled PATCH open after gateway 2 asked for the upload")
	}
	w.CloseWithError(io.ErrUnexpectedEOF)

	// The rest goes to gateway 2.
	if resp := tus("PATCH", at2, bytes.NewReader(data[offset:]), patchHeaders(offset)...); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH the rest at gateway 2: %s", resp.Status)
	}
	a, err := client.New(gw1.url, testToken).Wait(ctx, id, 100*time.Millisecond)
	if err != nil || a.Status != wire.StatusSucceeded || a.Size != int64(len(data)) {
		t.Fatalf("asset: %s %q size %d (%v)", a.Status, a.Error, a.Size, err)
	}
	bucket, err := s3blob.Open(ctx, s3blob.Config{Endpoint: s3.Endpoint, Bucket: "media", AccessKeyID: s3.AccessKey,
		SecretAccessKey: s3.SecretKey, PathStyle: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := bucket.Open(ctx, upload.SourceKey(id))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stored, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(stored, data) {
		t.Fatalf("the stored upload differs from what was sent (%d bytes stored, %d sent, %v)", len(stored), len(data), err)
	}
}
