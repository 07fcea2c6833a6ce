// Package storetest is the conformance suite for store.Store drivers.
// A driver's test builds a harness that opens an empty store and calls
// Run; every driver must pass the same suite, so that the gateway and
// workers can rely on the behaviour it pins down rather than on one
// driver's.
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// Run tests the stores that open returns. open is called once per subtest,
// possibly in parallel, and must return a new, empty store; the harness
// closes it (t.Cleanup).
//
// Besides the rules in store.Store's comments the suite requires that:
//   - times round-trip at least to the microsecond and come back in UTC;
//     times a store sets itself come from the host's clock;
//   - a job's CreatedAt is the Claim.Now that created it;
//   - ClaimJob for an unknown asset, StartStep for an unknown job and
//     PutOutput for an unknown asset return store.ErrNotFound;
//   - FinishJob again by the owner that finished the job returns nil and
//     changes nothing;
//   - list methods return an empty, non-nil slice when nothing matches;
//   - a bad ListOptions.Cursor gives store.ErrInvalidCursor.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s store.Store)
	}{
		{"Ping", testPing},
		{"CreateAsset", testCreateAsset},
		{"CreateAssetDefaults", testCreateAssetDefaults},
		{"CreateAssetConflict", testCreateAssetConflict},
		{"GetAssetNotFound", testGetAssetNotFound},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"ListAssetsOrder", testListAssetsOrder},
		{"ListAssetsPages", testListAssetsPages},
		{"ListAssetsFilters", testListAssetsFilters},
		{"ListAssetsStatus", testListAssetsStatus},
		{"ListAssetsLimit", testListAssetsLimit},
		{"ListAssetsInvalidCursor", testListAssetsInvalidCursor},
		{"MarkUploaded", testMarkUploaded},
		{"SetAssetStatus", testSetAssetStatus},
		{"SetMedia", testSetMedia},
		{"ListStalled", testListStalled},
		{"ListAwaitingUpload", testListAwaitingUpload},
		{"ClaimJobCreates", testClaimJobCreates},
		{"ClaimJobUnknownAsset", testClaimJobUnknownAsset},
		{"ClaimJobLeased", testClaimJobLeased},
		{"ClaimJobSameOwner", testClaimJobSameOwner},
		{"ClaimJobLeaseExpiry", testClaimJobLeaseExpiry},
		{"ClaimJobFinished", testClaimJobFinished},
		{"ClaimJobConcurrent", testClaimJobConcurrent},
		{"RenewJob", testRenewJob},
		{"ReleaseJob", testReleaseJob},
		{"FinishJob", testFinishJob},
		{"FinishJobNotOwner", testFinishJobNotOwner},
		{"GetJobNotFound", testGetJobNotFound},
		{"LatestJob", testLatestJob},
		{"StartStep", testStartStep},
		{"FinishStep", testFinishStep},
		{"StepRetryKeepsOrder", testStepRetryKeepsOrder},
		{"ListStepsLatestJob", testListStepsLatestJob},
		{"StepsConcurrent", testStepsConcurrent},
		{"Outputs", testOutputs},
		{"MetadataAndPipeline", testMetadataAndPipeline},
		{"ListJobSteps", testListJobSteps},
		{"ReplaceOutputs", testReplaceOutputs},
		{"DeleteAsset", testDeleteAsset},
		{"Quarantine", testQuarantine},
		{"ConcurrentWrites", testConcurrentWrites},
		{"Keys", testKeys},
		{"ListKeysEmpty", testListKeysEmpty},
		{"Usage", testUsage},
		{"UsageConcurrent", testUsageConcurrent},
		{"Spend", testSpend},
		{"AssetOwner", testAssetOwner},
		{"Webhooks", testWebhooks},
		{"Deliveries", testDeliveries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, open(t))
		})
	}
}

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// epoch is a fixed instant with microsecond precision, for times the
// tests choose.
var epoch = time.Date(2025, time.March, 14, 15, 9, 26, 535897000, time.UTC)

