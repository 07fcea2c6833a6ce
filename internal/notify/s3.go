package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluice-media/sluice/internal/event"
)

// Limits on what a notification may hold. Stores send one record per
// message; the bounds keep a hostile sender from making a decoder do
// unbounded work.
const (
	// MaxBodyBytes is the largest notification body decoded.
	MaxBodyBytes = 1 << 20
	// MaxRecords is the most records one S3 notification may carry.
	MaxRecords = 100
	// MaxKeyBytes is the longest object key accepted, after decoding, as
	// S3 and R2 allow.
	MaxKeyBytes = 1024
	// MaxBucketBytes bounds a bucket name (S3 and R2 allow 63).
	MaxBucketBytes = 255
	// MaxETagBytes bounds an entity tag.
	MaxETagBytes = 256
)

// ErrMalformed is wrapped by every error about a notification that is not
// what its format says: a webhook answers it with 400, a queue consumer
// drops the message as poison.
var ErrMalformed = errors.New("notify: malformed notification")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// S3Decoder decodes S3 event notifications. The zero value expects
// URL-encoded keys, as AWS and MinIO send them.
type S3Decoder struct {
	// RawKeys says the sender does not URL-encode object keys. versitygw
	// does not: it copies the key from the request path after
	// unescaping it, so that "a+b.mp4" there is the key "a+b.mp4", not
	// "a b.mp4".
	RawKeys bool
}

// DecodeS3 decodes an S3 event notification with URL-encoded keys, as
// AWS S3 and MinIO send it. See S3Decoder.Decode.
func DecodeS3(body []byte) ([]event.ObjectCreated, error) {
	return S3Decoder{}.Decode(body)
}

type s3Message struct {
	// A pointer, so that a message with no Records (or "Records": null)
	// is told apart from an empty list.
	Records *[]s3Record `json:"Records"`
	Event   string      `json:"Event"`
}

type s3Record struct {
	EventVersion string `json:"eventVersion"`
	EventSource  string `json:"eventSource"`
	EventTime    string `json:"eventTime"`
	EventName    string `json:"eventName"`
	S3           *struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key  *string `json:"key"`
			Size *int64  `json:"size"`
			ETag *string `json:"eTag"`
		} `json:"object"`
	} `json:"s3"`
}

// s3Actions maps the created-object event names (after the "s3:" prefix
// that MinIO and versitygw write and AWS does not) to R2's action names.
// MinIO's other ObjectCreated names (PutRetention, PutLegalHold,
// PutTagging, DeleteTagging) change metadata, not content, and are
// skipped like any other event.
var s3Actions = map[string]string{
	"ObjectCreated:Put":                     event.ActionPutObject,
	"ObjectCreated:Post":                    event.ActionPutObject,
	"ObjectCreated:Copy":                    event.ActionCopyObject,
	"ObjectCreated:CompleteMultipartUpload": event.ActionCompleteMultipartUpload,
}

// Decode returns the object-created events in an S3 event notification,
// in record order. Records of other events (ObjectRemoved, tagging,
// restores, ...) are skipped, and so is the s3:TestEvent message that AWS
// and versitygw send when a destination is configured: neither is an
// error, and both may leave the list empty. A body that is not such a
// notification, a record from another source or event version 2, and a
// created-object record without a bucket, key or valid time are errors
// wrapping ErrMalformed, and so is the whole message: it is not half
// taken.
//
// The body may also be a bare JSON array of records, as versitygw sent
// before it wrapped them in {"Records": ...}.
func (d S3Decoder) Decode(body []byte) ([]event.ObjectCreated, error) {
	if len(body) > MaxBodyBytes {
		return nil, malformed("s3 notification of %d bytes, over %d", len(body), MaxBodyBytes)
	}
	var records []s3Record
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := json.Unmarshal(body, &records); err != nil {
			return nil, malformed("s3 notification: %v", err)
		}
	} else {
		var m s3Message
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, malformed("s3 notification: %v", err)
		}
		if m.Records == nil {
			if m.Event == "s3:TestEvent" {
				return nil, nil
			}
			return nil, malformed("s3 notification: no Records")
		}
		records = *m.Records
	}
	if len(records) > MaxRecords {
		return nil, malformed("s3 notification: %d records, over %d", len(records), MaxRecords)
	}
	var out []event.ObjectCreated
	for i, r := range records {
		e, ok, err := d.record(r)
		if err != nil {
			return nil, fmt.Errorf("%w (s3 record %d)", err, i)
		}
		if ok {
			out = append(out, e)
		}
	}
	return out, nil
}

