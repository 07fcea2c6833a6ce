package notify_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/notify"
)

// checkAccepted fails unless e is an event a worker can take once it is
// given an asset id: bounded key, known action, Validate passing.
func checkAccepted(t *testing.T, data []byte, e event.ObjectCreated) {
	t.Helper()
	switch e.Action {
	case event.ActionPutObject, event.ActionCopyObject, event.ActionCompleteMultipartUpload:
	default:
		t.Fatalf("decoding %q gave action %q", data, e.Action)
	}
	if len(e.Key) > notify.MaxKeyBytes || !utf8.ValidString(e.Key) {
		t.Fatalf("decoding %q gave key %q", data, e.Key)
	}
	if strings.Contains(e.ETag, `"`) || e.EventTime.IsZero() {
		t.Fatalf("decoding %q gave %+v", data, e)
	}
	e.AssetID = "asset"
	if err := e.Validate(); err != nil {
		t.Fatalf("decoding %q gave an event that fails Validate: %v: %+v", data, err, e)
	}
}

func FuzzDecodeS3(f *testing.F) {
	for _, seed := range []string{
		awsMessage(awsRecord("ObjectCreated:Put", "uploads/red+flower.jpg", `, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e"`)),
		awsMessage(awsRecord("ObjectCreated:Copy", "%C3%A9%2B", `, "size": 0, "eTag": "\"x\""`)),
		awsMessage(awsRecord("ObjectRemoved:Delete", "k", "")),
		minioMessage,
		`{"Records":[` + versityRecord("s3:ObjectCreated:Put", "a+b 100%.mp4") + `]}`,
		`[` + versityRecord("s3:ObjectCreated:CompleteMultipartUpload", "k") + `]`,
		`{"Event":"s3:TestEvent"}`,
		`{"Records":[{"eventVersion":"2.","eventSource":"minio:s3","eventTime":"2024-05-24T19:36:44Z","eventName":"s3:ObjectCreated:Post","s3":{"bucket":{"name":"b"},"object":{"key":"%"}}}]}`,
		`{"Records":[{"eventVersion":"2","eventSource":"aws:s3","eventTime":"0000-01-01T00:00:00+23:59","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"+","size":9223372036854775807,"eTag":"\"\""}}}]}`,
		`{"Records":null}`, `[]`, `{`, `null`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range []notify.S3Decoder{{}, {RawKeys: true}} {
			events, err := d.Decode(data)
			if err != nil {
				if events != nil {
					t.Fatalf("Decode(%q) gave events and an error", data)
				}
				continue
			}
			if len(events) > notify.MaxRecords {
				t.Fatalf("Decode(%q) gave %d events", data, len(events))
			}
			for _, e := range events {
				checkAccepted(t, data, e)
			}
		}
	})
}

func FuzzDecodeR2(f *testing.F) {
	for _, seed := range []string{
		r2DocSample,
		r2Body("PutObject", `{"key":"a b+c%","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592"}`),
		r2Body("CompleteMultipartUpload", `{"key":"k","size":0,"eTag":"\"q\""}`),
		r2Body("DeleteObject", `{"key":"k"}`),
		r2Body("LifecycleDeletion", `{}`),
		`{"account":"","action":"PutObject","bucket":"b","object":{"key":"\u0000","size":1,"eTag":""},"eventTime":"2024-05-24T19:36:44+01:00"}`,
		`{"action":"PutObject","object":null}`, `{}`, `null`, `[`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, ok, err := notify.DecodeR2(data)
		if err != nil && ok {
			t.Fatalf("DecodeR2(%q) gave ok and an error", data)
		}
		if ok {
			checkAccepted(t, data, e)
		}
	})
}
