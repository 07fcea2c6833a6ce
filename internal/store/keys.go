package store

import (
	"errors"
	"time"
)

// ErrQuotaExceeded means AddUsage or AddSpend refused a delta that would
// take a counter past its limit; nothing was added.
var ErrQuotaExceeded = errors.New("store: quota exceeded")

// Key is an API key's record. The secret is never stored: only its
// SHA-256 (the token is 256 random bits, so a fast hash is as good as a
// slow one) and a short prefix to recognize it by.
type Key struct {
	ID     string
	Name   string
	Hash   []byte
	Prefix string // the token's first characters, for display
	Scopes []string
	// Limits override the deployment's defaults for this key; zero
	// fields take the default.
	Limits    Limits
	CreatedAt time.Time
	RevokedAt time.Time // zero while the key is valid
}

// Limits bound what one key may do. Zero means "the default" where a
// default applies; see the gateway's configuration.
type Limits struct {
	// RatePerSecond and Burst size the key's token bucket.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	Burst         int     `json:"burst,omitempty"`
	// Daily quotas, counted per UTC day.
	BytesPerDay   int64   `json:"bytes_per_day,omitempty"`
	AssetsPerDay  int64   `json:"assets_per_day,omitempty"`
	AIUnitsPerDay float64 `json:"ai_units_per_day,omitempty"`
}

// Usage is what one key used on one UTC day ("2006-01-02").
type Usage struct {
	Day     string
	Bytes   int64
	Assets  int64
	AIUnits float64
}

// Exceeds reports the first counter of u over a non-zero limit in l, by
// name ("bytes", "assets", "ai_units"), or "".
func (u Usage) Exceeds(l Limits) string {
	switch {
	case l.BytesPerDay > 0 && u.Bytes > l.BytesPerDay:
		return "bytes"
	case l.AssetsPerDay > 0 && u.Assets > l.AssetsPerDay:
		return "assets"
	case l.AIUnitsPerDay > 0 && u.AIUnits > l.AIUnitsPerDay:
		return "ai_units"
	}
	return ""
}

// Day is the usage day of t.
func Day(t time.Time) string { return t.UTC().Format(time.DateOnly) }
