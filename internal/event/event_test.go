package event_test

import (
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/event"
)

func TestIdempotencyKey(t *testing.T) {
	base := event.ObjectCreated{Action: event.ActionPutObject, Bucket: "b", Key: "k/1", ETag: "e", AssetID: "a", EventTime: time.Unix(1, 0)}
	same := base
	same.Action, same.EventTime, same.Size = event.ActionCopyObject, time.Unix(99, 0), 7
	if base.IdempotencyKey() != same.IdempotencyKey() {
		t.Error("key depends on more than bucket, key and etag")
	}
	for _, other := range []event.ObjectCreated{
		{Bucket: "b2", Key: "k/1", ETag: "e"},
		{Bucket: "b", Key: "k/2", ETag: "e"},
		{Bucket: "b", Key: "k/1", ETag: "f"},
		{Bucket: "b/k", Key: "1", ETag: "e"}, // no ambiguity from joining
	} {
		if other.IdempotencyKey() == base.IdempotencyKey() {
			t.Errorf("%+v has the same key as %+v", other, base)
		}
	}
	if base.PublishID() != base.IdempotencyKey() {
		t.Error("an upload's publish id is not its idempotency key")
	}
	r1, r2 := base, base
	r1.Action, r2.Action = event.ActionReconcile, event.ActionReconcile
	r2.EventTime = r1.EventTime.Add(time.Second)
	if r1.PublishID() == base.PublishID() || r1.PublishID() == r2.PublishID() {
		t.Error("reconcile events share publish ids")
	}
}

func TestUnmarshalValidates(t *testing.T) {
	for _, data := range []string{`{`, `{}`, `{"bucket":"b","key":"k"}`, `{"bucket":"b","key":"k","assetId":"a","size":-1}`} {
		if _, err := event.Unmarshal([]byte(data)); err == nil {
			t.Errorf("Unmarshal(%s) accepted", data)
		}
	}
	e, err := event.Unmarshal([]byte(`{"action":"PutObject","bucket":"b","key":"k","size":3,"etag":"x","eventTime":"2026-01-02T03:04:05Z","assetId":"a"}`))
	if err != nil || e.Size != 3 || e.EventTime.Year() != 2026 {
		t.Errorf("Unmarshal = %+v, %v", e, err)
	}
}

// A reprocessing run is a new job of the same object version; its heavy
// stage is published under its own id, so that deduplication of the
// fast-stage event does not swallow it.
func TestRunsAndStages(t *testing.T) {
	base := event.ObjectCreated{Action: event.ActionPutObject, Bucket: "b", Key: "k", ETag: "e", AssetID: "a"}
	run := base
	run.Action, run.Run, run.Steps = event.ActionReprocess, "r1", []string{"hls"}
	run2 := run
	run2.Run = "r2"
	if run.IdempotencyKey() == base.IdempotencyKey() || run.IdempotencyKey() == run2.IdempotencyKey() {
		t.Error("reprocessing runs share a job key with each other or with the first run")
	}
	heavy := base
	heavy.Stage = event.StageHeavy
	if heavy.IdempotencyKey() != base.IdempotencyKey() {
		t.Error("the heavy stage is a different job")
	}
	if heavy.PublishID() == base.PublishID() {
		t.Error("the heavy stage's publish id equals the fast stage's")
	}
	bad := base
	bad.Stage = "medium"
	if bad.Validate() == nil {
		t.Error("unknown stage accepted")
	}
}
