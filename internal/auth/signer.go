// Package auth holds the credentials Sluice checks at its edge: API keys
// (keys.go), which the gateway requires on every /v1 route, and signed
// URLs, capability links that let a client without a key do exactly one
// thing (PUT one upload within a size and type, or GET one private
// output) until they expire.
//
// An API key is a random token shown once at creation; the store keeps
// only its SHA-256, its scopes and its limits. A signature is an HMAC-SHA256 over the method, the path, the expiry and
// every constraint carried in the query. Each key has an id that travels
// in the URL, so keys can be rotated: new URLs are signed with the current
// key while URLs signed with older keys stay valid until they expire.
// The same keys seal secrets Sluice keeps for later use (seal.go).
package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Query parameters of a signed URL. Constraints are the parameters with
// the ConstraintPrefix; all of them are covered by the signature.
const (
	ParamExpires     = "X-Sluice-Expires"
	ParamKeyID       = "X-Sluice-Key"
	ParamSignature   = "X-Sluice-Signature"
	ConstraintPrefix = "X-Sluice-C-"
)

// Errors from Verify.
var (
	ErrUnsigned     = errors.New("auth: URL is not signed")
	ErrExpired      = errors.New("auth: signed URL has expired")
	ErrBadSignature = errors.New("auth: signature does not match")
)

// Signer signs and verifies URLs.
type Signer struct {
	current string
	keys    map[string][]byte
}

// NewSigner signs with keys[current] and verifies with any key in keys.
func NewSigner(current string, keys map[string][]byte) (*Signer, error) {
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("auth: no key with id %q", current)
	}
	for id, k := range keys {
		if len(k) < 32 {
			return nil, fmt.Errorf("auth: key %q is shorter than 32 bytes", id)
		}
		if strings.ContainsAny(id, "&=?#/ ") {
			return nil, fmt.Errorf("auth: key id %q has reserved characters", id)
		}
	}
	return &Signer{current: current, keys: keys}, nil
}

// Sign returns the query that authorizes method on path until expires,
// under the given constraints (names without the prefix).
func (s *Signer) Sign(method, path string, expires time.Time, constraints map[string]string) url.Values {
	q := url.Values{}
	for k, v := range constraints {
		q.Set(ConstraintPrefix+k, v)
	}
	q.Set(ParamExpires, strconv.FormatInt(expires.Unix(), 10))
	q.Set(ParamKeyID, s.current)
	q.Set(ParamSignature, s.mac(s.keys[s.current], method, path, q))
	return q
}

// Verify checks the signature in q for method and path at now and
// returns the constraints it carries (names without the prefix).
func (s *Signer) Verify(method, path string, q url.Values, now time.Time) (map[string]string, error) {
	sig := q.Get(ParamSignature)
	if sig == "" {
		return nil, ErrUnsigned
	}
	key, ok := s.keys[q.Get(ParamKeyID)]
	if !ok {
		return nil, ErrBadSignature
	}
	if !hmac.Equal([]byte(sig), []byte(s.mac(key, method, path, q))) {
		return nil, ErrBadSignature
	}
	exp, err := strconv.ParseInt(q.Get(ParamExpires), 10, 64)
	if err != nil {
		return nil, ErrBadSignature
	}
	if now.Unix() > exp {
		return nil, ErrExpired
	}
	c := map[string]string{}
	for k, v := range q {
		if name, ok := strings.CutPrefix(k, ConstraintPrefix); ok && len(v) > 0 {
			c[name] = v[0]
		}
	}
	return c, nil
}

// mac computes the signature over a canonical form: method, path, then
// every signed parameter sorted by name with all its values. Each field
// is written with its length first, so that no choice of path, names or
// values (newlines, commas, "=") can be read as another split of the
// same bytes. Unsigned parameters (anything else a client appends) are
// ignored.
func (s *Signer) mac(key []byte, method, path string, q url.Values) string {
	var names []string
	for k := range q {
		if k == ParamExpires || k == ParamKeyID || strings.HasPrefix(k, ConstraintPrefix) {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	h := hmac.New(sha256.New, key)
	field := func(v string) { fmt.Fprintf(h, "%d:%s", len(v), v) }
	field("sluice-url-v2")
	field(strings.ToUpper(method))
	field(path)
	for _, k := range names {
		// A repeated parameter is signed in full, so it cannot be smuggled.
		field(k)
		fmt.Fprintf(h, "%d#", len(q[k]))
		for _, v := range q[k] {
			field(v)
		}
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
