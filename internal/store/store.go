// Package store holds Sluice's state: assets, the jobs that process them,
// the result of each step, and the outputs each asset has. Store is the
// interface the gateway and workers use; sqlite is the embedded driver and
// others (PostgreSQL) implement the same interface and pass the same
// conformance suite in storetest.
//
// A job is identified by its idempotency key (see event.ObjectCreated):
// one object version is processed by one job, however often its event is
// delivered. Workers hold a job through a lease that they renew while
// steps run; a lease that lapses (a worker that died) lets another worker
// claim the job.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors drivers return; callers test with errors.Is.
var (
	ErrNotFound = errors.New("store: not found")
	ErrConflict = errors.New("store: already exists")
	// ErrLeased means another owner holds a live lease on the job.
	ErrLeased = errors.New("store: job is leased by another worker")
	// ErrInvalidCursor means ListOptions.Cursor is not one a Page returned.
	ErrInvalidCursor = errors.New("store: invalid cursor")
)

// Status is the state of an asset, a job or a step.
type Status string

const (
	StatusPending    Status = "pending"
	StatusProcessing Status = "processing"
	StatusSucceeded  Status = "succeeded"
	StatusFailed     Status = "failed"
	// StatusSkipped is for steps that did not apply to the input.
	StatusSkipped Status = "skipped"
	// StatusDegraded is for steps that could not do their work (every AI
	// provider failed) without failing the asset.
	StatusDegraded Status = "degraded"
)

// Terminal reports whether s is a final state.
func (s Status) Terminal() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusSkipped || s == StatusDegraded
}

// Asset is one uploaded media file and what is known about it.
type Asset struct {
	ID   string
	Name string // original file name as the client gave it
	// ContentType is the declared type until the upload completes, then
	// the type sniffed from the content.
	ContentType string
	Bucket      string
	Key         string
	Size        int64 // declared size until uploaded, then actual
	ETag        string
	Status      Status
	Error       string          // readable reason when Status is failed
	Media       json.RawMessage // probe summary, nil until probed
	CreatedAt   time.Time
	UpdatedAt   time.Time
	UploadedAt  time.Time // zero until the object is stored
	// Metadata are the client's key-value pairs, which pipelines match on.
	Metadata map[string]string
	// Pipeline is the name of the pipeline processing the asset; empty
	// until a worker picks one.
	Pipeline string
	// Quarantine, when not empty, says why the asset's outputs are held
	// back from delivery (moderation flagged it) until released.
	Quarantine string
	// Owner is the id of the API key that created the asset; "" when
	// none did (dev mode).
	Owner string
	// Visibility is "public" or "private" when the client chose how the
	// outputs are delivered; "" leaves it to the pipeline.
	Visibility string
}

// Object is what MarkUploaded records about the stored source object.
type Object struct {
	Bucket      string
	Key         string
	Size        int64
	ETag        string
	ContentType string
}

// Job is one processing run of one object version.
type Job struct {
	Key        string // idempotency key
	AssetID    string
	Status     Status // processing, succeeded or failed
	Error      string
	Owner      string    // worker holding the lease
	LeaseUntil time.Time // zero when no lease is held
	Claims     int       // how many times a worker has claimed it
	CreatedAt  time.Time
	FinishedAt time.Time // zero until finished
}

// Step is the record of one pipeline step within a job.
type Step struct {
	JobKey     string
	AssetID    string
	Name       string
	Status     Status
	Attempts   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	Duration   time.Duration
}

// OutputPrefix is the part of the bucket that holds an asset's outputs
// (and on-demand variants): everything Sluice made of it.
func OutputPrefix(assetID string) string { return "assets/" + assetID + "/" }

// Output is a file a step produced for an asset. An asset has at most one
// output per name: writing it again replaces it.
type Output struct {
	AssetID     string
	Name        string // e.g. "thumbnail.jpg"
	Step        string // the step that produced it
	Key         string // bucket key
	ContentType string
	Size        int64
	ETag        string
	CreatedAt   time.Time
}

