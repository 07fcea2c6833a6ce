package ai

import (
	"fmt"
	"sync"
	"time"
)

// Budget caps what calls may consume. Zero fields are unlimited.
type Budget struct {
	AudioSeconds float64
	Images       int
	// Tokens counts input and output tokens together.
	Tokens int
}

func (b Budget) zero() bool { return b == Budget{} }

// Budgets are checked before every provider call: per asset, over the
// asset's life in this process, and per API key per UTC day (calls with
// no key share the key ""). A call that would go over either is not made
// and fails with ErrBudget.
type Budgets struct {
	PerAsset  Budget
	PerKeyDay Budget
}

// spend is what an asset or a key-day has consumed, and what calls in
// flight have reserved.
type spend struct {
	used, reserved Budget
	last           time.Time
}

type keyDay struct {
	key string
	day string // 2006-01-02, UTC
}

// ledger keeps the budgets' accounts in memory. When Sluice scales out to
// many workers the counts must move to the shared state store, or each
// worker would allow the whole budget; that store comes with scale-out.
type ledger struct {
	cfg Budgets

	mu        sync.Mutex
	assets    map[string]*spend
	keys      map[keyDay]*spend
	lastSweep time.Time
}

// assetIdle is how long an asset's account is kept after its last call.
// Reprocessing an asset later starts it afresh.
const assetIdle = 48 * time.Hour

func newLedger(cfg Budgets) *ledger {
	return &ledger{cfg: cfg, assets: map[string]*spend{}, keys: map[keyDay]*spend{}}
}

// budgetNeed is what a call is known to consume before it is made: audio
// seconds and images exactly; tokens only as the output bound the request
// sets, and whether the task bills tokens at all (then a budget already
// spent refuses it).
type budgetNeed struct {
	Budget
	tokens bool
}

// reservation is a call's hold on the budgets until it settles.
type reservation struct {
	asset *spend
	key   *spend
	held  Budget
}

// reserve checks the call against the budgets and holds what it needs.
// It returns nil, nil when no budget applies.
func (l *ledger) reserve(call Call, n budgetNeed, now time.Time) (*reservation, error) {
	if l == nil || l.cfg.PerAsset.zero() && l.cfg.PerKeyDay.zero() {
		return nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	r := &reservation{held: n.Budget}
	if call.AssetID != "" && !l.cfg.PerAsset.zero() {
		s := l.assets[call.AssetID]
		if s == nil {
			s = &spend{}
			l.assets[call.AssetID] = s
		}
		if err := checkBudget(s, l.cfg.PerAsset, n); err != nil {
			return nil, fmt.Errorf("%w: asset %s: %v", ErrBudget, call.AssetID, err)
		}
		r.asset = s
	}
	if !l.cfg.PerKeyDay.zero() {
		kd := keyDay{call.Key, now.UTC().Format(time.DateOnly)}
		s := l.keys[kd]
		if s == nil {
			s = &spend{}
			l.keys[kd] = s
		}
		if err := checkBudget(s, l.cfg.PerKeyDay, n); err != nil {
			name := call.Key
			if name == "" {
				name = "(none)"
			}
			return nil, fmt.Errorf("%w: key %s on %s: %v", ErrBudget, name, kd.day, err)
		}
		r.key = s
	}
	for _, s := range []*spend{r.asset, r.key} {
		if s != nil {
			s.reserved = addBudget(s.reserved, n.Budget)
			s.last = now
		}
	}
	return r, nil
}

func checkBudget(s *spend, limit Budget, n budgetNeed) error {
	committed := addBudget(s.used, s.reserved)
	if limit.AudioSeconds > 0 && n.AudioSeconds > 0 && committed.AudioSeconds+n.AudioSeconds > limit.AudioSeconds {
		return fmt.Errorf("audio: %.1f s used or in flight, this call needs %.1f s, budget %.1f s",
			committed.AudioSeconds, n.AudioSeconds, limit.AudioSeconds)
	}
	if limit.Images > 0 && n.Images > 0 && committed.Images+n.Images > limit.Images {
		return fmt.Errorf("images: %d used or in flight, this call needs %d, budget %d",
			committed.Images, n.Images, limit.Images)
	}
	if limit.Tokens > 0 && n.tokens && (committed.Tokens >= limit.Tokens || committed.Tokens+n.Tokens > limit.Tokens) {
		return fmt.Errorf("tokens: %d used or in flight, this call may use %d more, budget %d",
			committed.Tokens, n.Tokens, limit.Tokens)
	}
	return nil
}

// settle ends a reservation: the hold is released and what the call
// consumed is counted. Audio seconds and images count at least what the
// request carried, whatever the provider reports; tokens as reported.
// A failed call settles with a zero Usage.
func (l *ledger) settle(r *reservation, u Usage, ok bool) {
	if r == nil {
		return
	}
	var used Budget
	if ok {
		used = Budget{
			AudioSeconds: max(u.AudioSeconds, r.held.AudioSeconds),
			Images:       max(u.Images, r.held.Images),
			Tokens:       u.InputTokens + u.OutputTokens,
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range []*spend{r.asset, r.key} {
		if s != nil {
			s.reserved = subBudget(s.reserved, r.held)
			s.used = addBudget(s.used, used)
		}
	}
}

// sweep drops accounts no longer needed, at most once an hour.
func (l *ledger) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Hour {
		return
	}
	l.lastSweep = now
	today := now.UTC().Format(time.DateOnly)
	for id, s := range l.assets {
		if s.idle() && now.Sub(s.last) > assetIdle {
			delete(l.assets, id)
		}
	}
	for kd, s := range l.keys {
		if s.idle() && kd.day != today {
			delete(l.keys, kd)
		}
	}
}

// idle reports whether no call holds a reservation (audio seconds are
// summed as floats, so compared with a tolerance).
func (s *spend) idle() bool {
	r := s.reserved
	return r.Images == 0 && r.Tokens == 0 && r.AudioSeconds < 1e-6 && r.AudioSeconds > -1e-6
}

func addBudget(a, b Budget) Budget {
	return Budget{a.AudioSeconds + b.AudioSeconds, a.Images + b.Images, a.Tokens + b.Tokens}
}

func subBudget(a, b Budget) Budget {
	return Budget{a.AudioSeconds - b.AudioSeconds, a.Images - b.Images, a.Tokens - b.Tokens}
}
