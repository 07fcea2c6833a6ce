package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluice-media/sluice/internal/store"
)

// Scopes an API key may hold. Admin implies the others.
const (
	ScopeUpload = "upload" // create uploads and ingests, reprocess
	ScopeRead   = "read"   // read assets, outputs, pipelines, usage
	ScopeAdmin  = "admin"  // keys, dead letters, releases, any webhook
	// ScopeEvents only posts bucket notifications (for an S3 server's
	// webhook target).
	ScopeEvents = "events"
)

// Scopes lists every scope, in the order they are shown.
var Scopes = []string{ScopeUpload, ScopeRead, ScopeAdmin, ScopeEvents}

// Errors of API key authentication.
var (
	// ErrNoKey means the request carried no API key.
	ErrNoKey = errors.New("auth: an API key is required (Authorization: Bearer sk_...)")
	// ErrBadKey means the key is unknown or revoked; which is not said.
	ErrBadKey = errors.New("auth: API key is not valid")
	// ErrScope means the key lacks the scope the route needs.
	ErrScope = errors.New("auth: API key lacks the scope for this request")
	// ErrInvalid means a key to create is malformed (name, scopes,
	// limits, token).
	ErrInvalid = errors.New("auth: invalid key")
)

// TokenPrefix starts every API key token, so that secret scanners and
// people recognize one.
const TokenPrefix = "sk_"

// tokenEncoding writes the token's random part: lower-case, no padding,
// nothing that needs quoting in a shell or a header.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// HashToken is how a token is stored and looked up.
func HashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// ValidToken reports whether s has the shape of a token; it says nothing
// about whether the key exists.
func ValidToken(s string) bool {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok || len(rest) != 52 {
		return false
	}
	_, err := tokenEncoding.DecodeString(rest)
	return err == nil
}

// NewToken returns a new random token (32 bytes of entropy).
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return TokenPrefix + tokenEncoding.EncodeToString(b)
}

