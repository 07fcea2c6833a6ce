package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/sluice-media/sluice/internal/store"
)

// Sealer keeps endpoint secrets sealed at rest (auth.Signer is one): the
// dispatcher needs each secret back to sign with, so it cannot be hashed
// like an API key; the store holds it encrypted instead, bound to its
// endpoint.
type Sealer interface {
	Seal(plain []byte, label string) (string, error)
	// Unseal opens a sealed value; current is false for one sealed under
	// a previous key.
	Unseal(sealed, label string) (plain []byte, current bool, err error)
}

// errSealed marks a sealed secret that did not open here.
var errSealed = errors.New("sealed secret does not open")

func secretLabel(endpointID string) string { return "webhook secret " + endpointID }

// SealSecret returns what the store keeps of an endpoint's new secret.
func SealSecret(s Sealer, endpointID, secret string) (string, error) {
	return s.Seal([]byte(secret), secretLabel(endpointID))
}

// signingKeys returns the HMAC keys an endpoint's requests are signed
// with at now: its secret's, and after a rotation its previous secret's
// until that expires (a previous secret that no longer opens is left
// out: the current one still signs).
func signingKeys(s Sealer, h store.Webhook, now time.Time) ([][]byte, error) {
	key, err := openSecret(s, h.ID, h.Secret)
	if err != nil {
		return nil, err
	}
	keys := [][]byte{key}
	if h.PreviousSecret != "" && now.Before(h.PreviousUntil) {
		if prev, err := openSecret(s, h.ID, h.PreviousSecret); err == nil {
			keys = append(keys, prev)
		}
	}
	return keys, nil
}

// openSecret returns the HMAC key of an endpoint's stored secret. A
// secret stored in the clear (by a version before sealing) is accepted.
func openSecret(s Sealer, endpointID, stored string) ([]byte, error) {
	if !strings.HasPrefix(stored, SecretPrefix) {
		if s == nil {
			return nil, fmt.Errorf("%w: this process has no key to open it", errSealed)
		}
		plain, _, err := s.Unseal(stored, secretLabel(endpointID))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errSealed, err)
		}
		stored = string(plain)
	}
	return ParseSecret(stored)
}

// ResealSecrets seals every endpoint secret stored in the clear and seals
// again, under the current key, those sealed under a previous one, so
// that a previous signing key can be dropped once every process has run
// this. A secret changed meanwhile by another process is left to it. It
// returns how many it sealed.
func ResealSecrets(ctx context.Context, st interface {
	ListWebhooks(ctx context.Context) ([]store.Webhook, error)
	ReplaceWebhookSecret(ctx context.Context, id, old, secret string) error
}, s Sealer, log *slog.Logger) (int, error) {
	hooks, err := st.ListWebhooks(ctx)
	if err != nil {
		return 0, fmt.Errorf("webhook: reseal: %w", err)
	}
	n := 0
	for _, h := range hooks {
		plain := h.Secret
		if !strings.HasPrefix(plain, SecretPrefix) {
			p, current, err := s.Unseal(h.Secret, secretLabel(h.ID))
			if err != nil {
				log.Warn("webhook: endpoint secret does not open; deliveries to it will fail", "webhook", h.ID, "err", err)
				continue
			}
			if current {
				continue
			}
			plain = string(p)
		}
		sealed, err := SealSecret(s, h.ID, plain)
		if err != nil {
			return n, err
		}
		switch err := st.ReplaceWebhookSecret(ctx, h.ID, h.Secret, sealed); {
		case errors.Is(err, store.ErrNotFound): // deleted or resealed meanwhile
		case err != nil:
			return n, fmt.Errorf("webhook: reseal %s: %w", h.ID, err)
		default:
			n++
		}
	}
	return n, nil
}
