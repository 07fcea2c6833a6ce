package auth_test

import (
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
)

// FuzzSignedURL signs a URL from fuzzed parts, tampers with it the way a
// client holding it could (another method or path, parameters set,
// added or removed in the query it sends), and checks Verify against
// what was signed:
//   - a tampered URL is accepted only when its signed content is what
//     was signed: the method (signed upper-cased, so its case may
//     change), the path, the expiry, the key id and every constraint,
//     repeated values included; the constraints Verify returns are then
//     exactly the signed ones;
//   - ErrExpired only for such an unchanged URL past its expiry;
//   - an unchanged URL that carries its signature is always accepted
//     before its expiry and always ErrExpired after it.
//
// edits is a query string of edits applied to the signed query before
// it is sent: "name=v" sets name, "+name=v" adds a value, "-name" removes
// name; a value "$sig" stands for the URL's own signature, so that the
// fuzzer can move it around. extra is raw query text appended as is.
func FuzzSignedURL(f *testing.F) {
	now := time.Unix(1_700_000_000, 0)
	s, err := auth.NewSigner("k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	if err != nil {
		f.Fatal(err)
	}
	const p = "/v1/uploads/0190a5c2-7b1e-7cc0-8f3a-1d2e3f4a5b6c/content"
	cs := "size=1048576&sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08&type=video%2Fmp4"
	for _, seed := range []struct {
		method, path, constraints string
		ttl                       int64
		reqMethod, reqPath        string
		edits, extra              string
	}{
		{"PUT", p, cs, 60, "PUT", p, "", ""},
		{"PUT", p, cs, -60, "PUT", p, "", ""},
		{"PUT", p, "size=10", 60, "PUT", p, "", "x=y"},
		{"PUT", p, "", 60, "PUT", p, "", ""},
		{"PUT", p, cs, 60, "put", p, "", ""},
		{"PUT", p, cs, 60, "POST", p, "", ""},
		{"PUT", p, cs, 60, "PUT", p + "/", "", ""},
		{"PUT", p, cs, 60, "PUT", strings.ToUpper(p), "", ""},
		{"PUT", p, cs, 60, "PUT", p, auth.ConstraintPrefix + "size=99999999999", ""},
		{"PUT", p, cs, 60, "PUT", p, "-" + auth.ConstraintPrefix + "size", ""},
		{"PUT", p, cs, 60, "PUT", p, "+" + auth.ConstraintPrefix + "size=1", ""},
		{"PUT", p, cs, 60, "PUT", p, auth.ConstraintPrefix + "type=image%2Fsvg%2Bxml", ""},
		{"PUT", p, cs, 60, "PUT", p, auth.ConstraintPrefix + "extra=1", ""},
		{"PUT", p, cs, 60, "PUT", p, auth.ParamExpires + "=9999999999", ""},
		{"PUT", p, cs, -60, "PUT", p, auth.ParamExpires + "=%2B1700000100", ""},
		{"PUT", p, cs, 60, "PUT", p, auth.ParamKeyID + "=k1", ""},
		{"PUT", p, cs, 60, "PUT", p, "-" + auth.ParamKeyID, ""},
		{"PUT", p, cs, 60, "PUT", p, "-" + auth.ParamSignature, ""},
		{"PUT", p, cs, 60, "PUT", p, "", auth.ParamSignature + "=AAAA"},
		{"PUT", p, cs, 60, "PUT", p, auth.ParamSignature + "=AAAA&%2B" + auth.ParamSignature + "=%24sig", ""},
		{"PUT", p, "a=1%2C2", 60, "PUT", p, "", auth.ConstraintPrefix + "a=3"},
		{"PUT", p, "a=1", 60, "PUT", p, "", auth.ConstraintPrefix + "a=2"},
		{"PUT", p, "a=1", 60, "PUT", p, "", "%3B" + auth.ConstraintPrefix + "a=2"},
		{"PUT", p, "a=x%0A" + auth.ConstraintPrefix + "b%3Dy", 60, "PUT", p, "", ""},
		{"GET", "/", "", 0, "GET", "/", "", ""},
	} {
		f.Add(seed.method, seed.path, seed.constraints, seed.ttl, seed.reqMethod, seed.reqPath, seed.edits, seed.extra)
	}
	f.Fuzz(func(t *testing.T, method, path, constraints string, ttl int64, reqMethod, reqPath, edits, extra string) {
		signed := map[string]string{}
		if v, err := url.ParseQuery(constraints); err == nil {
			for k, vs := range v {
				signed[k] = vs[0]
			}
		}
		expires := now.Add(time.Duration(ttl%(1<<31)) * time.Second)
		orig := s.Sign(method, path, expires, signed)
		sig := orig.Get(auth.ParamSignature)

		q := clone(orig)
		if ev, err := url.ParseQuery(edits); err == nil {
			for k, vs := range ev {
				for i, v := range vs {
					if v == "$sig" {
						vs[i] = sig
					}
				}
				switch {
				case strings.HasPrefix(k, "+"):
					q[k[1:]] = append(q[k[1:]], vs...)
				case strings.HasPrefix(k, "-"):
					delete(q, k[1:])
				default:
					q[k] = vs
				}
			}
		}
		// The query as the server sees it, after the trip through a URL.
		raw := q.Encode()
		if extra != "" {
			raw += "&" + extra
		}
		sent, _ := url.ParseQuery(raw)

		unchanged := strings.ToUpper(reqMethod) == strings.ToUpper(method) && reqPath == path &&
			sent.Get(auth.ParamSignature) == sig && equalSigned(sent, orig)
		expired := now.Unix() > expires.Unix()

		got, err := s.Verify(reqMethod, reqPath, sent, now)
		switch {
		case err == nil:
			if !unchanged {
				t.Fatalf("Verify accepted a tampered URL: signed %s %q %v, sent %s %q %v",
					method, path, orig, reqMethod, reqPath, sent)
			}
			if expired {
				t.Fatalf("Verify accepted a URL that expired at %v (now %v)", expires, now)
			}
			if !maps.Equal(got, signed) {
				t.Fatalf("Verify returned constraints %q, signed %q", got, signed)
			}
		case errors.Is(err, auth.ErrExpired):
			if !unchanged || !expired {
				t.Fatalf("ErrExpired for a URL whose signature does not hold (unchanged=%v, expired=%v): signed %s %q %v, sent %s %q %v",
					unchanged, expired, method, path, orig, reqMethod, reqPath, sent)
			}
		case errors.Is(err, auth.ErrBadSignature), errors.Is(err, auth.ErrUnsigned):
			if unchanged {
				t.Fatalf("Verify refused an untouched URL: %v: signed %s %q %v", err, method, path, orig)
			}
		default:
			t.Fatalf("Verify returned an unknown error: %v", err)
		}
	})
}

