package ai

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// Budget caps what calls may consume. Zero fields are unlimited.
type Budget struct {
	AudioSeconds float64
	Images       int
	// Tokens counts input and output tokens together.
	Tokens int
}

func (b Budget) zero() bool { return b == Budget{} }

// Budgets are checked before every provider call: per asset (an account
// kept while the asset has calls, then 48 hours) and per API key per UTC
// day (calls with no key share the key ""). A call that would go over
// either is not made and fails with ErrBudget. The accounts live in this
// process, or, with Gateway.Accounts set, in the state store, where every
// worker of a cluster draws on the same ones.
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

// Accounts keeps budget accounts where every worker sees them: the state
// store's AddSpend, which checks and adds in one step.
type Accounts interface {
	AddSpend(ctx context.Context, account string, delta, limit store.Spend, now, expires time.Time) (store.Spend, error)
}

// ledger keeps the budgets' accounts, in memory or in shared Accounts.
// A call holds what it needs before it is made and settles afterwards;
// in shared accounts, what a worker that died mid-call held stays
// counted (the budget errs towards refusing).
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

	// In shared accounts: their names, and what each holds.
	shared     Accounts
	names      []string
	sharedHeld store.Spend
}

// reserve checks the call against the budgets and holds what it needs,
// in shared accounts when a is set. It returns nil, nil when no budget
// applies.
func (l *ledger) reserve(ctx context.Context, a Accounts, call Call, n budgetNeed, now time.Time) (*reservation, error) {
	if l == nil || l.cfg.PerAsset.zero() && l.cfg.PerKeyDay.zero() {
		return nil, nil
	}
	if a != nil {
		return l.reserveShared(ctx, a, call, n, now)
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

// reserveShared holds the call's need in the asset's and the key-day's
// shared accounts; a refusal by the second gives back the first's hold.
func (l *ledger) reserveShared(ctx context.Context, a Accounts, call Call, n budgetNeed, now time.Time) (*reservation, error) {
	type account struct {
		name, what string
		limit      Budget
	}
	var accounts []account
	if call.AssetID != "" && !l.cfg.PerAsset.zero() {
		accounts = append(accounts, account{"asset:" + call.AssetID, "asset " + call.AssetID, l.cfg.PerAsset})
	}
	if !l.cfg.PerKeyDay.zero() {
		day := now.UTC().Format(time.DateOnly)
		name := call.Key
		if name == "" {
			name = "(none)"
		}
		accounts = append(accounts, account{"key:" + call.Key + ":" + day, "key " + name + " on " + day, l.cfg.PerKeyDay})
	}
	hold := spendOf(n.Budget)
	if n.tokens && hold.Tokens == 0 {
		hold.Tokens = 1 // so that a spent token budget refuses the call
	}
	r := &reservation{held: n.Budget, shared: a, sharedHeld: hold}
	for _, acct := range accounts {
		cur, err := a.AddSpend(ctx, acct.name, hold, spendOf(acct.limit), now, now.Add(assetIdle))
		if err != nil {
			_ = l.settle(ctx, r, Usage{}, false, now)
			if errors.Is(err, store.ErrQuotaExceeded) {
				why := checkBudget(&spend{used: budgetOf(cur)}, acct.limit, n)
				if why == nil {
					why = err
				}
				return nil, fmt.Errorf("%w: %s: %v", ErrBudget, acct.what, why)
			}
			return nil, fmt.Errorf("ai: budget account %s: %w", acct.name, err)
		}
		r.names = append(r.names, acct.name)
	}
	return r, nil
}

// settle ends a reservation: the hold is released and what the call
// consumed is counted. Audio seconds and images count at least what the
// request carried, whatever the provider reports; tokens as reported.
// A failed call settles with a zero Usage.
func (l *ledger) settle(ctx context.Context, r *reservation, u Usage, ok bool, now time.Time) error {
	if r == nil {
		return nil
	}
	var used Budget
	if ok {
		used = Budget{
			AudioSeconds: max(u.AudioSeconds, r.held.AudioSeconds),
			Images:       max(u.Images, r.held.Images),
			Tokens:       u.InputTokens + u.OutputTokens,
		}
	}
	if r.shared != nil {
		// Replace the hold with what was used; unchecked, as it is spent.
		adjust := spendOf(used).Add(store.Spend{AudioSeconds: -r.sharedHeld.AudioSeconds,
			Images: -r.sharedHeld.Images, Tokens: -r.sharedHeld.Tokens})
		var errs []error
		for _, name := range r.names {
			if _, err := r.shared.AddSpend(ctx, name, adjust, store.Spend{}, now, now.Add(assetIdle)); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range []*spend{r.asset, r.key} {
		if s != nil {
			s.reserved = subBudget(s.reserved, r.held)
			s.used = addBudget(s.used, used)
		}
	}
	return nil
}

func spendOf(b Budget) store.Spend {
	return store.Spend{AudioSeconds: b.AudioSeconds, Images: int64(b.Images), Tokens: int64(b.Tokens)}
}

func budgetOf(s store.Spend) Budget {
	return Budget{AudioSeconds: s.AudioSeconds, Images: int(s.Images), Tokens: int(s.Tokens)}
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
