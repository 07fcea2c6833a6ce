// Package upload is Sluice's ingest: it creates assets, takes their bytes
// (a signed single PUT, or a resumable tus upload through the embedded
// tusd handler), stores them in the bucket, and announces each completed
// upload with an object-created event. Both paths end in the same
// complete step, so the rest of the system cannot tell them apart.
//
// Ingest must not lose uploads between systems: Reconcile finds uploads
// that were stored but whose event or job never finished, and queues them
// again; it also expires uploads that were abandoned.
package upload

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/telemetry"
	"github.com/sluice-media/sluice/internal/wire"
)

// Errors the gateway maps to HTTP statuses.
var (
	ErrTooLarge        = errors.New("upload: too large")
	ErrInvalid         = errors.New("upload: invalid request")
	ErrAlreadyUploaded = errors.New("upload: content already uploaded")
	// ErrNotReady means the asset is not in a state the request needs.
	ErrNotReady = errors.New("upload: asset not ready")
	// ErrUnsupportedType means the content's first bytes are not a type
	// uploads accept; nothing was stored.
	ErrUnsupportedType = errors.New("upload: unsupported content type")
)

// Config configures ingest.
type Config struct {
	// MaxSize is the largest upload accepted, in bytes. Default 10 GiB.
	MaxSize int64
	// URLExpiry is how long a signed upload URL stays valid. Default 1h.
	URLExpiry time.Duration
	// TusDir holds resumable uploads in progress. Required for tus.
	TusDir string
	// TusExpiry is how long a resumable upload may go without receiving
	// data before it is discarded. Default 24h.
	TusExpiry time.Duration
	// StaleAfter is how long an uploaded asset may sit unfinished with no
	// worker holding it before Reconcile queues it again. Default 2m.
	StaleAfter time.Duration
	// AllowedTypes are the content types accepted, judged by sniffing
	// the first bytes (see TypeAllowed). Default DefaultAllowedTypes.
	AllowedTypes []string
	// ThroughSluice makes signed PUTs go through Sluice even when the
	// bucket can presign URLs for uploads straight into it.
	ThroughSluice bool
}

func (c *Config) setDefaults() {
	if c.MaxSize <= 0 {
		c.MaxSize = 10 << 30
	}
	if c.URLExpiry <= 0 {
		c.URLExpiry = time.Hour
	}
	if c.TusExpiry <= 0 {
		c.TusExpiry = 24 * time.Hour
	}
	if c.StaleAfter <= 0 {
		c.StaleAfter = 2 * time.Minute
	}
	if len(c.AllowedTypes) == 0 {
		c.AllowedTypes = DefaultAllowedTypes
	}
}

// checkHead sniffs the first bytes of an upload and refuses types not
// allowed, before anything is stored. It returns the sniffed type.
func (s *Service) checkHead(head []byte) (string, error) {
	if len(head) == 0 {
		return "", fmt.Errorf("%w: the file is empty", ErrUnsupportedType)
	}
	ct := Sniff(head)
	if !TypeAllowed(s.cfg.AllowedTypes, ct) {
		return "", fmt.Errorf("%w: the content is %s, judged from its first bytes; accepted: %s",
			ErrUnsupportedType, ct, strings.Join(s.cfg.AllowedTypes, ", "))
	}
	return ct, nil
}

// peekHead reads what checkHead needs from r and returns a reader that
// yields all of r again.
func peekHead(r io.Reader) ([]byte, io.Reader, error) {
	br := bufio.NewReaderSize(r, SniffLen)
	head, err := br.Peek(SniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, nil, err
	}
	return head, br, nil
}

// Publisher queues events.
type Publisher interface {
	// Publish queues an event; the same object version is stored once
	// however often it is published.
	Publish(ctx context.Context, ev event.ObjectCreated) error
	// Queued reports whether an event for the asset is waiting or being
	// worked on.
	Queued(ctx context.Context, assetID string) (bool, error)
	// PublishUpdate announces a change for live views (best effort).
	PublishUpdate(ctx context.Context, u queue.Update)
}

