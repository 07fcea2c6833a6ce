package notify_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/notify"
)

// awsRecord is a record as AWS documents it (notification-content-
// structure): eventName without "s3:", URL-encoded key.
func awsRecord(name, key, extra string) string {
	return `{
  "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-west-2",
  "eventTime": "2024-05-24T19:36:44.379Z", "eventName": "` + name + `",
  "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
  "requestParameters": {"sourceIPAddress": "127.0.0.1"},
  "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
  "s3": {
    "s3SchemaVersion": "1.0", "configurationId": "testConfigRule",
    "bucket": {"name": "media", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::media"},
    "object": {"key": "` + key + `"` + extra + `, "sequencer": "0055AED6DCD90281E5"}
  }
}`
}

func awsMessage(records ...string) string {
	return `{"Records": [` + strings.Join(records, ",") + `]}`
}

// minioMessage is what MinIO's webhook and NATS targets send: the S3
// records plus its own EventName and Key, "s3:" in eventName.
const minioMessage = `{
  "EventName": "s3:ObjectCreated:Put",
  "Key": "media/videos/my clip+1.mp4",
  "Records": [{
    "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
    "eventTime": "2024-05-24T19:36:44.379Z", "eventName": "s3:ObjectCreated:Put",
    "userIdentity": {"principalId": "minioadmin"},
    "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "172.17.0.1"},
    "responseElements": {"x-amz-id-2": "dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8", "x-amz-request-id": "17D2B3E0B4F9A2C1", "x-minio-deployment-id": "2a4b6c8d", "x-minio-origin-endpoint": "http://172.17.0.2:9000"},
    "s3": {
      "s3SchemaVersion": "1.0", "configurationId": "Config",
      "bucket": {"name": "media", "ownerIdentity": {"principalId": "minioadmin"}, "arn": "arn:aws:s3:::media"},
      "object": {"key": "videos%2Fmy+clip%2B1.mp4", "size": 1048576, "eTag": "9e107d9d372bb6826bd81d3542a419d6",
                 "contentType": "video/mp4", "userMetadata": {"content-type": "video/mp4"}, "sequencer": "17D2B3E0B5A1F2C3"}
    },
    "source": {"host": "172.17.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"}
  }]
}`

// versityRecord is what versitygw's webhook, NATS and Kafka senders
// write (s3event/event.go): eventSource aws:s3 but "s3:" in eventName,
// PrincipalId capitalized, time with an offset, the key as it is, the
// entity tag quoted.
func versityRecord(name, key string) string {
	return `{
  "eventVersion": "2.2", "eventSource": "aws:s3", "awsRegion": "us-east-1",
  "eventTime": "2024-05-24T12:36:44-07:00", "eventName": "` + name + `",
  "userIdentity": {"PrincipalId": "admin"},
  "requestParameters": {"sourceIPAddress": "10.0.0.7"},
  "responseElements": {"x-amz-request-id": "", "x-amz-id-2": ""},
  "s3": {
    "s3SchemaVersion": "1.0", "configurationId": "webhook-global",
    "bucket": {"name": "media", "ownerIdentity": {"PrincipalId": "admin"}, "arn": "arn:aws:s3:::/media/` + key + `"},
    "object": {"key": "` + key + `", "size": 5, "eTag": "\"5d41402abc4b2a76b9719d911017c592\"", "versionId": null, "sequencer": "17D2B3E0B5A1F2C3"}
  },
  "glacierEventData": {"restoreEventData": {"lifecycleRestorationExpiryTime": "", "lifecycleRestoreStorageClass": ""}}
}`
}

var eventTime = time.Date(2024, 5, 24, 19, 36, 44, 379e6, time.UTC)

func created(action, key string, size int64, etag string) event.ObjectCreated {
	return event.ObjectCreated{Action: action, Bucket: "media", Key: key, Size: size, ETag: etag, EventTime: eventTime}
}