func (d S3Decoder) record(r s3Record) (event.ObjectCreated, bool, error) {
	switch r.EventSource {
	case "aws:s3", "minio:s3":
	default:
		return event.ObjectCreated{}, false, malformed("eventSource %q is not aws:s3 or minio:s3", r.EventSource)
	}
	if major, _, _ := strings.Cut(r.EventVersion, "."); major != "2" {
		return event.ObjectCreated{}, false, malformed("eventVersion %q is not 2.x", r.EventVersion)
	}
	if r.EventName == "" {
		return event.ObjectCreated{}, false, malformed("no eventName")
	}
	action, ok := s3Actions[strings.TrimPrefix(r.EventName, "s3:")]
	if !ok {
		return event.ObjectCreated{}, false, nil
	}
	if r.S3 == nil {
		return event.ObjectCreated{}, false, malformed("%s without s3", r.EventName)
	}
	obj := r.S3.Object
	if obj.Key == nil {
		return event.ObjectCreated{}, false, malformed("%s without s3.object.key", r.EventName)
	}
	key := *obj.Key
	if !d.RawKeys {
		// Query (form) encoding, so '+' is a space, as AWS documents:
		// "red flower.jpg" arrives as "red+flower.jpg".
		k, err := url.QueryUnescape(key)
		if err != nil {
			return event.ObjectCreated{}, false, malformed("s3.object.key %q: %v", key, err)
		}
		key = k
	}
	e := event.ObjectCreated{Action: action, Bucket: r.S3.Bucket.Name, Key: key}
	if obj.Size != nil {
		e.Size = *obj.Size
	}
	if obj.ETag != nil {
		e.ETag = *obj.ETag
	}
	t, err := parseTime(r.EventTime)
	if err != nil {
		return event.ObjectCreated{}, false, err
	}
	e.EventTime = t
	e, err = finish(e)
	return e, err == nil, err
}

// finish normalizes and checks what both formats decode to, so that an
// event from either is usable by the same consumer.
func finish(e event.ObjectCreated) (event.ObjectCreated, error) {
	// S3 and some gateways quote the entity tag as in an HTTP header;
	// R2 and Sluice's own events do not, and the idempotency key must
	// not depend on which one announced the object.
	if len(e.ETag) >= 2 && e.ETag[0] == '"' && e.ETag[len(e.ETag)-1] == '"' {
		e.ETag = e.ETag[1 : len(e.ETag)-1]
	}
	switch {
	case e.Bucket == "":
		return e, malformed("no bucket name")
	case len(e.Bucket) > MaxBucketBytes:
		return e, malformed("bucket name of %d bytes, over %d", len(e.Bucket), MaxBucketBytes)
	case !printable(e.Bucket) || strings.Contains(e.Bucket, "/"):
		return e, malformed("bucket name %q", e.Bucket)
	case e.Key == "":
		return e, malformed("empty object key")
	case len(e.Key) > MaxKeyBytes:
		return e, malformed("object key of %d bytes, over %d", len(e.Key), MaxKeyBytes)
	case !utf8.ValidString(e.Key):
		return e, malformed("object key %q is not UTF-8", e.Key)
	case e.Size < 0:
		return e, malformed("negative size %d", e.Size)
	case len(e.ETag) > MaxETagBytes:
		return e, malformed("eTag of %d bytes, over %d", len(e.ETag), MaxETagBytes)
	case !printable(e.ETag) || strings.Contains(e.ETag, `"`):
		return e, malformed("eTag %q", e.ETag)
	}
	return e, nil
}

// printable reports whether s is UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// parseTime reads an event time: ISO 8601 with a zone, as AWS
// ("2024-05-24T19:36:44.379Z"), MinIO, versitygw ("...T19:36:44-07:00")
// and R2 write it.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, malformed("no eventTime")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, malformed("eventTime %q is not RFC 3339", s)
	}
	return t, nil
}
