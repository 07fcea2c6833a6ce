package notify

import (
	"encoding/json"

	"github.com/sluice-media/sluice/internal/event"
)

// R2's actions for removed objects: explicit deletes and lifecycle
// expiry. Its created-object actions are named as event.Action*.
const (
	r2DeleteObject      = "DeleteObject"
	r2LifecycleDeletion = "LifecycleDeletion"
)

type r2Message struct {
	Account *string `json:"account"`
	Action  string  `json:"action"`
	Bucket  string  `json:"bucket"`
	Object  *struct {
		Key  *string `json:"key"`
		Size *int64  `json:"size"`
		ETag *string `json:"eTag"`
	} `json:"object"`
	EventTime  string `json:"eventTime"`
	CopySource *struct {
		Bucket string `json:"bucket"`
		Object string `json:"object"`
	} `json:"copySource"`
}

// DecodeR2 decodes the body of an R2 event notification message:
//
//	{"account": "...", "action": "PutObject", "bucket": "my-bucket",
//	 "object": {"key": "a.mp4", "size": 65536, "eTag": "c846ff..."},
//	 "eventTime": "2024-05-24T19:36:44.379Z",
//	 "copySource": {"bucket": "...", "object": "..."}}
//
// It reports false, with no error, for a deletion (DeleteObject,
// LifecycleDeletion). A created object (PutObject, CopyObject,
// CompleteMultipartUpload) must carry a key, its size and eTag (R2 omits
// those only for deletions) and a valid time; the key is taken as it is,
// since R2 does not URL-encode it. Anything else, an unknown action
// included, is an error wrapping ErrMalformed.
func DecodeR2(body []byte) (event.ObjectCreated, bool, error) {
	if len(body) > MaxBodyBytes {
		return event.ObjectCreated{}, false, malformed("r2 notification of %d bytes, over %d", len(body), MaxBodyBytes)
	}
	var m r2Message
	if err := json.Unmarshal(body, &m); err != nil {
		return event.ObjectCreated{}, false, malformed("r2 notification: %v", err)
	}
	switch m.Action {
	case event.ActionPutObject, event.ActionCopyObject, event.ActionCompleteMultipartUpload:
	case r2DeleteObject, r2LifecycleDeletion:
		return event.ObjectCreated{}, false, nil
	case "":
		return event.ObjectCreated{}, false, malformed("r2 notification: no action")
	default:
		return event.ObjectCreated{}, false, malformed("r2 notification: unknown action %q", m.Action)
	}
	switch {
	case m.Account == nil:
		return event.ObjectCreated{}, false, malformed("r2 %s: no account", m.Action)
	case m.Object == nil || m.Object.Key == nil:
		return event.ObjectCreated{}, false, malformed("r2 %s: no object.key", m.Action)
	case m.Object.Size == nil:
		return event.ObjectCreated{}, false, malformed("r2 %s: no object.size", m.Action)
	case m.Object.ETag == nil:
		return event.ObjectCreated{}, false, malformed("r2 %s: no object.eTag", m.Action)
	}
	t, err := parseTime(m.EventTime)
	if err != nil {
		return event.ObjectCreated{}, false, err
	}
	e, err := finish(event.ObjectCreated{
		Action:    m.Action,
		Bucket:    m.Bucket,
		Key:       *m.Object.Key,
		Size:      *m.Object.Size,
		ETag:      *m.Object.ETag,
		EventTime: t,
	})
	if err != nil {
		return event.ObjectCreated{}, false, err
	}
	return e, true, nil
}
