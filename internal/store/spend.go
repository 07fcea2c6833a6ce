package store

// Spend is an AI budget account: what the calls charged to it consumed,
// plus what calls in flight hold. Accounts are named by their user (the
// AI gateway names one per asset and one per key and day) and kept in the
// store so that every worker of a cluster draws on the same budget.
type Spend struct {
	AudioSeconds float64
	Images       int64
	Tokens       int64
}

// Add returns s plus d.
func (s Spend) Add(d Spend) Spend {
	return Spend{s.AudioSeconds + d.AudioSeconds, s.Images + d.Images, s.Tokens + d.Tokens}
}

// Exceeds names the first dimension that delta raises past limit (zero
// limits are unlimited) when added to s, or "". A dimension delta does
// not raise is not checked: refunds and settling always apply.
func (s Spend) Exceeds(delta, limit Spend) string {
	next := s.Add(delta)
	switch {
	case delta.AudioSeconds > 0 && limit.AudioSeconds > 0 && next.AudioSeconds > limit.AudioSeconds+1e-9:
		return "audio_seconds"
	case delta.Images > 0 && limit.Images > 0 && next.Images > limit.Images:
		return "images"
	case delta.Tokens > 0 && limit.Tokens > 0 && next.Tokens > limit.Tokens:
		return "tokens"
	}
	return ""
}
