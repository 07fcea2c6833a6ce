package s3blob_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/blob/blobtest"
	"github.com/sluice-media/sluice/internal/blob/s3blob"
	"github.com/sluice-media/sluice/internal/blob/s3blob/s3test"
)

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket {
		return open(t, config(t, ""))
	})
}

// config returns the configuration of a fresh bucket on the test server,
// reached through endpoint when it is given (a recording proxy).
func config(t *testing.T, endpoint string) s3blob.Config {
	t.Helper()
	ep, ak, sk := s3test.Start(t)
	if endpoint == "" {
		endpoint = ep
	}
	return s3blob.Config{
		Endpoint:        endpoint,
		Bucket:          s3test.Bucket(t),
		AccessKeyID:     ak,
		SecretAccessKey: sk,
		PathStyle:       true,
	}
}

func open(t *testing.T, cfg s3blob.Config) *s3blob.Bucket {
	t.Helper()
	b, err := s3blob.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%v) = %v", cfg, err)
	}
	return b
}

func TestOpenErrors(t *testing.T) {
	cfg := config(t, "")
	missing := cfg
	missing.Bucket = "no-such-bucket"
	if _, err := s3blob.Open(t.Context(), missing); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing bucket = %v, want a does-not-exist error", err)
	}
	wrong := cfg
	wrong.SecretAccessKey = "wrong"
	if _, err := s3blob.Open(t.Context(), wrong); err == nil || !strings.Contains(err.Error(), "denied") {
		t.Errorf("Open with a wrong secret = %v, want access denied", err)
	}
	small := cfg
	small.PartSize = 1 << 20
	if _, err := s3blob.Open(t.Context(), small); err == nil {
		t.Errorf("Open with a 1 MiB part size = nil error, want one")
	}
}

func TestConfigRedactsSecret(t *testing.T) {
	const secret = "s3cr3t-value"
	cfg := s3blob.Config{Bucket: "b", AccessKeyID: "AKID", SecretAccessKey: secret}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "s3", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), cfg.String(), logged.String()} {
		if strings.Contains(s, secret) {
			t.Errorf("%q shows the secret", s)
		}
		if !strings.Contains(s, "AKID") {
			t.Errorf("%q does not show the access key ID", s)
		}
	}
}

// TestMultipart writes 12 MiB in 5 MiB parts, of known and of unknown
// size, and copies it into place in one request and part by part.
func TestMultipart(t *testing.T) {
	const partSize = s3blob.MinPartSize
	data := pattern(12<<20, 7)
	wantParts := []int64{partSize, partSize, 2 << 20}
	for _, tt := range []struct {
		name     string
		size     int64
		copyPart bool
	}{
		{"known size", int64(len(data)), false},
		{"unknown size", -1, false},
		{"copied in parts", int64(len(data)), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.copyPart {
				s3blob.SetCopyMax(t, partSize)
			}
			rec := record(t)
			cfg := config(t, rec.url)
			cfg.PartSize = partSize
			b := open(t, cfg)
			a, err := b.Put(t.Context(), "big/video.mp4", bytes.NewReader(data), blob.PutOptions{Size: tt.size, SHA256: sha(data), ContentType: "video/mp4"})
			if err != nil {
				t.Fatalf("Put = %v", err)
			}
			want := blob.Attrs{Key: "big/video.mp4", Size: int64(len(data)), ContentType: "video/mp4", ETag: md5hex(data)}
			checkAttrs(t, "Put", a, want)

			if got := rec.sizes("PUT", "partNumber"); !slices.Equal(got, wantParts) {
				t.Errorf("uploaded parts of %v bytes, want %v", got, wantParts)
			}
			if tt.copyPart {
				want := []string{"bytes=0-5242879", "bytes=5242880-10485759", "bytes=10485760-12582911"}
				if got := rec.headers("PUT", "partNumber", "X-Amz-Copy-Source-Range"); !slices.Equal(got, want) {
					t.Errorf("copied part ranges %q, want %q", got, want)
				}
			}
			if got, want := rec.withHeader("X-Amz-Meta-Md5"), []string{md5hex(data)}; !slices.Equal(got, want) {
				t.Errorf("x-amz-meta-md5 sent %q, want %q once", got, want)
			}
			if got := headMeta(t, cfg, "big/video.mp4")["md5"]; got != md5hex(data) {
				t.Errorf("stored x-amz-meta-md5 = %q, want %q", got, md5hex(data))
			}
			st, err := b.Stat(t.Context(), "big/video.mp4")
			if err != nil {
				t.Fatalf("Stat = %v", err)
			}
			checkAttrs(t, "Stat", st, want)
			if l, err := b.List(t.Context(), ""); err != nil || len(l) != 1 {
				t.Errorf("List(\"\") = %v, %v, want the one object and no temporary one", l, err)
			} else {
				checkAttrs(t, "List", l[0], want)
			}
			checkRanges(t, b, "big/video.mp4", data)
		})
	}
}

