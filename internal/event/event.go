// Package event defines the object-created notification that connects
// ingest to processing. Its fields follow S3 and R2 event notifications
// (action, bucket, key, size, etag, event time) so that events from
// Sluice's own uploads and, later, from an external store look the same.
//
// The package imports nothing else of Sluice's: every layer may depend on it.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Actions, named as R2 names them in its event notifications.
const (
	ActionPutObject               = "PutObject"
	ActionCompleteMultipartUpload = "CompleteMultipartUpload"
	ActionCopyObject              = "CopyObject"
	// ActionReconcile marks an event re-published by the reconciler for an
	// upload whose original event was lost or whose job never finished.
	ActionReconcile = "Reconcile"
	// ActionReprocess marks a run requested for an object already
	// processed (see Run).
	ActionReprocess = "Reprocess"
)

// ObjectCreated is published once an object has landed in a bucket.
type ObjectCreated struct {
	Action    string    `json:"action"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"`
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"`
	EventTime time.Time `json:"eventTime"`
	AssetID   string    `json:"assetId"`

	// Stage is empty for a new object, whose job starts with the fast
	// stage, and StageHeavy for the second stage of a job whose fast
	// steps are done: it goes to the heavy pool.
	Stage string `json:"stage,omitempty"`
	// Run is empty for the object's own processing and names a
	// reprocessing run otherwise: a new job for the same object version.
	Run string `json:"run,omitempty"`
	// Steps limits a reprocessing run to these step ids (empty: all).
	Steps []string `json:"steps,omitempty"`
	// Base is the job whose results a reprocessing run keeps for the
	// steps it does not rerun.
	Base string `json:"base,omitempty"`
}

// StageHeavy marks an event for the heavy pool.
const StageHeavy = "heavy"

// IdempotencyKey identifies the work an event asks for: the same object
// version (bucket, key, etag) always yields the same key, however many
// times and by whichever path its event arrives.
func (e ObjectCreated) IdempotencyKey() string {
	h := sha256.New()
	// Length-prefixed so that ("a/b","c") and ("a","b/c") differ.
	for _, s := range []string{e.Bucket, e.Key, e.ETag} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	if e.Run != "" {
		fmt.Fprintf(h, "run:%d:%s;", len(e.Run), e.Run)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// PublishID is the id the queue deduplicates publishes by. It is the
// idempotency key, so that the same object version announced twice (by
// upload and by a bucket notification, say) is queued once. Reconcile
// events add their time: the reconciler republishes only after checking
// that no event for the asset is queued, and the memory of an earlier
// publish must not swallow the one that repairs a loss.
func (e ObjectCreated) PublishID() string {
	id := e.IdempotencyKey()
	if e.Stage != "" {
		id += "-" + e.Stage
	}
	if e.Action == ActionReconcile {
		return fmt.Sprintf("%s-reconcile-%d", id, e.EventTime.UnixNano())
	}
	return id
}

// Validate reports whether the event carries what a worker needs.
func (e ObjectCreated) Validate() error {
	switch {
	case e.Bucket == "":
		return errors.New("event: missing bucket")
	case e.Key == "":
		return errors.New("event: missing key")
	case e.AssetID == "":
		return errors.New("event: missing asset id")
	case e.Size < 0:
		return errors.New("event: negative size")
	case e.Stage != "" && e.Stage != StageHeavy:
		return fmt.Errorf("event: unknown stage %q", e.Stage)
	case len(e.Steps) > 64:
		return errors.New("event: too many steps")
	}
	return nil
}

// Marshal encodes the event for the queue.
func (e ObjectCreated) Marshal() ([]byte, error) { return json.Marshal(e) }

// Unmarshal decodes and validates an event read from the queue.
func Unmarshal(data []byte) (ObjectCreated, error) {
	var e ObjectCreated
	if err := json.Unmarshal(data, &e); err != nil {
		return e, fmt.Errorf("event: decode: %w", err)
	}
	return e, e.Validate()
}
