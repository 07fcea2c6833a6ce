package ai

import (
	"sync"
	"time"
)

// breaker is a per-provider circuit breaker: closed until `failures`
// consecutive unhealthy calls, then open for `cooldown`, then half-open:
// one probe call goes through, and its outcome closes or reopens it.
//
// It is hand-written rather than github.com/sony/gobreaker because it is
// small, the gateway needs three outcomes (a caller's cancellation or a
// 400 says nothing about the provider's health and must neither trip nor
// heal it), and tests drive the cool-down with the gateway's clock, which
// gobreaker cannot take.
type breaker struct {
	failures int
	cooldown time.Duration
	onChange func(breakerState)

	mu        sync.Mutex
	state     breakerState
	fails     int       // consecutive unhealthy outcomes while closed
	openUntil time.Time // when open, the end of the cool-down
	probing   bool      // when half-open, a probe is in flight
}

type breakerState int

// The values are those of the sluice_ai_breaker_state gauge.
const (
	breakerClosed   breakerState = 0
	breakerHalfOpen breakerState = 1
	breakerOpen     breakerState = 2
)

func (s breakerState) String() string {
	switch s {
	case breakerClosed:
		return "closed"
	case breakerHalfOpen:
		return "half-open"
	default:
		return "open"
	}
}

// breakerOutcome is what a call says about a provider's health.
type breakerOutcome int

const (
	callHealthy   breakerOutcome = iota // answered, even with a client error such as 400
	callUnhealthy                       // failed: 5xx, 429, timeout, network, auth
	callNeutral                         // no verdict: the caller gave up
)

func newBreaker(failures int, cooldown time.Duration, onChange func(breakerState)) *breaker {
	if onChange == nil {
		onChange = func(breakerState) {}
	}
	return &breaker{failures: failures, cooldown: cooldown, onChange: onChange}
}

// allow reports whether a call may go to the provider now. When it
// returns true the caller must report the call's outcome with done.
func (b *breaker) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return true
	case breakerOpen:
		if now.Before(b.openUntil) {
			return false
		}
		b.set(breakerHalfOpen)
		b.probing = true
		return true
	default: // half-open: one probe at a time
		if b.probing {
			return false
		}
		b.probing = true
		return true
	}
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(o breakerOutcome, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		switch o {
		case callHealthy:
			b.fails = 0
		case callUnhealthy:
			b.fails++
			if b.fails >= b.failures {
				b.open(now)
			}
		}
	case breakerHalfOpen:
		b.probing = false
		switch o {
		case callHealthy:
			b.fails = 0
			b.set(breakerClosed)
		case callUnhealthy:
			b.open(now)
		}
	case breakerOpen:
		// A call let through before another tripped the breaker: its
		// outcome does not shorten the cool-down.
	}
}

func (b *breaker) open(now time.Time) {
	b.fails = 0
	b.openUntil = now.Add(b.cooldown)
	b.set(breakerOpen)
}

func (b *breaker) set(s breakerState) {
	if b.state != s {
		b.state = s
		b.onChange(s)
	}
}

// current returns the state, for tests and status.
func (b *breaker) current() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}
