package notify

import (
	"context"
	"time"
)

// SetSleep replaces the puller's waits, so that tests see the backoff it
// chose without waiting it out.
func SetSleep(p *Puller, f func(ctx context.Context, d time.Duration) error) { p.sleep = f }