// Service takes uploads.
type Service struct {
	cfg     Config
	store   store.Store
	bucket  blob.Bucket
	pub     Publisher
	signer  *auth.Signer
	metrics *telemetry.Metrics
	log     *slog.Logger
	now     func() time.Time
	// principals maps a tus request's reference to its principal while
	// the request runs (see withPrincipal).
	principals sync.Map
	tusS3      bool // resumable uploads go straight to an S3 bucket
	tusStore   s3store.S3Store
	tusSwept   atomic.Int64 // unix nanoseconds of the last look for abandoned uploads in the bucket
	locks      Locks        // shared locks for resumable uploads; nil: files in the tus dir

	// OnDelete, when set, is called with an asset DeleteAsset deleted
	// (webhooks announce it). Set it before serving.
	OnDelete func(ctx context.Context, a store.Asset) error

	// URL ingest (fetch.go): nil fetcher when not enabled.
	fetcher    Fetcher
	fetchSem   chan struct{}
	fetches    sync.WaitGroup
	fetchCtx   context.Context // cancelled by StopIngest
	stopFetchs context.CancelFunc
}

// EnableIngest lets Ingest fetch sources with f, at most concurrency at
// a time.
func (s *Service) EnableIngest(f Fetcher, concurrency int) {
	s.fetcher = f
	s.fetchSem = make(chan struct{}, max(1, concurrency))
	s.fetchCtx, s.stopFetchs = context.WithCancel(context.Background())
}

// StopIngest cancels fetches in flight, whose assets fail with the
// reason, and waits for them.
func (s *Service) StopIngest() {
	if s.stopFetchs != nil {
		s.stopFetchs()
	}
	s.fetches.Wait()
}

// New returns an ingest service.
func New(cfg Config, st store.Store, b blob.Bucket, pub Publisher, signer *auth.Signer, m *telemetry.Metrics, log *slog.Logger) *Service {
	cfg.setDefaults()
	return &Service{cfg: cfg, store: st, bucket: b, pub: pub, signer: signer, metrics: m, log: log, now: time.Now}
}

// Config returns the effective configuration.
func (s *Service) Config() Config { return s.cfg }

// SourceKey is where an asset's uploaded bytes are stored.
func SourceKey(assetID string) string { return "uploads/" + assetID }

// ContentPath is the path of an asset's signed PUT endpoint.
func ContentPath(assetID string) string { return "/v1/uploads/" + assetID + "/content" }

// Constraint names carried in a signed upload URL.
const (
	cSize   = "size"
	cSHA256 = "sha256"
	cType   = "type"
)

// Create registers an asset awaiting its bytes and returns a signed URL
// to PUT them to. baseURL is the scheme and host clients reach Sluice at.
func (s *Service) Create(ctx context.Context, req wire.UploadRequest, baseURL string) (wire.Upload, error) {
	if req.Size < 0 {
		return wire.Upload{}, fmt.Errorf("%w: size must be given and not negative", ErrInvalid)
	}
	if req.Size > s.cfg.MaxSize {
		return wire.Upload{}, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrTooLarge, req.Size, s.cfg.MaxSize)
	}
	if req.SHA256 != "" {
		if b, err := hex.DecodeString(req.SHA256); err != nil || len(b) != 32 {
			return wire.Upload{}, fmt.Errorf("%w: sha256 must be 64 hex digits", ErrInvalid)
		}
	}
	if len(req.ContentType) > 255 {
		return wire.Upload{}, fmt.Errorf("%w: content type too long", ErrInvalid)
	}
	if err := ValidateMetadata(req.Metadata); err != nil {
		return wire.Upload{}, err
	}
	a, err := s.newAsset(ctx, req.Name, req.ContentType, req.Size, req.Metadata, req.Visibility)
	if err != nil {
		return wire.Upload{}, err
	}
	if p, ok := s.bucket.(Presigner); ok && !s.cfg.ThroughSluice {
		return s.presigned(ctx, p, a, req)
	}
	c := map[string]string{cSize: strconv.FormatInt(req.Size, 10)}
	headers := map[string]string{}
	if req.SHA256 != "" {
		c[cSHA256] = req.SHA256
	}
	if req.ContentType != "" {
		c[cType] = req.ContentType
		headers["Content-Type"] = req.ContentType
	}
	expires := s.now().Add(s.cfg.URLExpiry)
	q := s.signer.Sign(http.MethodPut, ContentPath(a.ID), expires, c)
	return wire.Upload{
		AssetID:   a.ID,
		Method:    http.MethodPut,
		URL:       baseURL + ContentPath(a.ID) + "?" + q.Encode(),
		Headers:   headers,
		ExpiresAt: expires.UTC().Truncate(time.Second),
	}, nil
}

