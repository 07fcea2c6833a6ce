package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/store"
)

// TestSigningKeys: an endpoint signs with its sealed secret, and after a
// rotation with its previous one too until that expires; receivers
// holding either secret accept the request meanwhile.
func TestSigningKeys(t *testing.T) {
	key := make([]byte, 32)
	signer, err := auth.NewSigner("k", map[string][]byte{"k": key})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	oldSecret, newSecret := NewSecret(), NewSecret()
	seal := func(s string) string {
		v, err := SealSecret(signer, "wh_1", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	h := store.Webhook{ID: "wh_1", Secret: seal(newSecret), PreviousSecret: seal(oldSecret), PreviousUntil: now.Add(time.Hour)}

	keys, err := signingKeys(signer, h, now)
	if err != nil || len(keys) != 2 {
		t.Fatalf("signingKeys during the overlap = %d keys, %v; want 2", len(keys), err)
	}
	hdr := http.Header{}
	body := []byte(`{"type":"asset.succeeded"}`)
	SignHeaders(hdr, keys, "msg_1", now, body)
	if n := len(strings.Fields(hdr.Get(HeaderSignature))); n != 2 {
		t.Errorf("%d signatures during the overlap, want 2", n)
	}
	for name, s := range map[string]string{"old": oldSecret, "new": newSecret} {
		k, _ := ParseSecret(s)
		if err := Verify([][]byte{k}, hdr, body, now, time.Minute); err != nil {
			t.Errorf("a receiver with the %s secret: %v", name, err)
		}
	}

	if keys, err := signingKeys(signer, h, now.Add(time.Hour)); err != nil || len(keys) != 1 {
		t.Errorf("signingKeys after the overlap = %d keys, %v; want the current one only", len(keys), err)
	}
	// A previous secret that no longer opens is left out; the current one
	// still signs.
	h.PreviousSecret = "sealed1:gone:AAAA"
	if keys, err := signingKeys(signer, h, now); err != nil || len(keys) != 1 {
		t.Errorf("signingKeys with an unopenable previous secret = %d keys, %v; want 1", len(keys), err)
	}
	// The current secret must open.
	h.Secret = "sealed1:gone:AAAA"
	if _, err := signingKeys(signer, h, now); err == nil {
		t.Error("signingKeys with an unopenable secret succeeded")
	}
}