// ParseScopes reads a comma-separated scope list.
func ParseScopes(s string) ([]string, error) {
	var out []string
	for _, sc := range strings.Split(s, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !slices.Contains(Scopes, sc) {
			return nil, fmt.Errorf("%w: unknown scope %q (want %s)", ErrInvalid, sc, strings.Join(Scopes, ", "))
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: at least one scope is required", ErrInvalid)
	}
	return out, nil
}

// Principal is who a request acts as.
type Principal struct {
	KeyID  string // "" in dev mode
	Name   string
	Scopes []string
	Limits store.Limits
}

// Can reports whether the principal holds scope (admin holds all).
func (p Principal) Can(scope string) bool {
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

// KeyStore is the part of the state store keys live in.
type KeyStore interface {
	CreateKey(ctx context.Context, k store.Key) error
	KeyByHash(ctx context.Context, hash []byte) (store.Key, error)
	GetKey(ctx context.Context, id string) (store.Key, error)
	ListKeys(ctx context.Context) ([]store.Key, error)
	RevokeKey(ctx context.Context, id string, at time.Time) error
}

// Keys creates, checks and revokes API keys.
//
// Authenticate remembers a valid key for CacheTTL, so that most requests
// cost no store lookup. Revoke forgets the key at once in this process;
// other processes sharing the store notice within CacheTTL.
type Keys struct {
	store    KeyStore
	defaults store.Limits
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKey // by token hash
}

type cachedKey struct {
	p     Principal
	until time.Time
}

// CacheTTL is how long a valid key is trusted without a store lookup.
const CacheTTL = 2 * time.Second

// maxCached bounds the cache; past it the cache starts afresh.
const maxCached = 10000

// NewKeys returns the key service over st. defaults are the daily quotas
// of keys that set none of their own.
func NewKeys(st KeyStore, defaults store.Limits) *Keys {
	return &Keys{store: st, defaults: defaults, now: time.Now, cache: map[string]cachedKey{}}
}

// Effective returns a key's limits with the defaults filled in.
func (k *Keys) Effective(l store.Limits) store.Limits {
	d := k.defaults
	if l.BytesPerDay == 0 {
		l.BytesPerDay = d.BytesPerDay
	}
	if l.AssetsPerDay == 0 {
		l.AssetsPerDay = d.AssetsPerDay
	}
	if l.AIUnitsPerDay == 0 {
		l.AIUnitsPerDay = d.AIUnitsPerDay
	}
	return l
}

// NewKey describes a key to create.
type NewKey struct {
	Name   string
	Scopes []string
	Limits store.Limits
	// Token, when set, is used instead of a random one (a deployment's
	// first admin key, given in the environment). It must be ValidToken.
	Token string
}

// Create stores a new key and returns its record and its token, which
// exists nowhere else: show it once.
func (k *Keys) Create(ctx context.Context, nk NewKey) (store.Key, string, error) {
	if len(nk.Name) > 100 || !utf8.ValidString(nk.Name) || strings.ContainsFunc(nk.Name, unicode.IsControl) {
		return store.Key{}, "", fmt.Errorf("%w: the name must be at most 100 bytes of printable UTF-8", ErrInvalid)
	}
	if len(nk.Scopes) == 0 {
		return store.Key{}, "", fmt.Errorf("%w: at least one scope is required (%s)", ErrInvalid, strings.Join(Scopes, ", "))
	}
	for _, sc := range nk.Scopes {
		if !slices.Contains(Scopes, sc) {
			return store.Key{}, "", fmt.Errorf("%w: unknown scope %q (want %s)", ErrInvalid, sc, strings.Join(Scopes, ", "))
		}
	}
	l := nk.Limits
	if l.RatePerSecond < 0 || l.Burst < 0 || l.BytesPerDay < 0 || l.AssetsPerDay < 0 || l.AIUnitsPerDay < 0 {
		return store.Key{}, "", fmt.Errorf("%w: limits must not be negative", ErrInvalid)
	}
	token := nk.Token
	if token == "" {
		token = NewToken()
	} else if !ValidToken(token) {
		return store.Key{}, "", fmt.Errorf("%w: a given token must be %s followed by 52 base32 characters (make one with `sluice keys token`)", ErrInvalid, TokenPrefix)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	rec := store.Key{
		ID:        "key_" + tokenEncoding.EncodeToString(id),
		Name:      nk.Name,
		Hash:      HashToken(token),
		Prefix:    token[:len(TokenPrefix)+6],
		Scopes:    nk.Scopes,
		Limits:    nk.Limits,
		CreatedAt: k.now().UTC().Truncate(time.Microsecond),
	}
	if err := k.store.CreateKey(ctx, rec); err != nil {
		return store.Key{}, "", err
	}
	return rec, token, nil
}

// Authenticate returns the principal of a token.
func (k *Keys) Authenticate(ctx context.Context, token string) (Principal, error) {
	if !ValidToken(token) {
		return Principal{}, ErrBadKey
	}
	hash := HashToken(token)
	now := k.now()
	k.mu.Lock()
	c, ok := k.cache[string(hash)]
	k.mu.Unlock()
	if ok && now.Before(c.until) {
		return c.p, nil
	}
	rec, err := k.store.KeyByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, ErrBadKey
	}
	if err != nil {
		return Principal{}, err
	}
	if !rec.RevokedAt.IsZero() {
		return Principal{}, ErrBadKey
	}
	p := Principal{KeyID: rec.ID, Name: rec.Name, Scopes: rec.Scopes, Limits: k.Effective(rec.Limits)}
	k.mu.Lock()
	if len(k.cache) >= maxCached {
		clear(k.cache)
	}
	k.cache[string(hash)] = cachedKey{p: p, until: now.Add(CacheTTL)}
	k.mu.Unlock()
	return p, nil
}

// Get returns one key's record.
func (k *Keys) Get(ctx context.Context, id string) (store.Key, error) { return k.store.GetKey(ctx, id) }

// List returns every key, revoked ones included.
func (k *Keys) List(ctx context.Context) ([]store.Key, error) { return k.store.ListKeys(ctx) }

// Revoke revokes a key: the next request with it is refused by this
// process, and by others within CacheTTL.
func (k *Keys) Revoke(ctx context.Context, id string) error {
	if err := k.store.RevokeKey(ctx, id, k.now()); err != nil {
		return err
	}
	k.mu.Lock()
	for h, c := range k.cache {
		if c.p.KeyID == id {
			delete(k.cache, h)
		}
	}
	k.mu.Unlock()
	return nil
}

// Bootstrap creates an admin key when the store has none and returns its
// token; it returns "" when keys exist. token, when not "", is the
// token to use (from the environment) instead of a random one.
func (k *Keys) Bootstrap(ctx context.Context, token string) (string, error) {
	keys, err := k.store.ListKeys(ctx)
	if err != nil || len(keys) > 0 {
		return "", err
	}
	_, tok, err := k.Create(ctx, NewKey{Name: "admin (first start)", Scopes: []string{ScopeAdmin}, Token: token})
	return tok, err
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, for the layers below the gateway
// (ingest records the key that created an asset and charges its quota).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