// Presigner is a bucket that can sign a URL for one PUT straight into
// it (an S3-compatible store), so that upload bytes never pass through
// Sluice.
type Presigner interface {
	PresignPut(ctx context.Context, key string, size int64, contentType string, sha256 []byte, expires time.Duration) (url string, headers map[string]string, err error)
}

// presigned answers an upload request with a URL into the bucket. The
// store enforces the signed length (and checksum); the bucket's
// notification (or, failing that, the reconciler) completes the upload.
// Sniffing happens then, on the stored object: a refused type deletes it.
func (s *Service) presigned(ctx context.Context, p Presigner, a store.Asset, req wire.UploadRequest) (wire.Upload, error) {
	var sum []byte
	if req.SHA256 != "" {
		sum, _ = hex.DecodeString(req.SHA256)
	}
	u, headers, err := p.PresignPut(ctx, a.Key, req.Size, req.ContentType, sum, s.cfg.URLExpiry)
	if err != nil {
		return wire.Upload{}, err
	}
	delete(headers, "Content-Length") // clients set it from the body
	return wire.Upload{
		AssetID: a.ID, Method: http.MethodPut, URL: u, Headers: headers,
		ExpiresAt: s.now().Add(s.cfg.URLExpiry).UTC().Truncate(time.Second),
	}, nil
}

// Metadata limits: pipelines match on metadata, and it is stored with
// every asset, so it stays small.
const (
	maxMetadataPairs = 32
	maxMetadataKey   = 64
	maxMetadataValue = 1024
)

// ValidateMetadata checks client-given asset metadata.
func ValidateMetadata(md map[string]string) error {
	if len(md) > maxMetadataPairs {
		return fmt.Errorf("%w: at most %d metadata entries", ErrInvalid, maxMetadataPairs)
	}
	for k, v := range md {
		if k == "" || len(k) > maxMetadataKey || !utf8.ValidString(k) || strings.ContainsFunc(k, unicode.IsControl) {
			return fmt.Errorf("%w: metadata keys must be 1 to %d printable characters", ErrInvalid, maxMetadataKey)
		}
		if len(v) > maxMetadataValue || !utf8.ValidString(v) {
			return fmt.Errorf("%w: metadata %q: values must be valid UTF-8 of at most %d bytes", ErrInvalid, k, maxMetadataValue)
		}
	}
	return nil
}

// newAsset creates an asset owned by the request's API key, after
// charging the key's daily quotas for one asset of size bytes.
func (s *Service) newAsset(ctx context.Context, name, contentType string, size int64, metadata map[string]string, visibility string) (store.Asset, error) {
	if visibility != "" && visibility != "public" && visibility != "private" {
		return store.Asset{}, fmt.Errorf("%w: visibility must be public or private", ErrInvalid)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.Asset{}, err
	}
	now := s.now()
	p, _ := auth.PrincipalFrom(ctx)
	if p.KeyID != "" {
		charge := store.Usage{Day: store.Day(now), Bytes: size, Assets: 1}
		if _, err := s.store.AddUsage(ctx, p.KeyID, charge, p.Limits); err != nil {
			return store.Asset{}, fmt.Errorf("upload: %w", err)
		}
		defer func() {
			if err != nil { // give the quota back
				refund := store.Usage{Day: charge.Day, Bytes: -size, Assets: -1}
				if _, rerr := s.store.AddUsage(context.WithoutCancel(ctx), p.KeyID, refund, store.Limits{}); rerr != nil {
					s.log.ErrorContext(ctx, "upload: refund quota", "key", p.KeyID, "err", rerr)
				}
			}
		}()
	}
	a := store.Asset{
		ID:          id.String(),
		Name:        CleanName(name),
		ContentType: contentType,
		Bucket:      s.bucket.Name(),
		Key:         SourceKey(id.String()),
		Metadata:    metadata,
		Size:        size,
		Status:      store.StatusPending,
		CreatedAt:   now,
		UpdatedAt:   now,
		Owner:       p.KeyID,
		Visibility:  visibility,
	}
	err = s.store.CreateAsset(ctx, a)
	return a, err
}

