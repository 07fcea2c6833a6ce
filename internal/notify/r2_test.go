package notify_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/notify"
)

// r2DocSample is the message body R2's event notifications page shows.
const r2DocSample = `{
	"account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
	"action": "CopyObject",
	"bucket": "my-bucket",
	"object": {
		"key": "my-new-object",
		"size": 65536,
		"eTag": "c846ff7a18f28c2e262116d6e8719ef0"
	},
	"eventTime": "2024-05-24T19:36:44.379Z",
	"copySource": {
		"bucket": "my-bucket",
		"object": "my-original-object"
	}
}`

func r2Body(action, object string) string {
	return `{"account":"3f4b7e3dcab231cbfdaa90a6a28bd548","action":"` + action + `","bucket":"media",` +
		`"object":` + object + `,"eventTime":"2024-05-24T19:36:44.379Z"}`
}

func TestDecodeR2(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want event.ObjectCreated
		ok   bool
	}{
		{"documented sample", r2DocSample, event.ObjectCreated{Action: "CopyObject", Bucket: "my-bucket", Key: "my-new-object",
			Size: 65536, ETag: "c846ff7a18f28c2e262116d6e8719ef0", EventTime: eventTime}, true},
		{"put, key as it is", r2Body("PutObject", `{"key":"up loads/a+b%20c.mp4","size":5,"eTag":"5d41402abc4b2a76b9719d911017c592"}`),
			created("PutObject", "up loads/a+b%20c.mp4", 5, "5d41402abc4b2a76b9719d911017c592"), true},
		{"multipart", r2Body("CompleteMultipartUpload", `{"key":"big.mov","size":52428800,"eTag":"3858f62230ac3c915f300c664312c11f-9"}`),
			created("CompleteMultipartUpload", "big.mov", 52428800, "3858f62230ac3c915f300c664312c11f-9"), true},
		{"empty object", r2Body("PutObject", `{"key":"empty","size":0,"eTag":"d41d8cd98f00b204e9800998ecf8427e"}`),
			created("PutObject", "empty", 0, "d41d8cd98f00b204e9800998ecf8427e"), true},
		{"delete", r2Body("DeleteObject", `{"key":"gone.mp4"}`), event.ObjectCreated{}, false},
		{"lifecycle deletion", r2Body("LifecycleDeletion", `{"key":"old.mp4"}`), event.ObjectCreated{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := notify.DecodeR2([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeR2: %v", err)
			}
			if ok != tc.ok || !sameEvents([]event.ObjectCreated{got}, []event.ObjectCreated{tc.want}) {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestDecodeR2Malformed(t *testing.T) {
	const obj = `{"key":"k","size":1,"eTag":"abc"}`
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not json", `PutObject`, "invalid character"},
		{"empty object", `{}`, "no action"},
		{"null", `null`, "no action"},
		{"array", `[]`, "cannot unmarshal"},
		{"unknown action", r2Body("RestoreObject", obj), `unknown action "RestoreObject"`},
		{"action not a string", `{"action":1}`, "cannot unmarshal"},
		{"no account", strings.Replace(r2Body("PutObject", obj), `"account":"3f4b7e3dcab231cbfdaa90a6a28bd548",`, ``, 1), "no account"},
		{"no object", `{"account":"a","action":"PutObject","bucket":"media","eventTime":"2024-05-24T19:36:44.379Z"}`, "no object.key"},
		{"no key", r2Body("PutObject", `{"size":1,"eTag":"abc"}`), "no object.key"},
		{"empty key", r2Body("PutObject", `{"key":"","size":1,"eTag":"abc"}`), "empty object key"},
		{"key too long", r2Body("PutObject", `{"key":"`+strings.Repeat("k", notify.MaxKeyBytes+1)+`","size":1,"eTag":"abc"}`), "over 1024"},
		{"no size", r2Body("PutObject", `{"key":"k","eTag":"abc"}`), "no object.size"},
		{"negative size", r2Body("PutObject", `{"key":"k","size":-5,"eTag":"abc"}`), "negative size"},
		{"size too big", r2Body("PutObject", `{"key":"k","size":1e30,"eTag":"abc"}`), "cannot unmarshal"},
		{"no etag", r2Body("CopyObject", `{"key":"k","size":1}`), "no object.eTag"},
		{"no bucket", strings.Replace(r2Body("PutObject", obj), `"bucket":"media",`, ``, 1), "no bucket name"},
		{"no time", strings.Replace(r2Body("PutObject", obj), `,"eventTime":"2024-05-24T19:36:44.379Z"`, ``, 1), "no eventTime"},
		{"bad time", strings.Replace(r2Body("PutObject", obj), `2024-05-24T19:36:44.379Z`, `1716579404379`, 1), "not RFC 3339"},
		{"copy source not an object", strings.Replace(r2DocSample, `"copySource": {`, `"copySource": "x", "z": {`, 1), "cannot unmarshal"},
		{"body too big", `{"action":"PutObject","pad":"` + strings.Repeat("x", notify.MaxBodyBytes) + `"}`, "bytes, over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok, err := notify.DecodeR2([]byte(tc.body))
			if err == nil {
				t.Fatalf("got %+v, %v; want an error containing %q", got, ok, tc.want)
			}
			if !errors.Is(err, notify.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want ErrMalformed containing %q", err, tc.want)
			}
			if ok {
				t.Errorf("got ok with the error")
			}
		})
	}
}
