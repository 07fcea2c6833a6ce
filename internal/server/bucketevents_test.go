package server

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/mediatest"
	"github.com/sluice-media/sluice/internal/notify"
	"github.com/sluice-media/sluice/internal/notify/cfqueuetest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/wire"
)

// s3Event is an S3 event notification for one created object, as AWS
// and MinIO send it (the key URL-encoded).
func s3Event(bucket, key string, size int64, etag string) string {
	return fmt.Sprintf(`{"Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"",
"eventTime":"2026-11-25T12:00:00.000Z","eventName":"s3:ObjectCreated:Put",
"s3":{"s3SchemaVersion":"1.0","bucket":{"name":%q,"arn":"arn:aws:s3:::%s"},
"object":{"key":%q,"size":%d,"eTag":%q,"sequencer":"1"}}}]}`, bucket, bucket, url.QueryEscape(key), size, etag)
}

// TestBucketNotifications processes objects that the bucket announces
// (on the webhook endpoint and on a NATS subject) exactly like uploads.
func TestBucketNotifications(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsAddr := ln.Addr().String()
	ln.Close()
	cfg := testConfig(t)
	cfg.Queue.Listen = natsAddr
	cfg.BucketEventsSubject = "bucket.events"
	h := start(t, cfg)
	ctx := ctxT(t, time.Minute)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true, Audio: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	// Another system writes objects into the bucket.
	put := func(key string) blob.Attrs {
		attrs, err := h.bucket.Put(ctx, key, bytes.NewReader(data), blob.PutOptions{Size: -1})
		if err != nil {
			t.Fatal(err)
		}
		return attrs
	}
	hook := h.newKey(t, wire.KeyRequest{Name: "minio", Scopes: []string{auth.ScopeEvents}})
	reader := h.newKey(t, wire.KeyRequest{Name: "reader", Scopes: []string{auth.ScopeRead}})

	a1 := put("inbox/first clip.mp4")
	body := s3Event(BucketName, "inbox/first clip.mp4", a1.Size, `"`+a1.ETag+`"`)
	if status, code, _ := request(t, "POST", h.URL()+"/v1/events/s3", strings.NewReader(body), bearerOf(reader.Token), -1); status != 403 {
		t.Errorf("notification with a read key: %d %s, want 403", status, code)
	}
	for range 2 { // a sender retrying: one asset
		if status, code, resp := request(t, "POST", h.URL()+"/v1/events/s3", strings.NewReader(body), bearerOf(hook.Token), -1); status != 204 {
			t.Fatalf("notification: %d %s %s", status, code, resp)
		}
	}
	if status, code, _ := request(t, "POST", h.URL()+"/v1/events/s3", strings.NewReader(`{"Records":[{"s3":`), bearerOf(hook.Token), -1); status != 400 {
		t.Errorf("malformed notification: %d %s, want 400", status, code)
	}

	// The same on the NATS subject.
	a2 := put("inbox/second.mp4")
	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("bucket.events", []byte(s3Event(BucketName, "inbox/second.mp4", a2.Size, a2.ETag))); err != nil {
		t.Fatal(err)
	}
	_ = nc.Flush()

	got := map[string]store.Asset{}
	deadline := time.Now().Add(time.Minute)
	for len(got) < 2 || got["inbox/first clip.mp4"].Status != store.StatusSucceeded || got["inbox/second.mp4"].Status != store.StatusSucceeded {
		if time.Now().After(deadline) {
			t.Fatalf("assets from notifications: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
		page, err := h.store.ListAssets(ctx, store.ListOptions{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		clear(got)
		for _, a := range page.Assets {
			if _, dup := got[a.Key]; dup {
				t.Fatalf("two assets for %s", a.Key)
			}
			got[a.Key] = a
		}
	}
	if a := got["inbox/first clip.mp4"]; a.Name != "first clip.mp4" || a.ContentType != "video/mp4" {
		t.Errorf("asset of the first object: %+v", a)
	}
}

// TestR2EventQueue pulls R2 event notifications from a Cloudflare Queue
// (a fake that follows the documented pull-consumer API) and processes
// the objects they announce; deletions are acknowledged and ignored.
func TestR2EventQueue(t *testing.T) {
	q := cfqueuetest.New(t, cfqueuetest.Options{})
	cfg := testConfig(t)
	cfg.R2Queue = notify.Config{AccountID: q.Options().AccountID, QueueID: q.Options().QueueID,
		Token: q.Options().Token, BaseURL: q.BaseURL(), PollInterval: 50 * time.Millisecond}
	h := start(t, cfg)
	ctx := ctxT(t, time.Minute)
	clip := mediatest.Generate(t, t.TempDir(), "clip", mediatest.Clip{Duration: 1, Video: true})
	data, err := os.ReadFile(clip)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := h.bucket.Put(ctx, "camera/r2 clip.mp4", bytes.NewReader(data), blob.PutOptions{Size: -1})
	if err != nil {
		t.Fatal(err)
	}
	r2 := func(action string) map[string]any {
		return map[string]any{"account": q.Options().AccountID, "action": action, "bucket": BucketName,
			"object":    map[string]any{"key": attrs.Key, "size": attrs.Size, "eTag": attrs.ETag},
			"eventTime": time.Now().UTC().Format(time.RFC3339)}
	}
	put := q.SendJSON(r2("PutObject"))
	del := q.SendJSON(r2("DeleteObject"))
	if err := q.Wait(ctx, func() bool {
		return q.Message(put).State == cfqueuetest.Acked && q.Message(del).State == cfqueuetest.Acked
	}); err != nil {
		t.Fatalf("messages not acknowledged: %v (%+v, %+v)", err, q.Message(put), q.Message(del))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		page, err := h.store.ListAssets(ctx, store.ListOptions{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Assets) > 1 {
			t.Fatalf("%d assets for one object", len(page.Assets))
		}
		if len(page.Assets) == 1 && page.Assets[0].Status == store.StatusSucceeded {
			if a := page.Assets[0]; a.Key != attrs.Key || a.Name != "r2 clip.mp4" {
				t.Errorf("asset: %+v", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no succeeded asset from the R2 event: %+v", page.Assets)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