// clock returns the host's time to the microsecond: the lower bound of a
// time the store will set itself.
func clock() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

// tick makes the host clock move on, so that times the store sets before
// and after it differ even at microsecond precision.
func tick() {
	time.Sleep(2 * time.Millisecond)
}

// newAsset returns a pending asset with every caller-set field filled.
func newAsset(id string, created time.Time) store.Asset {
	return store.Asset{
		ID:          id,
		Name:        id + ".mp4",
		ContentType: "video/mp4",
		Size:        1 << 20,
		Status:      store.StatusPending,
		CreatedAt:   created,
		UpdatedAt:   created,
	}
}

func mustCreate(t *testing.T, s store.Store, a store.Asset) store.Asset {
	t.Helper()
	if err := s.CreateAsset(t.Context(), a); err != nil {
		t.Fatalf("CreateAsset(%q): %v", a.ID, err)
	}
	return mustGet(t, s, a.ID)
}

func mustGet(t *testing.T, s store.Store, id string) store.Asset {
	t.Helper()
	a, err := s.GetAsset(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAsset(%q): %v", id, err)
	}
	return a
}

func mustUpload(t *testing.T, s store.Store, id string) {
	t.Helper()
	obj := store.Object{Bucket: "media", Key: "src/" + id, Size: 42, ETag: "etag-" + id, ContentType: "video/mp4"}
	if err := s.MarkUploaded(t.Context(), id, obj); err != nil {
		t.Fatalf("MarkUploaded(%q): %v", id, err)
	}
}

func mustGetJob(t *testing.T, s store.Store, key string) store.Job {
	t.Helper()
	j, err := s.GetJob(t.Context(), key)
	if err != nil {
		t.Fatalf("GetJob(%q): %v", key, err)
	}
	return j
}

func mustClaim(t *testing.T, s store.Store, c store.Claim) store.Job {
	t.Helper()
	j, err := s.ClaimJob(t.Context(), c)
	if err != nil {
		t.Fatalf("ClaimJob(%q, owner %q): %v", c.Key, c.Owner, err)
	}
	return j
}

// wantErr fails the test unless errors.Is(err, want).
func wantErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", call, err, want)
	}
}

// checker compares the fields of one value, naming each that differs.
type checker struct {
	t    *testing.T
	what string
}

func check(t *testing.T, format string, args ...any) checker {
	return checker{t: t, what: fmt.Sprintf(format, args...)}
}

func (c checker) eq(field string, got, want any) {
	c.t.Helper()
	if got != want {
		c.t.Errorf("%s: %s = %#v, want %#v", c.what, field, got, want)
	}
}

// time compares instants and requires a non-zero got to be in UTC.
func (c checker) time(field string, got, want time.Time) {
	c.t.Helper()
	if !got.Equal(want) {
		c.t.Errorf("%s: %s = %v, want %v", c.what, field, got, want)
	}
	if !got.IsZero() && got.Location() != time.UTC {
		c.t.Errorf("%s: %s = %v, want it in UTC", c.what, field, got)
	}
}

// between requires got, a time the store set itself, to lie between lo
// and now, and to be in UTC.
func (c checker) between(field string, got, lo time.Time) {
	c.t.Helper()
	hi := time.Now().Add(time.Microsecond)
	if got.Before(lo) || got.After(hi) {
		c.t.Errorf("%s: %s = %v, want between %v and %v", c.what, field, got, lo, hi)
	}
	if got.Location() != time.UTC {
		c.t.Errorf("%s: %s = %v, want it in UTC", c.what, field, got)
	}
}

