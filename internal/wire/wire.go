// Package wire holds the JSON documents of Sluice's HTTP API, shared by the
// gateway that writes them and the client and CLI that read them, so that
// both sides cannot drift apart.
package wire

import (
	"encoding/json"
	"time"
)

// Asset statuses.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusSucceeded  = "succeeded"
	StatusFailed     = "failed"
)

// Asset is the document at GET /v1/assets/{id}.
type Asset struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	Error       string     `json:"error,omitempty"`
	ContentType string     `json:"content_type,omitempty"`
	Size        int64      `json:"size"`
	ETag        string     `json:"etag,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	UploadedAt  *time.Time `json:"uploaded_at,omitempty"`
	// Metadata are the key-value pairs given at upload.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Degraded lists the steps that could not do their work (every AI
	// provider failed), with why; the asset still succeeds, and a
	// reprocess of those steps can fill them in.
	Degraded []Missing `json:"degraded,omitempty"`
	// Visibility is how the outputs are served: "public", or "private"
	// (the output URLs are signed and expire).
	Visibility string `json:"visibility"`
	// Quarantined, when set, says why the asset's outputs are held back
	// from delivery (403) until POST /v1/assets/{id}/release.
	Quarantined string `json:"quarantined,omitempty"`
	// Pipeline is the pipeline processing the asset.
	Pipeline string `json:"pipeline,omitempty"`
	// ThumbnailURL, in lists only, is a small picture of the asset.
	ThumbnailURL string          `json:"thumbnail_url,omitempty"`
	Media        json.RawMessage `json:"media"`
	Outputs      []Output        `json:"outputs"`
	Steps        []Step          `json:"steps"`
}

// Missing is an enrichment an asset lacks.
type Missing struct {
	Step   string `json:"step"`
	Reason string `json:"reason"`
}

// Done reports whether the asset reached a final status.
func (a *Asset) Done() bool { return a.Status == StatusSucceeded || a.Status == StatusFailed }

// Output is one file produced for an asset.
type Output struct {
	Name        string `json:"name"`
	Step        string `json:"step,omitempty"`
	Key         string `json:"key"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	ETag        string `json:"etag,omitempty"`
	URL         string `json:"url"`
}

// Step is the state of one pipeline step.
type Step struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error,omitempty"`
	// Reason says why a skipped step did not run, or why a degraded one
	// could not do its work.
	Reason     string     `json:"reason,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	DurationMS float64    `json:"duration_ms"`
}

// AssetList is the document at GET /v1/assets.
type AssetList struct {
	Assets     []Asset `json:"assets"`
	NextCursor string  `json:"next_cursor,omitempty"`
}

// UploadRequest is the body of POST /v1/uploads.
type UploadRequest struct {
	Name        string `json:"name"`
	ContentType string `json:"content_type,omitempty"`
	Size        int64  `json:"size"`
	// SHA256 is the hex digest the content must have (optional).
	SHA256 string `json:"sha256,omitempty"`
	// Metadata are key-value pairs kept with the asset; pipelines can
	// match on them. At most 32 pairs.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Visibility is "public" or "private" (outputs served only through
	// signed URLs); empty leaves it to the pipeline.
	Visibility string `json:"visibility,omitempty"`
}

// ReprocessRequest is the body of POST /v1/assets/{id}/reprocess.
type ReprocessRequest struct {
	// Steps are the ids of the steps to run again; empty: all.
	Steps []string `json:"steps,omitempty"`
}

// Pipeline describes a configured pipeline, at GET /v1/pipelines.
type Pipeline struct {
	Name   string        `json:"name"`
	Doc    string        `json:"doc,omitempty"`
	Source string        `json:"source"`
	Match  PipelineMatch `json:"match"`
	// Delivery is "public", "private" or empty (the server's default).
	Delivery string         `json:"delivery,omitempty"`
	Steps    []PipelineStep `json:"steps"`
}

// PipelineMatch is what a pipeline applies to.
type PipelineMatch struct {
	ContentTypes []string          `json:"content_types,omitempty"`
	Keys         []string          `json:"keys,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
}

// PipelineStep is one step of a pipeline.
type PipelineStep struct {
	ID        string         `json:"id"`
	Uses      string         `json:"uses"`
	With      map[string]any `json:"with,omitempty"`
	Needs     []string       `json:"needs,omitempty"`
	When      string         `json:"when,omitempty"`
	TimeoutMS int64          `json:"timeout_ms,omitempty"`
	Retries   int            `json:"retries,omitempty"`
	OnError   string         `json:"on_error"`
	Pool      string         `json:"pool"`
	Engine    string         `json:"engine,omitempty"`
}

// PipelineList is the document at GET /v1/pipelines.
type PipelineList struct {
	Pipelines []Pipeline `json:"pipelines"`
}

// Upload is the answer to POST /v1/uploads: where and how to send the bytes.
type Upload struct {
	AssetID   string            `json:"asset_id"`
	Method    string            `json:"method"`
	URL       string            `json:"url"`
	Headers   map[string]string `json:"headers,omitempty"`
	ExpiresAt time.Time         `json:"expires_at"`
}

// UploadResult is the answer to a completed signed PUT.
type UploadResult struct {
	AssetID string `json:"asset_id"`
	Size    int64  `json:"size"`
	ETag    string `json:"etag"`
}

// DeadLetter is one entry at GET /v1/dead-letters.
type DeadLetter struct {
	Seq        uint64          `json:"seq"`
	AssetID    string          `json:"asset_id,omitempty"`
	Reason     string          `json:"reason"`
	Deliveries int             `json:"deliveries"`
	FailedAt   time.Time       `json:"failed_at"`
	Event      json.RawMessage `json:"event"`
}