// Put is a signed PUT of an asset's content.
type Put struct {
	AssetID string
	Body    io.Reader
	// ContentLength is the request's, or -1 when not sent (chunked).
	ContentLength int64
	ContentType   string
	// Constraints are those the verified signature carries.
	Constraints map[string]string
	// SHA256 is an optional raw digest sent by the client with the body.
	SHA256 []byte
}

// Receive stores the body of a signed PUT and completes the upload. The
// body is streamed into the bucket; nothing is visible under the key
// unless all of it arrived and matched the declared size and checksum.
func (s *Service) Receive(ctx context.Context, p Put) (wire.UploadResult, error) {
	size, err := strconv.ParseInt(p.Constraints[cSize], 10, 64)
	if err != nil || size < 0 {
		return wire.UploadResult{}, fmt.Errorf("%w: signed URL carries no size", ErrInvalid)
	}
	if p.ContentLength > size {
		return wire.UploadResult{}, fmt.Errorf("%w: body of %d bytes exceeds the declared %d", ErrTooLarge, p.ContentLength, size)
	}
	if p.ContentLength >= 0 && p.ContentLength < size {
		return wire.UploadResult{}, fmt.Errorf("%w: body of %d bytes is shorter than the declared %d", ErrInvalid, p.ContentLength, size)
	}
	if want := p.Constraints[cType]; want != "" && p.ContentType != want {
		return wire.UploadResult{}, fmt.Errorf("%w: Content-Type must be %q as signed", ErrInvalid, want)
	}
	digest := p.SHA256
	if hx := p.Constraints[cSHA256]; hx != "" {
		signed, _ := hex.DecodeString(hx)
		if digest != nil && !equal(digest, signed) {
			return wire.UploadResult{}, fmt.Errorf("%w: checksum header differs from the signed checksum", ErrInvalid)
		}
		digest = signed
	}
	a, err := s.store.GetAsset(ctx, p.AssetID)
	if err != nil {
		return wire.UploadResult{}, err
	}
	if !a.UploadedAt.IsZero() {
		return wire.UploadResult{}, ErrAlreadyUploaded
	}
	head, body, err := peekHead(p.Body)
	if err != nil {
		return wire.UploadResult{}, err
	}
	if _, err := s.checkHead(head); err != nil {
		s.metrics.Uploads.WithLabelValues("put", "rejected").Inc()
		return wire.UploadResult{}, err
	}
	attrs, err := s.bucket.Put(ctx, a.Key, body, blob.PutOptions{ContentType: a.ContentType, Size: size, SHA256: digest})
	if err != nil {
		s.metrics.Uploads.WithLabelValues("put", "rejected").Inc()
		return wire.UploadResult{}, err
	}
	if err := s.complete(ctx, a, attrs, event.ActionPutObject, "put"); err != nil {
		return wire.UploadResult{}, err
	}
	return wire.UploadResult{AssetID: a.ID, Size: attrs.Size, ETag: attrs.ETag}, nil
}

func equal(a, b []byte) bool { return string(a) == string(b) }

