package upload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/ingest"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/wire"
)

// ActionIngest marks the event of an asset Sluice fetched from a URL.
const ActionIngest = "Ingest"

// Fetcher fetches a source URL; ingest.Fetcher, with its SSRF checks, is
// the one Sluice uses.
type Fetcher interface {
	Check(ctx context.Context, rawURL string) error
	Fetch(ctx context.Context, rawURL string) (*ingest.Response, error)
}

// ErrSourceRefused means URL ingest will not fetch from the source.
var ErrSourceRefused = errors.New("upload: source refused")

// sourceError words a fetch failure for the client. Refusals get fixed
// messages: the fetcher's own name the address a host resolved to,
// which must not reveal internal addressing to whoever chose the URL.
func sourceError(err error) error {
	switch {
	case errors.Is(err, ingest.ErrForbiddenAddress):
		return fmt.Errorf("%w: the source's host resolves to an address Sluice does not fetch from (loopback, private, link-local, multicast or cloud metadata)", ErrSourceRefused)
	case errors.Is(err, ingest.ErrScheme):
		return fmt.Errorf("%w: the source's scheme is not allowed", ErrSourceRefused)
	case errors.Is(err, ingest.ErrHostNotAllowed):
		return fmt.Errorf("%w: the source's host is not in the allowed list", ErrSourceRefused)
	case errors.Is(err, ingest.ErrBadURL):
		return fmt.Errorf("%w: source_url is not a valid URL", ErrInvalid)
	case errors.Is(err, ingest.ErrTooManyRedirects):
		return fmt.Errorf("%w: the source redirected too many times", ErrSourceRefused)
	case errors.Is(err, ingest.ErrTooLarge):
		return fmt.Errorf("%w: the source is larger than the upload limit", ErrTooLarge)
	case errors.Is(err, ingest.ErrStatus):
		return fmt.Errorf("%w: the source answered with an error status", ErrSourceRefused)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("%w: the source's host could not be resolved", ErrSourceRefused)
	}
	return err
}

// maxSourceURL bounds the length of a source URL.
const maxSourceURL = 4096

// Ingest creates an asset whose bytes Sluice fetches from req.SourceURL,
// and starts the fetch in the background: the asset is pending until the
// bytes are stored, then processed as any upload; a fetch that fails
// fails the asset with the reason. The request's key is charged one
// asset now and the bytes once they are known.
func (s *Service) Ingest(ctx context.Context, req wire.IngestRequest) (store.Asset, error) {
	if s.fetcher == nil {
		return store.Asset{}, fmt.Errorf("%w: URL ingest is not enabled on this server", ErrInvalid)
	}
	u, err := url.Parse(req.SourceURL)
	if err != nil || len(req.SourceURL) > maxSourceURL || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return store.Asset{}, fmt.Errorf("%w: source_url must be an absolute http or https URL of at most %d bytes", ErrInvalid, maxSourceURL)
	}
	if u.User != nil {
		return store.Asset{}, fmt.Errorf("%w: source_url must not carry credentials", ErrInvalid)
	}
	var digest []byte
	if req.SHA256 != "" {
		if digest, err = hex.DecodeString(req.SHA256); err != nil || len(digest) != 32 {
			return store.Asset{}, fmt.Errorf("%w: sha256 must be 64 hex digits", ErrInvalid)
		}
	}
	if err := ValidateMetadata(req.Metadata); err != nil {
		return store.Asset{}, err
	}
	if err := s.fetcher.Check(ctx, req.SourceURL); err != nil {
		return store.Asset{}, sourceError(err)
	}
	name := req.Name
	if name == "" {
		name = path.Base(u.Path)
	}
	a, err := s.newAsset(ctx, name, "", 0, req.Metadata, req.Visibility)
	if err != nil {
		return store.Asset{}, err
	}
	// The fetch outlives the request, not the server.
	p, _ := auth.PrincipalFrom(ctx)
	fctx := auth.WithPrincipal(s.fetchCtx, p)
	s.fetches.Add(1)
	go func() {
		defer s.fetches.Done()
		s.fetch(fctx, a, u.String(), digest)
	}()
	return a, nil
}

// fetch stores the source of an ingested asset and completes it, or
// fails the asset with the reason.
func (s *Service) fetch(ctx context.Context, a store.Asset, src string, digest []byte) {
	s.fetchSem <- struct{}{}
	defer func() { <-s.fetchSem }()
	attrs, err := s.fetchInto(ctx, a, src, digest)
	if err != nil {
		err = sourceError(err)
	} else {
		err = s.complete(ctx, a, attrs, ActionIngest, "url")
	}
	if err != nil {
		s.metrics.Uploads.WithLabelValues("url", "rejected").Inc()
		s.log.Info("upload: ingest failed", "asset", a.ID, "err", err)
		if ctx.Err() != nil {
			err = errors.New("the server shut down during the fetch; ingest the URL again")
		}
		if serr := s.store.SetAssetStatus(context.WithoutCancel(ctx), a.ID, store.StatusFailed, "ingest: "+err.Error()); serr != nil {
			s.log.Error("upload: mark failed ingest", "asset", a.ID, "err", serr)
		}
	}
}

func (s *Service) fetchInto(ctx context.Context, a store.Asset, src string, digest []byte) (blob.Attrs, error) {
	// The most the key may still store today bounds the fetch, as does
	// the server's upload limit.
	limit := s.cfg.MaxSize
	p, _ := auth.PrincipalFrom(ctx)
	if p.KeyID != "" && p.Limits.BytesPerDay > 0 {
		u, err := s.store.GetUsage(ctx, p.KeyID, store.Day(s.now()))
		if err != nil {
			return blob.Attrs{}, err
		}
		limit = min(limit, p.Limits.BytesPerDay-u.Bytes)
	}
	resp, err := s.fetcher.Fetch(ctx, src)
	if err != nil {
		return blob.Attrs{}, err
	}
	defer resp.Body.Close()
	if resp.Size > limit {
		return blob.Attrs{}, fmt.Errorf("%w: the source is %d bytes, over the %d this key may still store", ErrTooLarge, resp.Size, limit)
	}
	body := &limitedReader{r: resp.Body, n: limit}
	head, all, err := peekHead(body)
	if err != nil {
		return blob.Attrs{}, err
	}
	if _, err := s.checkHead(head); err != nil {
		return blob.Attrs{}, err
	}
	attrs, err := s.bucket.Put(ctx, a.Key, all, blob.PutOptions{Size: -1, SHA256: digest})
	if body.over {
		return blob.Attrs{}, fmt.Errorf("%w: the source is larger than the %d bytes this key may still store", ErrTooLarge, limit)
	}
	if err != nil {
		return blob.Attrs{}, err
	}
	if p.KeyID != "" {
		_, err := s.store.AddUsage(ctx, p.KeyID, store.Usage{Day: store.Day(s.now()), Bytes: attrs.Size}, p.Limits)
		if err != nil {
			_ = s.bucket.Delete(ctx, a.Key)
			return blob.Attrs{}, err
		}
	}
	return attrs, nil
}

// limitedReader fails once more than n bytes are read.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

var errOverLimit = errors.New("upload: over the size limit")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n < 0 {
		l.over = true
		return 0, errOverLimit
	}
	if int64(len(p)) > l.n+1 {
		p = p[:l.n+1]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if l.n < 0 {
		l.over = true
		return n, errOverLimit
	}
	return n, err
}