// ListOptions select a page of assets, newest first.
type ListOptions struct {
	Limit  int    // default 50, at most 1000
	Cursor string // opaque, from a previous Page.Next; empty for the first page
	Status Status // optional filter
	// Pipeline, when set, keeps the assets of that pipeline.
	Pipeline string
	// Name, when set, keeps the assets whose name contains it, ignoring
	// case (ASCII case on SQLite).
	Name string
	// Owner, when set, keeps the assets that API key created.
	Owner string
}

// Page is one page of assets. Next is empty on the last page.
type Page struct {
	Assets []Asset
	Next   string
}

// Claim asks for a job's lease.
type Claim struct {
	Key     string // idempotency key; the job is created on first claim
	AssetID string
	Owner   string
	Now     time.Time
	Lease   time.Duration
}

// Store is the state a Sluice deployment shares.
type Store interface {
	CreateAsset(ctx context.Context, a Asset) error
	GetAsset(ctx context.Context, id string) (Asset, error)
	// DeleteAsset removes an asset with its jobs, steps and outputs
	// (ErrNotFound if there is none). Its objects are the caller's.
	DeleteAsset(ctx context.Context, id string) error
	ListAssets(ctx context.Context, opts ListOptions) (Page, error)
	// MarkUploaded records the stored object, sets UploadedAt and returns
	// the asset to pending with no error.
	MarkUploaded(ctx context.Context, id string, obj Object) error
	// SetAssetStatus sets the status and error of an asset directly, for
	// failures outside a job (an event that was dead-lettered).
	SetAssetStatus(ctx context.Context, id string, status Status, errMsg string) error
	SetMedia(ctx context.Context, id string, media json.RawMessage) error
	// SetPipeline records the pipeline chosen for the asset.
	SetPipeline(ctx context.Context, id, name string) error
	// SetQuarantine holds the asset's outputs back from delivery with a
	// reason, or releases them (reason "").
	SetQuarantine(ctx context.Context, id, reason string) error

	// ClaimJob creates the job on first call and takes its lease unless
	// another owner holds a live one (ErrLeased). A finished job is
	// returned as it is, without a lease, so that the caller can skip it.
	// Claiming an unfinished job sets its asset to processing.
	ClaimJob(ctx context.Context, c Claim) (Job, error)
	// RenewJob extends the lease held by owner (ErrLeased if it lost it).
	RenewJob(ctx context.Context, key, owner string, until time.Time) error
	// ReleaseJob gives up owner's lease without finishing the job.
	ReleaseJob(ctx context.Context, key, owner string) error
	// FinishJob ends the job held by owner and sets its asset's status and
	// error to match, in one transaction.
	FinishJob(ctx context.Context, key, owner string, status Status, errMsg string) error
	GetJob(ctx context.Context, key string) (Job, error)
	// LatestJob returns the most recently created job of an asset.
	LatestJob(ctx context.Context, assetID string) (Job, error)

	// StartStep marks a step running, counting an attempt, and returns it.
	StartStep(ctx context.Context, jobKey, assetID, name string, now time.Time) (Step, error)
	// FinishStep records the end of a step started by StartStep.
	FinishStep(ctx context.Context, s Step) error
	// ListSteps returns the steps of the asset's latest job in the order
	// they were first started.
	ListSteps(ctx context.Context, assetID string) ([]Step, error)
	// ListJobSteps returns the steps of one job in the order they were
	// first started.
	ListJobSteps(ctx context.Context, jobKey string) ([]Step, error)

	PutOutput(ctx context.Context, o Output) error
	// ReplaceOutputs makes outs the outputs of the asset's step, in one
	// transaction: the step's earlier outputs are removed and returned,
	// except those whose key is among outs, so that the caller can delete
	// their objects. Readers see the old set or the new one, never a mix.
	ReplaceOutputs(ctx context.Context, assetID, step string, outs []Output) (removed []Output, err error)
	// ListOutputs returns an asset's outputs ordered by name.
	ListOutputs(ctx context.Context, assetID string) ([]Output, error)

	// ListStalled returns uploaded assets still pending or processing,
	// not updated since before, whose jobs hold no live lease at now:
	// candidates for the reconciler to queue again.
	ListStalled(ctx context.Context, now, before time.Time, limit int) ([]Asset, error)
	// ListAwaitingUpload returns pending assets created before the given
	// time whose object was never recorded as uploaded.
	ListAwaitingUpload(ctx context.Context, before time.Time, limit int) ([]Asset, error)

	// CreateKey stores a new API key (ErrConflict if its id or hash is
	// taken).
	CreateKey(ctx context.Context, k Key) error
	// KeyByHash returns the key whose token hashes to hash, revoked or
	// not; ErrNotFound if none.
	KeyByHash(ctx context.Context, hash []byte) (Key, error)
	// GetKey returns the key with the given id, revoked or not.
	GetKey(ctx context.Context, id string) (Key, error)
	// ListKeys returns every key, revoked ones included, oldest first.
	ListKeys(ctx context.Context) ([]Key, error)
	// RevokeKey marks a key revoked at the given time; revoking it again
	// keeps the first time.
	RevokeKey(ctx context.Context, id string, at time.Time) error
	// AddUsage adds delta to the key's counters for delta.Day, unless a
	// counter would then exceed a non-zero limit in limits: then nothing
	// is added and the error is ErrQuotaExceeded. It returns the usage
	// after the call, in one transaction, so that concurrent requests
	// cannot overshoot a quota together.
	AddUsage(ctx context.Context, keyID string, delta Usage, limits Limits) (Usage, error)
	// GetUsage returns the key's usage on day (zero counters if none).
	GetUsage(ctx context.Context, keyID, day string) (Usage, error)

	// AddSpend adds delta to an AI budget account unless that takes a
	// dimension delta raises past limit: then it adds nothing and returns
	// the account as it stands with ErrQuotaExceeded. The account is kept
	// until expires (each add moves it); one expired at now reads as zero.
	AddSpend(ctx context.Context, account string, delta, limit Spend, now, expires time.Time) (Spend, error)

	// CreateWebhook stores an endpoint (ErrConflict if the id is taken).
	CreateWebhook(ctx context.Context, w Webhook) error
	GetWebhook(ctx context.Context, id string) (Webhook, error)
	// ListWebhooks returns every endpoint, oldest first.
	ListWebhooks(ctx context.Context) ([]Webhook, error)
	// DeleteWebhook removes an endpoint and its deliveries.
	DeleteWebhook(ctx context.Context, id string) error
	// ReplaceWebhookSecret stores secret as the endpoint's secret if its
	// stored secret is still old (ErrNotFound if not, or no such endpoint).
	ReplaceWebhookSecret(ctx context.Context, id, old, secret string) error
	// RotateWebhookSecret makes secret the endpoint's secret and keeps the
	// one it replaces as PreviousSecret until previousUntil.
	RotateWebhookSecret(ctx context.Context, id, secret string, previousUntil time.Time) error
	// DisableWebhook stops deliveries to an endpoint; its pending
	// deliveries fail with the reason.
	DisableWebhook(ctx context.Context, id, reason string, at time.Time) error
	// EnqueueDeliveries stores pending deliveries, skipping any whose id
	// exists: enqueueing the same event again changes nothing.
	EnqueueDeliveries(ctx context.Context, ds []Delivery) error
	// ClaimDeliveries returns up to limit pending deliveries due at now,
	// oldest due first, and moves their NextAt to now+lease so that
	// another dispatcher does not take them meanwhile.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// UpdateDelivery records an attempt's outcome: State, Attempts,
	// NextAt, LastStatus and LastError.
	UpdateDelivery(ctx context.Context, d Delivery) error
	// ListDeliveries returns an endpoint's deliveries, newest first.
	ListDeliveries(ctx context.Context, webhookID string, limit int) ([]Delivery, error)

	Ping(ctx context.Context) error
	Close() error
}