// checkRanges reads key the way delivery serves Range requests.
func checkRanges(t *testing.T, b blob.Bucket, key string, data []byte) {
	t.Helper()
	o, err := b.Open(t.Context(), key)
	if err != nil {
		t.Fatalf("Open(%q) = %v", key, err)
	}
	defer o.Close()
	checkAttrs(t, "Open", o.Attrs(), blob.Attrs{Key: key, Size: int64(len(data)), ContentType: o.Attrs().ContentType, ETag: md5hex(data)})
	size := int64(len(data))
	for _, r := range []struct{ off, n int64 }{
		{0, 100},
		{5<<20 - 10, 20}, // across a part boundary
		{size - 1000, 1000},
		{3 << 20, 300 << 10},
		{3<<20 + 400<<10, 10}, // a little ahead of the last read
		{1, 1 << 20},
		{size - 1, 1},
	} {
		if _, err := o.Seek(r.off, io.SeekStart); err != nil {
			t.Fatalf("Seek(%d) = %v", r.off, err)
		}
		got := make([]byte, r.n)
		if _, err := io.ReadFull(o, got); err != nil {
			t.Fatalf("reading %d bytes at %d: %v", r.n, r.off, err)
		}
		if !bytes.Equal(got, data[r.off:r.off+r.n]) {
			t.Errorf("%d bytes at %d differ from what was written", r.n, r.off)
		}
	}
	if n, err := o.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read at the end = %d, %v, want 0, EOF", n, err)
	}
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	all, err := io.ReadAll(o)
	if err != nil || md5hex(all) != md5hex(data) {
		t.Errorf("whole read after seeking back = %d bytes (md5 %s), %v, want %d (md5 %s)", len(all), md5hex(all), err, len(data), md5hex(data))
	}
}

// TestMultipartRejected checks that a multipart write that fails its
// checks is aborted: never completed, and the old object stays.
func TestMultipartRejected(t *testing.T) {
	data := pattern(11<<20, 9)
	for _, tt := range []struct {
		name string
		opts blob.PutOptions
		want error
	}{
		{"checksum", blob.PutOptions{Size: -1, SHA256: sha([]byte("other"))}, blob.ErrChecksumMismatch},
		{"too long", blob.PutOptions{Size: 10 << 20}, blob.ErrSizeMismatch},
		{"too short", blob.PutOptions{Size: 12 << 20}, blob.ErrSizeMismatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := record(t)
			cfg := config(t, rec.url)
			cfg.PartSize = s3blob.MinPartSize
			b := open(t, cfg)
			old := []byte("old content")
			if _, err := b.Put(t.Context(), "k", bytes.NewReader(old), blob.PutOptions{Size: int64(len(old))}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Put(t.Context(), "k", bytes.NewReader(data), tt.opts); !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want %v", err, tt.want)
			}
			if got := rec.count("DELETE", "uploadId"); got != 1 {
				t.Errorf("%d multipart uploads aborted, want 1", got)
			}
			if got := rec.count("POST", "uploadId"); got != 0 {
				t.Errorf("%d multipart uploads completed, want 0", got)
			}
			o, err := b.Open(t.Context(), "k")
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if got, _ := io.ReadAll(o); !bytes.Equal(got, old) {
				t.Errorf("content after rejected Put = %q, want %q", got, old)
			}
		})
	}
}