// json compares JSON documents by value: a store may reformat them.
func (c checker) json(field string, got, want json.RawMessage) {
	c.t.Helper()
	if len(got) == 0 || len(want) == 0 {
		if len(got) != len(want) {
			c.t.Errorf("%s: %s = %q, want %q", c.what, field, got, want)
		}
		return
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		c.t.Errorf("%s: %s = %q: %v", c.what, field, got, err)
		return
	}
	if err := json.Unmarshal(want, &w); err != nil {
		c.t.Fatalf("%s: want %s %q: %v", c.what, field, want, err)
	}
	if !reflect.DeepEqual(g, w) {
		c.t.Errorf("%s: %s = %s, want %s", c.what, field, compact(got), compact(want))
	}
}

func compact(m json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, m); err != nil {
		return string(m)
	}
	return b.String()
}

func checkAsset(t *testing.T, got, want store.Asset) {
	t.Helper()
	c := check(t, "asset %q", want.ID)
	c.eq("ID", got.ID, want.ID)
	c.eq("Name", got.Name, want.Name)
	c.eq("ContentType", got.ContentType, want.ContentType)
	c.eq("Bucket", got.Bucket, want.Bucket)
	c.eq("Key", got.Key, want.Key)
	c.eq("Size", got.Size, want.Size)
	c.eq("ETag", got.ETag, want.ETag)
	c.eq("Status", got.Status, want.Status)
	c.eq("Error", got.Error, want.Error)
	c.json("Media", got.Media, want.Media)
	c.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	c.time("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	c.time("UploadedAt", got.UploadedAt, want.UploadedAt)
}

func checkJob(t *testing.T, got, want store.Job) {
	t.Helper()
	c := check(t, "job %q", want.Key)
	c.eq("Key", got.Key, want.Key)
	c.eq("AssetID", got.AssetID, want.AssetID)
	c.eq("Status", got.Status, want.Status)
	c.eq("Error", got.Error, want.Error)
	c.eq("Owner", got.Owner, want.Owner)
	c.time("LeaseUntil", got.LeaseUntil, want.LeaseUntil)
	c.eq("Claims", got.Claims, want.Claims)
	c.time("CreatedAt", got.CreatedAt, want.CreatedAt)
	c.time("FinishedAt", got.FinishedAt, want.FinishedAt)
}

func checkStep(t *testing.T, got, want store.Step) {
	t.Helper()
	c := check(t, "step %q of job %q", want.Name, want.JobKey)
	c.eq("JobKey", got.JobKey, want.JobKey)
	c.eq("AssetID", got.AssetID, want.AssetID)
	c.eq("Name", got.Name, want.Name)
	c.eq("Status", got.Status, want.Status)
	c.eq("Attempts", got.Attempts, want.Attempts)
	c.eq("Error", got.Error, want.Error)
	c.time("StartedAt", got.StartedAt, want.StartedAt)
	c.time("FinishedAt", got.FinishedAt, want.FinishedAt)
	c.eq("Duration", got.Duration, want.Duration)
}

func checkOutput(t *testing.T, got, want store.Output) {
	t.Helper()
	c := check(t, "output %q of asset %q", want.Name, want.AssetID)
	c.eq("AssetID", got.AssetID, want.AssetID)
	c.eq("Name", got.Name, want.Name)
	c.eq("Step", got.Step, want.Step)
	c.eq("Key", got.Key, want.Key)
	c.eq("ContentType", got.ContentType, want.ContentType)
	c.eq("Size", got.Size, want.Size)
	c.eq("ETag", got.ETag, want.ETag)
	c.time("CreatedAt", got.CreatedAt, want.CreatedAt)
}

// ids returns the IDs of assets in order.
func ids(assets []store.Asset) []string {
	out := make([]string, len(assets))
	for i, a := range assets {
		out[i] = a.ID
	}
	return out
}

func checkIDs(t *testing.T, call string, got []store.Asset, want []string) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got a nil slice, want an empty one", call)
	}
	if g := ids(got); !slices.Equal(g, want) {
		t.Errorf("%s: got %q, want %q", call, g, want)
	}
}