// complete records a stored upload and announces it. A failure to publish
// is not the client's problem: the bytes are safe and Reconcile queues the
// asset later, so it is logged, not returned.
func (s *Service) complete(ctx context.Context, a store.Asset, attrs blob.Attrs, action, method string) error {
	ctype, err := s.sniff(ctx, a.Key)
	if errors.Is(err, ErrUnsupportedType) {
		// Sluice's upload paths check the head before storing; this is an
		// object stored otherwise (found by Reconcile, or announced by the
		// bucket): refuse it the same way. Only Sluice's own upload keys
		// are deleted; another system's objects are left alone.
		if a.Key == SourceKey(a.ID) {
			if derr := s.bucket.Delete(ctx, a.Key); derr != nil {
				s.log.ErrorContext(ctx, "upload: delete refused object", "asset", a.ID, "err", derr)
			}
		}
		if serr := s.store.SetAssetStatus(ctx, a.ID, store.StatusFailed, err.Error()); serr != nil {
			s.log.ErrorContext(ctx, "upload: mark refused asset failed", "asset", a.ID, "err", serr)
		}
		return err
	}
	if err != nil {
		return err
	}
	err = s.store.MarkUploaded(ctx, a.ID, store.Object{
		Bucket: s.bucket.Name(), Key: a.Key, Size: attrs.Size, ETag: attrs.ETag, ContentType: ctype,
	})
	if err != nil {
		return err
	}
	s.metrics.Uploads.WithLabelValues(method, "ok").Inc()
	s.metrics.UploadBytes.WithLabelValues(method).Add(float64(attrs.Size))
	s.pub.PublishUpdate(ctx, queue.Update{AssetID: a.ID, Status: string(store.StatusPending), At: s.now().UTC()})
	ev := event.ObjectCreated{
		Action: action, Bucket: s.bucket.Name(), Key: a.Key, Size: attrs.Size, ETag: attrs.ETag,
		EventTime: s.now().UTC(), AssetID: a.ID,
	}
	if err := s.pub.Publish(ctx, ev); err != nil {
		s.log.ErrorContext(ctx, "upload: publish event; reconcile will retry", "asset", a.ID, "err", err)
		return nil
	}
	s.metrics.EventsPublished.WithLabelValues("upload").Inc()
	return nil
}

// Reprocess queues a new run of the asset's pipeline over its stored
// object: of the given step ids, or of all steps when none are given.
// base is the job whose results the run keeps for the steps it skips.
// The asset shows as pending until a worker takes the run.
func (s *Service) Reprocess(ctx context.Context, a store.Asset, steps []string, base string) error {
	if a.UploadedAt.IsZero() {
		return fmt.Errorf("%w: asset %s has no uploaded object yet", ErrNotReady, a.ID)
	}
	if a.Status == store.StatusPending || a.Status == store.StatusProcessing {
		return fmt.Errorf("%w: asset %s is %s; reprocess it once it is done", ErrNotReady, a.ID, a.Status)
	}
	run, err := uuid.NewV7()
	if err != nil {
		return err
	}
	ev := event.ObjectCreated{
		Action: event.ActionReprocess, Bucket: a.Bucket, Key: a.Key, Size: a.Size, ETag: a.ETag,
		EventTime: s.now().UTC(), AssetID: a.ID, Run: run.String(), Steps: steps, Base: base,
	}
	if err := s.store.SetAssetStatus(ctx, a.ID, store.StatusPending, ""); err != nil {
		return err
	}
	if err := s.pub.Publish(ctx, ev); err != nil {
		if rerr := s.store.SetAssetStatus(context.WithoutCancel(ctx), a.ID, a.Status, a.Error); rerr != nil {
			s.log.ErrorContext(ctx, "upload: restore status after a failed reprocess", "asset", a.ID, "err", rerr)
		}
		return err
	}
	s.metrics.EventsPublished.WithLabelValues("reprocess").Inc()
	return nil
}

// sniff returns the content type of the stored object judged from its
// first bytes, never from the name or the client's word.
func (s *Service) sniff(ctx context.Context, key string) (string, error) {
	obj, err := s.bucket.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer obj.Close()
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(obj, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return s.checkHead(head[:n])
}