// equalSigned reports whether a and b carry the same signed parameters:
// expiry, key id and every constraint, with all their values in order.
func equalSigned(a, b url.Values) bool {
	pick := func(q url.Values) url.Values {
		out := url.Values{}
		for k, v := range q {
			if k == auth.ParamExpires || k == auth.ParamKeyID || strings.HasPrefix(k, auth.ConstraintPrefix) {
				out[k] = v
			}
		}
		return out
	}
	return maps.EqualFunc(pick(a), pick(b), slices.Equal)
}

func clone(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// FuzzUnseal seals a fuzzed secret, changes one byte of the sealed value
// (or the label it is opened with), and checks that Unseal gives back
// exactly what was sealed or ErrUnseal, never another value and never a
// panic; the unchanged value always opens.
func FuzzUnseal(f *testing.F) {
	s, err := auth.NewSigner("k2", map[string][]byte{"k1": key(1), "k2": key(2)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "webhook secret wh_1", 20, byte('x'), false)
	f.Add([]byte{}, "", 0, byte(':'), true)
	f.Add([]byte("a"), "l", 8, byte('1'), false)
	f.Fuzz(func(t *testing.T, plain []byte, label string, at int, b byte, otherLabel bool) {
		sealed, err := s.Seal(plain, label)
		if err != nil {
			t.Fatal(err)
		}
		if got, _, err := s.Unseal(sealed, label); err != nil || string(got) != string(plain) {
			t.Fatalf("Unseal(Seal(%q)) = %q, %v", plain, got, err)
		}
		changed, openWith := []byte(sealed), label
		if otherLabel {
			openWith += string(b)
		} else if len(changed) > 0 {
			changed[uint(at)%uint(len(changed))] = b
		}
		got, _, err := s.Unseal(string(changed), openWith)
		switch {
		case err == nil && string(got) != string(plain):
			t.Fatalf("a changed sealed value opened to %q, not %q", got, plain)
		case err != nil && !errors.Is(err, auth.ErrUnseal):
			t.Fatalf("Unseal err = %v, want ErrUnseal", err)
		}
	})
}
