package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The Standard Webhooks specification's published test vector.
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = 1614265330
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vecHeaders(sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, vecID)
	h.Set(HeaderTimestamp, strconv.Itoa(vecTS))
	h.Set(HeaderSignature, sig)
	return h
}

func TestSignMatchesSpecVector(t *testing.T) {
	key, err := ParseSecret(vecSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := Sign(key, vecID, time.Unix(vecTS, 0), []byte(vecBody)); got != vecSig {
		t.Errorf("Sign = %q, want %q", got, vecSig)
	}
}

func TestSignMatchesIndependentHMAC(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"type":"asset.succeeded"}`)
	m := hmac.New(sha256.New, key)
	m.Write([]byte("msg_1.1700000000." + string(body)))
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := Sign(key, "msg_1", ts, body); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestParseSecret(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		size int
	}{
		{vecSecret, true, 24},
		{strings.TrimPrefix(vecSecret, SecretPrefix), true, 24},
		{"whsec_not base64!", false, 0},
		{"whsec_c2hvcnQ=", false, 0}, // "short"
		{"whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 65)), false, 0},
		{"", false, 0},
	} {
		key, err := ParseSecret(tc.in)
		if got := err == nil; got != tc.ok {
			t.Errorf("ParseSecret(%q) err = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("ParseSecret(%q) err = %v, want ErrInvalidSecret", tc.in, err)
		}
		if got := len(key); got != tc.size {
			t.Errorf("ParseSecret(%q) len = %d, want %d", tc.in, got, tc.size)
		}
	}
	key, err := ParseSecret(NewSecret())
	if err != nil || len(key) != 32 {
		t.Errorf("NewSecret round trip: len %d err %v", len(key), err)
	}
	if NewSecret() == NewSecret() {
		t.Error("NewSecret repeated itself")
	}
}

func TestVerify(t *testing.T) {
	key, _ := ParseSecret(vecSecret)
	other := []byte("another-secret-of-32-bytes-long!")
	otherSig := Sign(other, vecID, time.Unix(vecTS, 0), []byte(vecBody))
	now := time.Unix(vecTS, 0)

	for _, tc := range []struct {
		name    string
		secrets [][]byte
		headers http.Header
		body    string
		now     time.Time
		tol     time.Duration
		want    error
	}{
		{"spec vector", [][]byte{key}, vecHeaders(vecSig), vecBody, now, 0, nil},
		{"one of several signatures", [][]byte{key}, vecHeaders("v1,bm9wZQ== " + otherSig + " " + vecSig), vecBody, now, 0, nil},
		{"rotated secret second", [][]byte{other, key}, vecHeaders(vecSig), vecBody, now, 0, nil},
		{"unknown version skipped", [][]byte{key}, vecHeaders("v1a,xyz " + vecSig), vecBody, now, 0, nil},
		{"tampered body", [][]byte{key}, vecHeaders(vecSig), `{"test": 2432232315}`, now, 0, ErrNoMatch},
		{"wrong secret", [][]byte{other}, vecHeaders(vecSig), vecBody, now, 0, ErrNoMatch},
		{"wrong version label", [][]byte{key}, vecHeaders(strings.Replace(vecSig, "v1,", "v2,", 1)), vecBody, now, 0, ErrNoMatch},
		{"bad base64", [][]byte{key}, vecHeaders("v1,!!!"), vecBody, now, 0, ErrNoMatch},
		{"too old", [][]byte{key}, vecHeaders(vecSig), vecBody, now.Add(5*time.Minute + time.Second), 0, ErrTimestampTooOld},
		{"within tolerance", [][]byte{key}, vecHeaders(vecSig), vecBody, now.Add(5 * time.Minute), 0, nil},
		{"custom tolerance", [][]byte{key}, vecHeaders(vecSig), vecBody, now.Add(time.Minute), 30 * time.Second, ErrTimestampTooOld},
		{"future", [][]byte{key}, vecHeaders(vecSig), vecBody, now.Add(-6 * time.Minute), 0, ErrTimestampFuture},
		{"no secrets", nil, vecHeaders(vecSig), vecBody, now, 0, ErrNoSecrets},
		{"missing id", [][]byte{key}, func() http.Header { h := vecHeaders(vecSig); h.Del(HeaderID); return h }(), vecBody, now, 0, ErrMissingHeaders},
		{"missing signature", [][]byte{key}, vecHeaders(""), vecBody, now, 0, ErrMissingHeaders},
		{"non-numeric timestamp", [][]byte{key}, func() http.Header { h := vecHeaders(vecSig); h.Set(HeaderTimestamp, "soon"); return h }(), vecBody, now, 0, ErrInvalidTimestamp},
		{"padded timestamp", [][]byte{key}, func() http.Header { h := vecHeaders(vecSig); h.Set(HeaderTimestamp, "+1614265330"); return h }(), vecBody, now, 0, ErrInvalidTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Verify(tc.secrets, tc.headers, []byte(tc.body), tc.now, tc.tol)
			if !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSignHeadersRoundTrip(t *testing.T) {
	a, b := []byte("aaaaaaaaaaaaaaaaaaaaaaaa"), []byte("bbbbbbbbbbbbbbbbbbbbbbbb")
	ts := time.Unix(1700000000, 0)
	body := []byte(`{}`)
	h := http.Header{}
	SignHeaders(h, [][]byte{a, b}, "msg_x", ts, body)
	if got := len(strings.Fields(h.Get(HeaderSignature))); got != 2 {
		t.Fatalf("signatures = %d, want 2", got)
	}
	for _, s := range [][]byte{a, b} {
		if err := Verify([][]byte{s}, h, body, ts, 0); err != nil {
			t.Errorf("Verify with one of the signing secrets: %v", err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	key, _ := ParseSecret(vecSecret)
	f.Add(vecID, strconv.Itoa(vecTS), vecSig, []byte(vecBody))
	f.Add(vecID, strconv.Itoa(vecTS), "v1,bm9wZQ== "+vecSig, []byte(vecBody))
	f.Add("", "", "", []byte(nil))
	f.Add("msg", "-1", "v1,", []byte("x"))
	f.Add("msg", "99999999999999999999", "v1,,,, v2", []byte("{}"))
	f.Add("msg", "1614265330", strings.Repeat("v1,AAAA ", 100), []byte("{}"))
	now := time.Unix(vecTS, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := Verify([][]byte{key}, h, body, now, 0)
		if err != nil {
			return
		}
		// Acceptance must mean the header held the real signature.
		want := Sign(key, h.Get(HeaderID), time.Unix(vecTS, 0), body)
		if ts != strconv.Itoa(vecTS) {
			sec, _ := strconv.ParseInt(ts, 10, 64)
			want = Sign(key, h.Get(HeaderID), time.Unix(sec, 0), body)
		}
		if !strings.Contains(h.Get(HeaderSignature), strings.TrimPrefix(want, "v1,")) {
			t.Fatalf("accepted a request without its signature: id=%q ts=%q sig=%q", id, ts, sig)
		}
	})
}

// A receiver verifies a delivery with the endpoint's secret; during a
// rotation it passes both the old and the new one.
func ExampleVerify() {
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	body := []byte(`{"test": 2432232314}`)

	fmt.Println(Verify([][]byte{key}, h, body, time.Unix(1614265330, 0), 0))
	fmt.Println(Verify([][]byte{key}, h, body, time.Unix(1614265330, 0).Add(time.Hour), 0))
	// Output:
	// <nil>
	// webhook: timestamp too old
}