func TestDecodeS3(t *testing.T) {
	const etag = `, "size": 1024, "eTag": "d41d8cd98f00b204e9800998ecf8427e"`
	for _, tc := range []struct {
		name string
		body string
		want []event.ObjectCreated
	}{
		{"aws put, '+' is a space", awsMessage(awsRecord("ObjectCreated:Put", "uploads/red+flower.jpg", etag)),
			[]event.ObjectCreated{created("PutObject", "uploads/red flower.jpg", 1024, "d41d8cd98f00b204e9800998ecf8427e")}},
		{"aws percent escapes", awsMessage(awsRecord("ObjectCreated:Put", "a%2Bb%3Dc/caf%C3%A9+%26+bar%25.mp4", etag)),
			[]event.ObjectCreated{created("PutObject", "a+b=c/café & bar%.mp4", 1024, "d41d8cd98f00b204e9800998ecf8427e")}},
		{"aws post", awsMessage(awsRecord("ObjectCreated:Post", "k", etag)),
			[]event.ObjectCreated{created("PutObject", "k", 1024, "d41d8cd98f00b204e9800998ecf8427e")}},
		{"aws copy", awsMessage(awsRecord("ObjectCreated:Copy", "k", etag)),
			[]event.ObjectCreated{created("CopyObject", "k", 1024, "d41d8cd98f00b204e9800998ecf8427e")}},
		{"aws multipart", awsMessage(awsRecord("ObjectCreated:CompleteMultipartUpload", "big.mov", `, "size": 52428800, "eTag": "3858f62230ac3c915f300c664312c11f-9", "versionId": "096fKKXTRTtl3on89fVO.nfljtsv6qko"`)),
			[]event.ObjectCreated{created("CompleteMultipartUpload", "big.mov", 52428800, "3858f62230ac3c915f300c664312c11f-9")}},
		{"aws delete skipped", awsMessage(awsRecord("ObjectRemoved:Delete", "k", "")), nil},
		{"aws delete marker skipped", awsMessage(awsRecord("ObjectRemoved:DeleteMarkerCreated", "k", "")), nil},
		{"aws restore skipped", awsMessage(awsRecord("ObjectRestore:Completed", "k", etag)), nil},
		{"aws mixed keeps order", awsMessage(
			awsRecord("ObjectCreated:Put", "one", etag),
			awsRecord("ObjectRemoved:Delete", "two", ""),
			awsRecord("ObjectCreated:Copy", "three", etag)),
			[]event.ObjectCreated{
				created("PutObject", "one", 1024, "d41d8cd98f00b204e9800998ecf8427e"),
				created("CopyObject", "three", 1024, "d41d8cd98f00b204e9800998ecf8427e")}},
		{"aws quoted etag", awsMessage(awsRecord("ObjectCreated:Put", "k", `, "size": 1, "eTag": "\"abc\""`)),
			[]event.ObjectCreated{created("PutObject", "k", 1, "abc")}},
		{"aws test event", `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2014-10-13T15:57:02.089Z","Bucket":"media","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`, nil},
		{"versitygw test event", `{"Bucket":"Test-Bucket","Event":"s3:TestEvent","Service":"S3","Time":"2024-05-24T12:36:44-07:00"}`, nil},
		{"empty records", `{"Records": []}`, nil},
		{"minio put", minioMessage,
			[]event.ObjectCreated{created("PutObject", "videos/my clip+1.mp4", 1048576, "9e107d9d372bb6826bd81d3542a419d6")}},
		{"minio empty object omits size and eTag", `{"EventName":"s3:ObjectCreated:Put","Key":"media/empty","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","eventTime":"2024-05-24T19:36:44.379Z","eventName":"s3:ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"key":"empty","sequencer":"1"}}}]}`,
			[]event.ObjectCreated{created("PutObject", "empty", 0, "")}},
		{"minio tagging skipped", strings.ReplaceAll(minioMessage, `"eventName": "s3:ObjectCreated:Put"`, `"eventName": "s3:ObjectCreated:PutTagging"`), nil},
		{"minio get skipped", strings.ReplaceAll(minioMessage, `"eventName": "s3:ObjectCreated:Put"`, `"eventName": "s3:ObjectAccessed:Get"`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := notify.DecodeS3([]byte(tc.body))
			if err != nil {
				t.Fatalf("DecodeS3: %v", err)
			}
			if !sameEvents(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeS3RawKeys(t *testing.T) {
	versity := notify.S3Decoder{RawKeys: true}
	local := time.FixedZone("", -7*3600)
	want := func(action, key string) event.ObjectCreated {
		return event.ObjectCreated{Action: action, Bucket: "media", Key: key, Size: 5,
			ETag: "5d41402abc4b2a76b9719d911017c592", EventTime: time.Date(2024, 5, 24, 12, 36, 44, 0, local)}
	}
	for _, tc := range []struct {
		name string
		body string
		want []event.ObjectCreated
	}{
		{"put, '+' and '%' kept", `{"Records":[` + versityRecord("s3:ObjectCreated:Put", "a+b 100%.mp4") + `]}`,
			[]event.ObjectCreated{want("PutObject", "a+b 100%.mp4")}},
		{"multipart", `{"Records":[` + versityRecord("s3:ObjectCreated:CompleteMultipartUpload", "dir/v.mp4") + `]}`,
			[]event.ObjectCreated{want("CompleteMultipartUpload", "dir/v.mp4")}},
		{"copy", `{"Records":[` + versityRecord("s3:ObjectCreated:Copy", "c.mp4") + `]}`,
			[]event.ObjectCreated{want("CopyObject", "c.mp4")}},
		{"delete skipped", `{"Records":[` + versityRecord("s3:ObjectRemoved:Delete", "d.mp4") + `]}`, nil},
		{"bare array of older releases", `[` + versityRecord("s3:ObjectCreated:Put", "old.mp4") + `]`,
			[]event.ObjectCreated{want("PutObject", "old.mp4")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := versity.Decode([]byte(tc.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !sameEvents(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
	// The same body read as AWS's would turn '+' into a space: the
	// decoder must be told which sender it reads.
	got, err := notify.DecodeS3([]byte(`{"Records":[` + versityRecord("s3:ObjectCreated:Put", "a+b.mp4") + `]}`))
	if err != nil || len(got) != 1 || got[0].Key != "a b.mp4" {
		t.Errorf("DecodeS3 of a raw key: got %+v, %v; want the key form-decoded to %q", got, err, "a b.mp4")
	}
}

func TestDecodeS3Malformed(t *testing.T) {
	const etag = `, "size": 1, "eTag": "abc"`
	put := func(key, extra string) string { return awsMessage(awsRecord("ObjectCreated:Put", key, extra)) }
	for _, tc := range []struct {
		name, body, want string
	}{
		{"not json", `Records`, "invalid character"},
		{"trailing data", awsMessage(awsRecord("ObjectCreated:Put", "k", etag)) + ` {}`, "invalid character"},
		{"no records", `{}`, "no Records"},
		{"null records", `{"Records": null}`, "no Records"},
		{"other test event", `{"Event":"s3:Other"}`, "no Records"},
		{"records not a list", `{"Records": {}}`, "cannot unmarshal"},
		{"record not an object", `{"Records": [1]}`, "cannot unmarshal"},
		{"bare array of non-records", `[1]`, "cannot unmarshal"},
		{"other source", strings.Replace(put("k", etag), `"aws:s3"`, `"ceph:s3"`, 1), `eventSource "ceph:s3"`},
		{"no source", strings.Replace(put("k", etag), `"eventSource": "aws:s3",`, ``, 1), `eventSource ""`},
		{"version 1", strings.Replace(put("k", etag), `"2.1"`, `"1.0"`, 1), `eventVersion "1.0"`},
		{"no event name", awsMessage(awsRecord("", "k", etag)), "no eventName"},
		{"created without s3", `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2024-05-24T19:36:44.379Z","eventName":"ObjectCreated:Put"}]}`, "without s3"},
		{"created without key", `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2024-05-24T19:36:44.379Z","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"media"},"object":{"size":1}}}]}`, "without s3.object.key"},
		{"empty key", put("", etag), "empty object key"},
		{"bad escape", put("a%zzb", etag), "invalid URL escape"},
		{"key not utf-8", put("%FF", etag), "not UTF-8"},
		{"key too long", put(strings.Repeat("a", notify.MaxKeyBytes+1), etag), "over 1024"},
		{"key too long once decoded", put(strings.Repeat("%C3%A9", 513), etag), "over 1024"},
		{"negative size", put("k", `, "size": -1`), "negative size"},
		{"size as string", put("k", `, "size": "1"`), "cannot unmarshal"},
		{"fractional size", put("k", `, "size": 1.5`), "cannot unmarshal"},
		{"etag not a string", put("k", `, "eTag": 5`), "cannot unmarshal"},
		{"etag with control char", put("k", `, "eTag": "a\u0001"`), "eTag"},
		{"no time", strings.Replace(put("k", etag), `"eventTime": "2024-05-24T19:36:44.379Z",`, ``, 1), "no eventTime"},
		{"bad time", strings.Replace(put("k", etag), `2024-05-24T19:36:44.379Z`, `yesterday`, 1), `eventTime "yesterday"`},
		{"time without zone", strings.Replace(put("k", etag), `2024-05-24T19:36:44.379Z`, `2024-05-24T19:36:44`, 1), "not RFC 3339"},
		{"no bucket", strings.Replace(put("k", etag), `"name": "media"`, `"name": ""`, 1), "no bucket name"},
		{"bucket with slash", strings.Replace(put("k", etag), `"name": "media"`, `"name": "a/b"`, 1), "bucket name"},
		{"too many records", awsMessage(slicesRepeat(awsRecord("ObjectRemoved:Delete", "k", ""), notify.MaxRecords+1)...), "over 100"},
		{"body too big", `{"Records":[],"pad":"` + strings.Repeat("x", notify.MaxBodyBytes) + `"}`, "bytes, over"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := notify.DecodeS3([]byte(tc.body))
			if err == nil {
				t.Fatalf("got %+v, want an error containing %q", got, tc.want)
			}
			if !errors.Is(err, notify.ErrMalformed) {
				t.Errorf("got %v, want it to wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
			if got != nil {
				t.Errorf("got events %+v with the error", got)
			}
		})
	}
}

// TestSameObjectSameKey: S3 quotes entity tags, R2 does not; an object
// announced by both must be one job.
func TestSameObjectSameKey(t *testing.T) {
	s3, err := notify.DecodeS3([]byte(awsMessage(awsRecord("ObjectCreated:Put", "v.mp4", `, "size": 3, "eTag": "\"abc\""`))))
	if err != nil || len(s3) != 1 {
		t.Fatalf("DecodeS3: %+v, %v", s3, err)
	}
	r2, ok, err := notify.DecodeR2([]byte(`{"account":"a","action":"PutObject","bucket":"media","object":{"key":"v.mp4","size":3,"eTag":"abc"},"eventTime":"2024-05-24T19:36:44.379Z"}`))
	if err != nil || !ok {
		t.Fatalf("DecodeR2: %v, %v", ok, err)
	}
	if got, want := s3[0].IdempotencyKey(), r2.IdempotencyKey(); got != want {
		t.Errorf("got idempotency keys %s (S3) and %s (R2), want them equal", got, want)
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// sameEvents compares events with times by instant and offset.
func sameEvents(got, want []event.ObjectCreated) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		_, goff := g.EventTime.Zone()
		_, woff := w.EventTime.Zone()
		if !g.EventTime.Equal(w.EventTime) || goff != woff {
			return false
		}
		g.EventTime, w.EventTime = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}