// DeadLetterList is the document at GET /v1/dead-letters.
type DeadLetterList struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	// Next is the value of ?after= for the next page; 0 on the last page.
	Next uint64 `json:"next,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong: a stable code and a readable message.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Limits are an API key's own rate and daily quotas; zero fields take
// the server's defaults.
type Limits struct {
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	Burst         int     `json:"burst,omitempty"`
	BytesPerDay   int64   `json:"bytes_per_day,omitempty"`
	AssetsPerDay  int64   `json:"assets_per_day,omitempty"`
	AIUnitsPerDay float64 `json:"ai_units_per_day,omitempty"`
}

// KeyRequest is the body of POST /v1/keys.
type KeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
	Limits Limits   `json:"limits,omitzero"`
}

// Key describes an API key; the token itself is shown only once, in
// KeyCreated.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Prefix    string     `json:"prefix"`
	Scopes    []string   `json:"scopes"`
	Limits    Limits     `json:"limits,omitzero"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// KeyCreated is the answer to POST /v1/keys.
type KeyCreated struct {
	Key
	// Token is the secret: store it now, it cannot be shown again.
	Token string `json:"token"`
}

// KeyList is the document at GET /v1/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// Usage is the document at GET /v1/usage: what the calling key used
// today (UTC) against its daily quotas (0: unlimited).
type Usage struct {
	KeyID   string  `json:"key_id"`
	Day     string  `json:"day"`
	Bytes   int64   `json:"bytes"`
	Assets  int64   `json:"assets"`
	AIUnits float64 `json:"ai_units"`
	Limits  Limits  `json:"limits"`
}

// IngestRequest is the body of POST /v1/assets: Sluice fetches the
// source itself.
type IngestRequest struct {
	// SourceURL is an http or https URL of the source. Private, loopback,
	// link-local and cloud-metadata addresses are refused.
	SourceURL string `json:"source_url"`
	// Name defaults to the last element of the URL's path.
	Name string `json:"name,omitempty"`
	// SHA256 is the hex digest the fetched content must have (optional).
	SHA256     string            `json:"sha256,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	Visibility string            `json:"visibility,omitempty"`
}

// WebhookRequest is the body of POST /v1/webhooks.
type WebhookRequest struct {
	URL string `json:"url"`
	// Events limits the event types sent (asset.succeeded, asset.failed,
	// asset.degraded); empty: all.
	Events []string `json:"events,omitempty"`
	// Pipeline limits the endpoint to assets of one pipeline.
	Pipeline string `json:"pipeline,omitempty"`
	// AllAssets (admin keys only) hears about every asset, not only those
	// the calling key created.
	AllAssets bool `json:"all_assets,omitempty"`
}

// Webhook is an endpoint; Secret is only shown when it is created.
type Webhook struct {
	ID             string     `json:"id"`
	URL            string     `json:"url"`
	Events         []string   `json:"events"`
	Pipeline       string     `json:"pipeline,omitempty"`
	Owner          string     `json:"owner,omitempty"`
	Secret         string     `json:"secret,omitempty"` // only when created or rotated
	CreatedAt      time.Time  `json:"created_at"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
	// PreviousSecretUntil: after a rotation, requests also carry a
	// signature with the previous secret until then.
	PreviousSecretUntil *time.Time `json:"previous_secret_until,omitempty"`
}

// WebhookList is the document at GET /v1/webhooks.
type WebhookList struct {
	Webhooks []Webhook `json:"webhooks"`
}

// Delivery is one event sent, or being sent, to an endpoint.
type Delivery struct {
	ID         string     `json:"id"` // the webhook-id header
	Type       string     `json:"type"`
	AssetID    string     `json:"asset_id"`
	State      string     `json:"state"` // pending, delivered, failed
	Attempts   int        `json:"attempts"`
	LastStatus int        `json:"last_status,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	NextAt     *time.Time `json:"next_attempt_at,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
}

// DeliveryList is the document at GET /v1/webhooks/{id}/deliveries.
type DeliveryList struct {
	Deliveries []Delivery `json:"deliveries"`
}

// MetricsHistory is the document at GET /v1/metrics/history: a few
// series derived from the serving process's metrics, one point per
// interval, oldest first.
type MetricsHistory struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// Processes is how many processes the latest point covers: this one
	// and those that reported to it (a cluster's workers and gateways).
	Processes int            `json:"processes"`
	Series    []MetricSeries `json:"series"`
}

// MetricSeries is one line of a chart.
type MetricSeries struct {
	Name  string `json:"name"`
	Chart string `json:"chart"` // the chart it is drawn in
	Label string `json:"label"`
	// Unit is per_min, count, seconds or ratio (0 to 1).
	Unit   string        `json:"unit"`
	Points []MetricPoint `json:"points"`
}

// MetricPoint is a value at a time; it reads as [unix_ms, value], the
// value null when there was nothing to measure.
type MetricPoint struct {
	UnixMilli int64
	Value     *float64
}

// MarshalJSON writes the point as a pair.
func (p MetricPoint) MarshalJSON() ([]byte, error) {
	return json.Marshal([2]any{p.UnixMilli, p.Value})
}

// UnmarshalJSON reads a pair.
func (p *MetricPoint) UnmarshalJSON(b []byte) error {
	var pair [2]json.RawMessage
	if err := json.Unmarshal(b, &pair); err != nil {
		return err
	}
	if err := json.Unmarshal(pair[0], &p.UnixMilli); err != nil {
		return err
	}
	return json.Unmarshal(pair[1], &p.Value)
}