// TestOverwriteWhileOpenLarge checks what the package doc promises for an
// object too large to keep: reading on in the open response still gives
// the old version, and a seek that needs a new request, after an
// overwrite in this unversioned bucket, gives ErrChanged, never new bytes.
func TestOverwriteWhileOpenLarge(t *testing.T) {
	b := open(t, config(t, ""))
	ctx := t.Context()
	old := pattern(3<<20, 1)
	if _, err := b.Put(ctx, "v", bytes.NewReader(old), blob.PutOptions{Size: int64(len(old))}); err != nil {
		t.Fatal(err)
	}
	o, err := b.Open(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	head := make([]byte, 1000)
	if _, err := io.ReadFull(o, head); err != nil {
		t.Fatal(err)
	}
	next := pattern(3<<20, 2)
	if _, err := b.Put(ctx, "v", bytes.NewReader(next), blob.PutOptions{Size: int64(len(next))}); err != nil {
		t.Fatal(err)
	}
	more := make([]byte, 1<<20)
	if _, err := io.ReadFull(o, more); err != nil {
		t.Fatalf("reading on after overwrite: %v", err)
	}
	if !bytes.Equal(append(head, more...), old[:len(head)+len(more)]) {
		t.Errorf("reading on after overwrite gave other bytes than the old version's")
	}
	if _, err := o.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if n, err := o.Read(make([]byte, 10)); !errors.Is(err, s3blob.ErrChanged) {
		t.Errorf("Read after seeking back past an overwrite = %d, %v, want %v", n, err, s3blob.ErrChanged)
	}
}

func TestPresignPut(t *testing.T) {
	cfg := config(t, "")
	b := open(t, cfg)
	ctx := t.Context()
	data := []byte("<!DOCTYPE html><p>uploaded straight to the bucket</p>")
	const key = "direct/upload.html"

	put := func(u string, headers map[string]string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range headers {
			if k != "Content-Length" { // net/http sends the body's
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("PUT: %v", err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}
	presign := func(size int64, sum []byte) (string, map[string]string) {
		t.Helper()
		u, headers, err := b.PresignPut(ctx, key, size, "text/html", sum, 5*time.Minute)
		if err != nil {
			t.Fatalf("PresignPut = %v", err)
		}
		if strings.Contains(u, cfg.SecretAccessKey) {
			t.Fatalf("presigned URL shows the secret")
		}
		return u, headers
	}

	u, headers := presign(int64(len(data)), sha(data))
	for _, h := range []string{"Content-Length", "Content-Type", "X-Amz-Checksum-Sha256"} {
		if headers[h] == "" {
			t.Errorf("headers %v lack %s", headers, h)
		}
	}
	if q, _ := url.Parse(u); !strings.Contains(q.Query().Get("X-Amz-SignedHeaders"), "content-length") ||
		!strings.Contains(q.Query().Get("X-Amz-SignedHeaders"), "x-amz-checksum-sha256") {
		t.Errorf("signed headers %q do not cover content-length and x-amz-checksum-sha256", q.Query().Get("X-Amz-SignedHeaders"))
	}

	// Refused: a body one byte longer, whose Content-Length breaks the
	// signature; one of the right length but other content, which the
	// server hashes; and one without the signed checksum header.
	longer := append(bytes.Clone(data), '!')
	if code, msg := put(u, headers, longer); code != http.StatusForbidden || !strings.Contains(msg, "SignatureDoesNotMatch") {
		t.Errorf("PUT of %d bytes to a URL signed for %d = %d %.200s, want 403 SignatureDoesNotMatch", len(longer), len(data), code, msg)
	}
	other := bytes.ToUpper(data)
	if code, msg := put(u, headers, other); code != http.StatusBadRequest || !strings.Contains(msg, "BadDigest") {
		t.Errorf("PUT of other content to a URL signed with a SHA-256 = %d %.200s, want 400 BadDigest", code, msg)
	}
	unsummed := maps.Clone(headers)
	delete(unsummed, "X-Amz-Checksum-Sha256")
	if code, msg := put(u, unsummed, data); code != http.StatusForbidden {
		t.Errorf("PUT without the signed checksum header = %d %.200s, want 403", code, msg)
	}
	if _, err := b.Stat(ctx, key); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("Stat after refused PUTs = %v, want %v", err, blob.ErrNotFound)
	}

	if code, msg := put(u, headers, data); code != http.StatusOK {
		t.Fatalf("PUT through the presigned URL = %d %s, want 200", code, msg)
	}
	st, err := b.Stat(ctx, key)
	if err != nil {
		t.Fatalf("Stat = %v", err)
	}
	checkAttrs(t, "Stat", st, blob.Attrs{Key: key, Size: int64(len(data)), ContentType: "text/html", ETag: md5hex(data)})

	if _, _, err := b.PresignPut(ctx, "a//b", 1, "", nil, time.Minute); !errors.Is(err, blob.ErrInvalidKey) {
		t.Errorf("PresignPut of an invalid key = %v, want %v", err, blob.ErrInvalidKey)
	}
}

// recorder is a reverse proxy in front of the test server that notes the
// requests going through it. SigV4 signs the Host header, which the proxy
// passes on unchanged.
type recorder struct {
	url  string
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method string
	query  url.Values
	size   int64
	header http.Header
}

func record(t *testing.T) *recorder {
	t.Helper()
	ep, _, _ := s3test.Start(t)
	target, err := url.Parse(ep)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, recorded{method: r.Method, query: r.URL.Query(), size: r.ContentLength, header: r.Header.Clone()})
		rec.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	rec.url = srv.URL
	return rec
}

// matching returns the requests with method whose query has param, and
// whose header has header unless that is "".
func (r *recorder) matching(method, param, header string) []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recorded
	for _, q := range r.reqs {
		if q.method == method && q.query.Has(param) && (header == "" || q.header.Get(header) != "") {
			out = append(out, q)
		}
	}
	return out
}

func (r *recorder) count(method, param string) int { return len(r.matching(method, param, "")) }

// sizes returns the Content-Lengths of the uploaded, not copied, parts.
func (r *recorder) sizes(method, param string) []int64 {
	var out []int64
	for _, q := range r.matching(method, param, "") {
		if q.header.Get("X-Amz-Copy-Source") == "" {
			out = append(out, q.size)
		}
	}
	return out
}

func (r *recorder) headers(method, param, header string) []string {
	var out []string
	for _, q := range r.matching(method, param, header) {
		out = append(out, q.header.Get(header))
	}
	return out
}

// withHeader returns the values of header in the requests that had it.
func (r *recorder) withHeader(header string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		if v := q.header.Get(header); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// headMeta returns the user metadata stored with key, read past the driver.
func headMeta(t *testing.T, cfg s3blob.Config, key string) map[string]string {
	t.Helper()
	c := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(cfg.Endpoint),
		UsePathStyle: true,
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: cfg.AccessKeyID, SecretAccessKey: cfg.SecretAccessKey}, nil
		}),
	})
	out, err := c.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &cfg.Bucket, Key: &key})
	if err != nil {
		t.Fatalf("HeadObject(%q) = %v", key, err)
	}
	return out.Metadata
}

func checkAttrs(t *testing.T, what string, got, want blob.Attrs) {
	t.Helper()
	if got.Key != want.Key || got.Size != want.Size || got.ContentType != want.ContentType || got.ETag != want.ETag {
		t.Errorf("%s attrs = {%q %d %q %q}, want {%q %d %q %q}", what,
			got.Key, got.Size, got.ContentType, got.ETag, want.Key, want.Size, want.ContentType, want.ETag)
	}
}

func md5hex(data []byte) string {
	sum := md5.Sum(data)
	return hex.EncodeToString(sum[:])
}

func sha(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}

// pattern returns n bytes that differ from those of another seed.
func pattern(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i%251) ^ seed
	}
	return p
}
