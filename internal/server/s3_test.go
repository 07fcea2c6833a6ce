package server

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/blob/s3blob/s3test"
	"github.com/sluice-media/sluice/internal/client"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

// TestOnS3 runs a server whose bucket is a real S3 server: a resumable
// (tus) upload goes to the bucket as a multipart upload of equal parts,
// and the asset is processed from there; outputs land in the bucket, and
// so does the AI result cache, where every worker shares it.
func TestOnS3(t *testing.T) {
	endpoint, ak, sk := s3test.Start(t)
	_, cfg := fakeOpenAI(t, "{transcribe: whisper-1}")
	cfg.Pipelines = []string{writePipelines(t, `
pipelines:
  - name: talk
    steps:
      - uses: probe
      - uses: thumbnail
      - uses: transcript
`)}
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.PathStyle = endpoint, s3test.Bucket(t), true
	cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey = ak, sk
	cfg.S3.PartSize = 5 << 20
	h := start(t, cfg)
	ctx := ctxT(t, 2*time.Minute)

	// A clip padded past two parts (MP4 readers ignore what follows).
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 2, Video: true, Audio: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	padded := append(data, make([]byte, 11<<20)...)
	id, err := h.client.TusUpload(ctx, bytes.NewReader(padded), int64(len(padded)),
		client.TusOptions{Name: "clip.mp4", ChunkSize: 3 << 20})
	if err != nil {
		t.Fatal(err)
	}
	a := h.wait(t, id)
	if a.Status != wire.StatusSucceeded || a.Size != int64(len(padded)) {
		t.Fatalf("asset: %s %q size %d", a.Status, a.Error, a.Size)
	}
	attrs, err := h.bucket.Stat(ctx, upload.SourceKey(id))
	if err != nil || attrs.Size != int64(len(padded)) {
		t.Fatalf("source object in the bucket: %+v %v", attrs, err)
	}
	// Every part but the last has the configured size (R2's rule).
	cl := h.bucket.(*s3blob.Bucket).Client()
	key, bucketName := upload.SourceKey(id), cfg.S3.Bucket
	for part := int32(1); part <= 3; part++ {
		head, err := cl.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucketName, Key: &key, PartNumber: &part})
		if err != nil {
			t.Fatalf("head part %d: %v", part, err)
		}
		want := int64(5 << 20)
		if part == 3 {
			want = int64(len(padded)) - 10<<20
		}
		if head.ContentLength == nil || *head.ContentLength != want {
			t.Errorf("part %d: %v bytes, want %d", part, head.ContentLength, want)
		}
	}
	thumb := output(t, a, "thumbnail.jpg")
	if _, err := h.bucket.Stat(ctx, thumb.Key); err != nil {
		t.Errorf("output not in the bucket: %v", err)
	}
	if r, _ := h.get(t, thumb.URL, nil); r.StatusCode != 200 {
		t.Errorf("output delivery from S3: %s", r.Status)
	}
	if cached, err := h.bucket.List(ctx, "cache/ai/"); err != nil || len(cached) != 1 {
		t.Errorf("AI results cached in the bucket: %+v (%v), want the transcript's", cached, err)
	}
	// Nothing of tusd's bookkeeping is left under uploads/.
	objs, _ := h.bucket.List(ctx, "uploads/")
	for _, o := range objs {
		if o.Key != upload.SourceKey(id) {
			t.Errorf("stray object under uploads/: %s", o.Key)
		}
	}
}

