package store

import (
	"encoding/json"
	"time"
)

// Webhook is an endpoint that hears about finished assets.
type Webhook struct {
	ID  string
	URL string
	// Owner is the API key whose assets the endpoint hears about; ""
	// means every asset (an admin's endpoint).
	Owner string
	// Pipeline, when set, limits the endpoint to assets of that pipeline.
	Pipeline string
	// Events are the event types sent; empty means all.
	Events []string
	// Secret signs the requests. The store keeps what it is given (the
	// webhook package gives it sealed: Sluice must sign with it, so it
	// cannot be hashed).
	Secret string
	// PreviousSecret, after a rotation, signs requests too until
	// PreviousUntil, so that receivers can switch over.
	PreviousSecret string
	PreviousUntil  time.Time
	CreatedAt      time.Time
	// DisabledAt is set when the receiver answered 410 Gone; nothing more
	// is sent to a disabled endpoint.
	DisabledAt     time.Time
	DisabledReason string
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed" // gave up: schedule ran out, or gone
)

// Delivery is one event on its way to one endpoint, with the outcome of
// its latest attempt: the endpoint's delivery log.
type Delivery struct {
	// ID is the webhook-id receivers see; the same for every attempt.
	ID         string
	WebhookID  string
	Type       string
	AssetID    string
	Payload    json.RawMessage // the event's data
	EventTime  time.Time
	State      string
	Attempts   int
	NextAt     time.Time // when the next attempt is due (pending only)
	LastStatus int       // HTTP status of the last attempt; 0: none arrived
	LastError  string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}
