package auth_test

import (
	"bytes"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSignVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	old, _ := auth.NewSigner("k1", map[string][]byte{"k1": key(1)})
	s, err := auth.NewSigner("k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	if err != nil {
		t.Fatal(err)
	}
	good := s.Sign("PUT", "/v1/uploads/a/content", now.Add(time.Minute), map[string]string{"size": "10"})
	tamper := func(f func(q url.Values)) url.Values {
		q := url.Values{}
		for k, v := range good {
			q[k] = append([]string(nil), v...)
		}
		f(q)
		return q
	}
	tests := []struct {
		name   string
		method string
		path   string
		q      url.Values
		at     time.Time
		want   error
	}{
		{"valid", "PUT", "/v1/uploads/a/content", good, now, nil},
		{"valid with extra unsigned param", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Set("x", "y") }), now, nil},
		{"old key still valid", "PUT", "/p", old.Sign("PUT", "/p", now.Add(time.Minute), nil), now, nil},
		{"expired", "PUT", "/v1/uploads/a/content", good, now.Add(2 * time.Minute), auth.ErrExpired},
		{"other method", "GET", "/v1/uploads/a/content", good, now, auth.ErrBadSignature},
		{"other path", "PUT", "/v1/uploads/b/content", good, now, auth.ErrBadSignature},
		{"size changed", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Set(auth.ConstraintPrefix+"size", "99") }), now, auth.ErrBadSignature},
		{"constraint added", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Set(auth.ConstraintPrefix+"type", "video/mp4") }), now, auth.ErrBadSignature},
		{"constraint repeated", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Add(auth.ConstraintPrefix+"size", "99") }), now, auth.ErrBadSignature},
		{"expiry extended", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Set(auth.ParamExpires, "9999999999") }), now, auth.ErrBadSignature},
		{"unknown key id", "PUT", "/v1/uploads/a/content", tamper(func(q url.Values) { q.Set(auth.ParamKeyID, "k9") }), now, auth.ErrBadSignature},
		{"unsigned", "PUT", "/p", url.Values{}, now, auth.ErrUnsigned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := s.Verify(tt.method, tt.path, tt.q, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && tt.name == "valid" && c["size"] != "10" {
				t.Errorf("constraints = %v, want size=10", c)
			}
		})
	}
}

func TestNewSignerRejectsShortKeys(t *testing.T) {
	if _, err := auth.NewSigner("a", map[string][]byte{"a": []byte("short")}); err == nil {
		t.Error("short key accepted")
	}
	if _, err := auth.NewSigner("b", map[string][]byte{"a": key(1)}); err == nil {
		t.Error("missing current key accepted")
	}
}
