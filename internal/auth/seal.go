package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Secrets that Sluice must use again later (webhook signing secrets) are
// kept sealed at rest: encrypted with AES-256-GCM under a key derived
// (HKDF-SHA256) from the signing key, and bound to a label naming what
// they belong to, so that a copy of the database reveals nothing and a
// sealed value moved to another row does not open. A sealed value names
// the signing key's id; values sealed under a previous key still open
// while that key is configured, and say so, so that they can be sealed
// again under the current one.

const sealPrefix = "sealed1:"

// ErrUnseal is returned for a sealed value that does not open: altered,
// moved to another label, or sealed under a key this process lacks.
var ErrUnseal = errors.New("auth: sealed value does not open")

// IsSealed reports whether v was made by Seal.
func IsSealed(v string) bool { return strings.HasPrefix(v, sealPrefix) }

// Seal encrypts plain for storage, bound to label.
func (s *Signer) Seal(plain []byte, label string) (string, error) {
	aead, err := sealer(s.keys[s.current])
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	box := aead.Seal(nonce, nonce, plain, []byte(label))
	return sealPrefix + s.current + ":" + base64.RawURLEncoding.EncodeToString(box), nil
}

// Unseal opens a value made by Seal with the same label. current is false
// when it was sealed under a previous key.
func (s *Signer) Unseal(sealed, label string) (plain []byte, current bool, err error) {
	rest, ok := strings.CutPrefix(sealed, sealPrefix)
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return nil, false, fmt.Errorf("%w: not a sealed value", ErrUnseal)
	}
	id, enc := rest[:i], rest[i+1:]
	key, ok := s.keys[id]
	if !ok {
		return nil, false, fmt.Errorf("%w: sealed under signing key %q, which is not configured (see SLUICE_PREVIOUS_SIGNING_KEYS)", ErrUnseal, id)
	}
	box, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: not base64", ErrUnseal)
	}
	aead, err := sealer(key)
	if err != nil {
		return nil, false, err
	}
	if len(box) < aead.NonceSize() {
		return nil, false, fmt.Errorf("%w: too short", ErrUnseal)
	}
	plain, err = aead.Open(nil, box[:aead.NonceSize()], box[aead.NonceSize():], []byte(label))
	if err != nil {
		return nil, false, fmt.Errorf("%w: altered, or not sealed for %q", ErrUnseal, label)
	}
	return plain, id == s.current, nil
}

// sealer derives the AEAD of a signing key; the derivation keeps the
// encryption key apart from the key that signs URLs.
func sealer(signingKey []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, signingKey, nil, "sluice: sealed secrets v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
