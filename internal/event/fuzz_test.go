package event_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/event"
)

// FuzzUnmarshal feeds arbitrary bytes to Unmarshal, as a queue consumer
// would on a poisoned message: it must never panic; an event it accepts
// must pass Validate, encode again, and decode from that encoding to the
// same event with the same IdempotencyKey and PublishID, so that a
// republished event is the same job.
func FuzzUnmarshal(f *testing.F) {
	for _, seed := range []string{
		`{"action":"PutObject","bucket":"b","key":"k","size":3,"etag":"x","eventTime":"2026-01-02T03:04:05Z","assetId":"a"}`,
		`{"action":"Reprocess","bucket":"media","key":"sources/a/v.mp4","size":1048576,"etag":"9e107d9d372bb6826bd81d3542a419d6","eventTime":"2026-01-02T03:04:05.123456789+05:30","assetId":"0190a5c2-7b1e-7cc0-8f3a-1d2e3f4a5b6c","stage":"heavy","run":"r1","steps":["hls","thumbnail"],"base":"j0"}`,
		`{"action":"Reconcile","bucket":"b","key":"k","etag":"","eventTime":"0001-01-01T00:00:00Z","assetId":"a"}`,
		`{"bucket":"b","key":"k","assetId":"a","steps":[]}`,
		`{"bucket":"b","key":"k","assetId":"a","steps":null,"stage":""}`,
		`{"bucket":"b","key":"k","assetId":"a","BUCKET":"c","Key":"k2"}`,
		`{"bucket":"b","key":"k","assetId":"a","bucket":"b2"}`,
		`{"bucket":"\u00e9\ud800","key":"k\u0000","assetId":"a","etag":"\"x\""}`,
		`{"bucket":"b","key":"k","assetId":"a","size":9223372036854775807}`,
		`{"bucket":"b","key":"k","assetId":"a","size":-1}`,
		`{"bucket":"b","key":"k","assetId":"a","size":1e3}`,
		`{"bucket":"b","key":"k","assetId":"a","stage":"medium"}`,
		`{"bucket":"b","key":"k","assetId":"a","eventTime":"9999-12-31T23:59:59-23:59"}`,
		`{"bucket":"b","key":"k","assetId":"a","eventTime":"0000-01-01T00:00:00+23:59"}`,
		`{"bucket":"b","key":"k","assetId":"a","unknown":{"nested":[1,2,3]}}`,
		`{"bucket":"b","key":"k","assetId":"a"} trailing`,
		`{`, `{}`, `null`, `[]`, `""`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := event.Unmarshal(data)
		if err != nil {
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Unmarshal(%q) accepted an event that fails Validate: %v", data, err)
		}
		enc, err := e.Marshal()
		if err != nil {
			t.Fatalf("Unmarshal(%q) accepted an event that does not encode: %+v: %v", data, e, err)
		}
		again, err := event.Unmarshal(enc)
		if err != nil {
			t.Fatalf("re-decoding %s (from %q): %v", enc, data, err)
		}
		if !sameEvent(again, e) {
			t.Fatalf("round trip of %q changed the event:\ngot  %+v\nwant %+v", data, again, e)
		}
		if again.IdempotencyKey() != e.IdempotencyKey() {
			t.Fatalf("round trip of %q changed the idempotency key: %s, was %s", data, again.IdempotencyKey(), e.IdempotencyKey())
		}
		if again.PublishID() != e.PublishID() {
			t.Fatalf("round trip of %q changed the publish id: %s, was %s", data, again.PublishID(), e.PublishID())
		}
	})
}

// sameEvent compares two events field by field: times by instant and
// offset (a decoded time's *Location differs each time), and an empty
// Steps list equal to none, as it encodes the same.
func sameEvent(a, b event.ObjectCreated) bool {
	_, aoff := a.EventTime.Zone()
	_, boff := b.EventTime.Zone()
	if !a.EventTime.Equal(b.EventTime) || aoff != boff {
		return false
	}
	if len(a.Steps) == 0 && len(b.Steps) == 0 {
		a.Steps, b.Steps = nil, nil
	}
	a.EventTime, b.EventTime = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}
