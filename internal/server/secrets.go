package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-media/sluice/internal/auth"
)

// loadSigner finds the URL signing key: SLUICE_SIGNING_KEY (hex), the
// file named by SLUICE_SIGNING_KEY_FILE, or a key generated once into
// the data dir (mode 0600). The key id is derived from the key, so the
// same key always has the same id.
//
// Rotation: the keys in SLUICE_PREVIOUS_SIGNING_KEYS (hex, comma-
// separated) and in the data dir's secrets/previous/*.key files still
// verify URLs they signed, until those expire; only the current key
// signs. To rotate the generated key, move secrets/signing.key into
// secrets/previous/ and restart.
func loadSigner(dataDir string, getenv func(string) string) (*auth.Signer, error) {
	key, err := signingKey(dataDir, getenv)
	if err != nil {
		return nil, err
	}
	keys := map[string][]byte{}
	add := func(k []byte) string {
		sum := sha256.Sum256(k)
		id := hex.EncodeToString(sum[:4])
		keys[id] = k
		return id
	}
	for i, v := range strings.Split(getenv("SLUICE_PREVIOUS_SIGNING_KEYS"), ",") {
		if strings.TrimSpace(v) == "" {
			continue
		}
		k, err := decodeKey(v, fmt.Sprintf("SLUICE_PREVIOUS_SIGNING_KEYS item %d", i+1))
		if err != nil {
			return nil, err
		}
		add(k)
	}
	old, _ := filepath.Glob(filepath.Join(dataDir, "secrets", "previous", "*.key"))
	for _, p := range old {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, err := decodeKey(string(data), p)
		if err != nil {
			return nil, err
		}
		add(k)
	}
	return auth.NewSigner(add(key), keys)
}

func signingKey(dataDir string, getenv func(string) string) ([]byte, error) {
	if v := getenv("SLUICE_SIGNING_KEY"); v != "" {
		return decodeKey(v, "SLUICE_SIGNING_KEY")
	}
	if p := getenv("SLUICE_SIGNING_KEY_FILE"); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("signing key file: %w", err)
		}
		return decodeKey(string(data), p)
	}
	path := filepath.Join(dataDir, "secrets", "signing.key")
	data, err := os.ReadFile(path)
	if err == nil {
		return decodeKey(string(data), path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		return nil, err
	}
	return key, f.Sync()
}

// decodeKey reads a hex key of at least 32 bytes; where names the source
// for the error, which never includes the key itself.
func decodeKey(s, where string) ([]byte, error) {
	key, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("signing key from %s must be at least 64 hex digits", where)
	}
	return key, nil
}
