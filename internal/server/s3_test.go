package server

import (
	"bytes"
	"os"
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
