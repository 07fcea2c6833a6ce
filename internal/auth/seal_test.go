package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluice-media/sluice/internal/auth"
)

func TestSeal(t *testing.T) {
	old, _ := auth.NewSigner("k1", map[string][]byte{"k1": key(1)})
	s, _ := auth.NewSigner("k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	other, _ := auth.NewSigner("k2", map[string][]byte{"k2": key(3)})
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

	sealed, err := s.Seal([]byte(secret), "webhook w1")
	if err != nil {
		t.Fatal(err)
	}
	if !auth.IsSealed(sealed) || strings.Contains(sealed, secret) || strings.Contains(sealed, "MfKQ9r8G") {
		t.Fatalf("sealed value %q shows the secret or is not marked", sealed)
	}
	again, _ := s.Seal([]byte(secret), "webhook w1")
	if again == sealed {
		t.Error("sealing twice gave the same value: the nonce is not fresh")
	}
	plain, current, err := s.Unseal(sealed, "webhook w1")
	if err != nil || string(plain) != secret || !current {
		t.Fatalf("Unseal = %q, %v, %v", plain, current, err)
	}

	// Sealed under the previous key: opens, and says it is not current.
	byOld, _ := old.Seal([]byte(secret), "webhook w1")
	plain, current, err = s.Unseal(byOld, "webhook w1")
	if err != nil || string(plain) != secret || current {
		t.Fatalf("Unseal(previous key) = %q, %v, %v; want the secret, not current", plain, current, err)
	}

	flip := []byte(sealed)
	flip[len(flip)-3] ^= 'A' ^ 'B'
	if flip[len(flip)-3] == sealed[len(sealed)-3] {
		flip[len(flip)-3] = 'C'
	}
	for name, tc := range map[string]struct {
		signer        *auth.Signer
		sealed, label string
	}{
		"other label":       {s, sealed, "webhook w2"},
		"altered":           {s, string(flip), "webhook w1"},
		"unknown key id":    {old, sealed, "webhook w1"},
		"same id other key": {other, sealed, "webhook w1"},
		"plain text":        {s, secret, "webhook w1"},
		"no body":           {s, "sealed1:k2:", "webhook w1"},
		"not base64":        {s, "sealed1:k2:***", "webhook w1"},
		"no key id":         {s, "sealed1:", "webhook w1"},
	} {
		if _, _, err := tc.signer.Unseal(tc.sealed, tc.label); !errors.Is(err, auth.ErrUnseal) {
			t.Errorf("%s: Unseal err = %v, want ErrUnseal", name, err)
		}
	}
}