// TestTusExpiryOnS3: a resumable upload into the bucket tells its client
// until when it is kept (Upload-Expires), stays alive while parts arrive,
// and once it receives nothing for TusExpiry its multipart upload is
// aborted, tusd's bookkeeping deleted and its asset failed. A finished
// upload leaves no bookkeeping behind.
func TestTusExpiryOnS3(t *testing.T) {
	endpoint, ak, sk := s3test.Start(t)
	cfg := testConfig(t)
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.PathStyle = endpoint, s3test.Bucket(t), true
	cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey = ak, sk
	cfg.S3.PartSize = 5 << 20
	cfg.Upload.TusExpiry = 8 * time.Second
	h := start(t, cfg)
	ctx := ctxT(t, 2*time.Minute)

	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 2, Video: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	const part = 5 << 20
	data = append(data, make([]byte, 16*part-len(data))...) // room for a part a second while waiting
	tusReq := func(method, url string, offset int, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Tus-Resumable", "1.0.0")
		if method == "POST" {
			req.Header.Set("Upload-Length", strconv.Itoa(len(data)))
			req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte("clip.mp4")))
		} else {
			req.Header.Set("Upload-Offset", strconv.Itoa(offset))
			req.Header.Set("Content-Type", "application/offset+octet-stream")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	create := func() (url, id string) {
		t.Helper()
		resp := tusReq("POST", h.URL()+"/v1/tus/", 0, nil)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("tus create: %s", resp.Status)
		}
		return resp.Header.Get("Location"), resp.Header.Get("Sluice-Asset-Id")
	}
	cl := h.bucket.(*s3blob.Bucket).Client()
	multipart := func(id string) int {
		out, err := cl.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &cfg.S3.Bucket})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, u := range out.Uploads {
			if u.Key != nil && strings.Contains(*u.Key, id) {
				n++
			}
		}
		return n
	}
	bookkeeping := func(id string) []string {
		objs, err := h.bucket.List(ctx, "tus/"+id)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key)
		}
		return keys
	}

	// Abandoned after one part and a remainder.
	abandoned, abandonedID := create()
	resp := tusReq("PATCH", abandoned, 0, data[:6<<20])
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Upload-Expires") == "" {
		t.Fatalf("first PATCH: %s, Upload-Expires %q; want 204 with an expiry", resp.Status, resp.Header.Get("Upload-Expires"))
	}
	if multipart(abandonedID) != 1 {
		t.Fatal("no multipart upload in the bucket for the resumable upload")
	}

	// Deleting an asset whose resumable upload is under way aborts it.
	deleted, deletedID := create()
	if resp := tusReq("PATCH", deleted, 0, data[:6<<20]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PATCH: %s", resp.Status)
	}
	if status, code, body := request(t, "DELETE", h.URL()+"/v1/assets/"+deletedID, nil, nil, -1); status != http.StatusNoContent {
		t.Fatalf("delete during a resumable upload: %d %s %s", status, code, body)
	}
	if n := multipart(deletedID); n != 0 {
		t.Errorf("%d multipart uploads left in the bucket for the deleted asset", n)
	}
	if left := bookkeeping(deletedID); len(left) != 0 {
		t.Errorf("tusd bookkeeping left for the deleted asset: %v", left)
	}

	// Alive: a part a second until the abandoned one has expired (which
	// would have struck it too), finished later.
	alive, aliveID := create()
	sent := 0
	var a wire.Asset
	for deadline := time.Now().Add(time.Minute); ; {
		if sent+part >= len(data) || time.Now().After(deadline) {
			t.Fatalf("the abandoned upload did not expire while %d bytes went to the live one", sent)
		}
		if resp := tusReq("PATCH", alive, sent, data[sent:sent+part]); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("PATCH at %d: %s", sent, resp.Status)
		}
		sent += part
		if a, err = h.client.Asset(ctx, abandonedID); err != nil {
			t.Fatal(err)
		}
		if a.Status != wire.StatusPending {
			break
		}
		time.Sleep(time.Second)
	}
	if a.Status != wire.StatusFailed || !strings.Contains(a.Error, "resumable upload abandoned") {
		t.Fatalf("abandoned upload's asset: %s %q, want failed as abandoned", a.Status, a.Error)
	}
	if n := multipart(abandonedID); n != 0 {
		t.Errorf("%d multipart uploads left in the bucket for the abandoned upload", n)
	}
	if left := bookkeeping(abandonedID); len(left) != 0 {
		t.Errorf("tusd bookkeeping left for the abandoned upload: %v", left)
	}
	if resp := tusReq("HEAD", abandoned, 0, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the abandoned upload: %s, want 404", resp.Status)
	}

	if resp := tusReq("PATCH", alive, sent, data[sent:]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("last PATCH: %s", resp.Status)
	}
	if a := h.wait(t, aliveID); a.Status != wire.StatusSucceeded {
		t.Fatalf("live upload's asset: %s %q, want succeeded", a.Status, a.Error)
	}
	if left := bookkeeping(aliveID); len(left) != 0 {
		t.Errorf("tusd bookkeeping left after the upload finished: %v", left)
	}
}
