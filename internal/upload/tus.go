package upload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
	xslog "golang.org/x/exp/slog"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/event"
	"github.com/sluice-media/sluice/internal/store"
)

// TusHandler returns the tus 1.0 endpoint (creation, creation-with-upload,
// termination, and expiration of abandoned uploads) mounted at basePath.
// The upload id is the asset id. When the last byte arrives the file is
// moved into the bucket and the upload completed before the client gets
// its final response, so a client that saw success can look the asset up.
func (s *Service) TusHandler(basePath string) (http.Handler, error) {
	if s.cfg.TusDir == "" {
		return nil, errors.New("upload: tus dir is required")
	}
	if err := os.MkdirAll(s.cfg.TusDir, 0o750); err != nil {
		return nil, err
	}
	composer := tusd.NewStoreComposer()
	if b, ok := s.bucket.(s3Bucket); ok {
		// Parts go straight to the bucket as a multipart upload of the
		// asset's key, all of one size (R2 refuses others); tusd's own
		// .info and .part objects live under tus/. With shared locks
		// (UseLocks) any gateway can serve any request of an upload.
		st := s3store.New(b.Name(), detachedS3{b.Client()})
		st.ObjectPrefix = "uploads/"
		st.MetadataObjectPrefix = tusPrefix
		st.MinPartSize, st.PreferredPartSize = b.PartSize(), b.PartSize()
		st.UseIn(composer)
		s.tusS3, s.tusStore = true, st
	} else {
		filestore.New(s.cfg.TusDir).UseIn(composer)
	}
	if s.locks != nil {
		composer.UseLocker(sharedLocker{s.locks})
	} else {
		filelocker.New(s.cfg.TusDir).UseIn(composer)
	}

	h, err := tusd.NewHandler(tusd.Config{
		StoreComposer:              composer,
		BasePath:                   basePath,
		MaxSize:                    s.cfg.MaxSize,
		DisableDownload:            true,
		RespectForwardedHeaders:    false,
		PreUploadCreateCallback:    s.tusCreate,
		PreFinishResponseCallback:  s.tusFinish,
		PreUploadTerminateCallback: s.tusTerminate,
		// tusd logs every request at info level; keep its warnings only.
		Logger: xslog.New(xslog.NewJSONHandler(os.Stderr, &xslog.HandlerOptions{Level: xslog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("upload: tus handler: %w", err)
	}
	return s.withPrincipal(s.withExpiration(h)), nil
}

// Locks are exclusive locks every gateway shares (queue.Locks), so that
// the requests of one resumable upload may reach any of them.
type Locks interface {
	// Acquire takes the named lock, waiting until ctx ends; onRequest
	// is called when another request wants it.
	Acquire(ctx context.Context, name string, onRequest func()) (release func() error, err error)
}

// UseLocks makes resumable uploads lock through l rather than through
// files in the tus dir, which only this process sees. Call it before
// TusHandler. It only helps with an S3 bucket, where every gateway sees
// the uploads in progress.
func (s *Service) UseLocks(l Locks) { s.locks = l }

// sharedLocker is tusd's Locker over shared Locks.
type sharedLocker struct{ locks Locks }

func (l sharedLocker) NewLock(id string) (tusd.Lock, error) {
	return &sharedLock{locks: l.locks, id: id}, nil
}

type sharedLock struct {
	locks   Locks
	id      string
	release func() error
}

func (l *sharedLock) Lock(ctx context.Context, requestUnlock func()) error {
	release, err := l.locks.Acquire(ctx, "tus/"+l.id, requestUnlock)
	if err != nil {
		if ctx.Err() != nil {
			return tusd.ErrLockTimeout
		}
		return err
	}
	l.release = release
	return nil
}

func (l *sharedLock) Unlock() error {
	if l.release == nil {
		return nil
	}
	return l.release()
}

// tusPrefix is where tusd's S3 store keeps its own objects.
const tusPrefix = "tus/"

// s3Bucket is an S3 bucket that tusd's S3 store can write to.
type s3Bucket interface {
	Name() string
	Client() *s3.Client
	PartSize() int64
}

// tusAsset is the asset id of a tus upload id: the S3 store appends its
// multipart upload id after a "+".
func tusAsset(id string) string {
	a, _, _ := strings.Cut(id, "+")
	return a
}

// principalHeader carries, from the request to tusd's hooks, a reference
// to the request's principal: hooks get the request's headers but not its
// context. The header is always overwritten, so a client cannot set it.
const principalHeader = "Sluice-Internal-Principal"

// withPrincipal makes the request's principal (the API key the gateway
// authenticated) available to the hooks through principalHeader.
func (s *Service) withPrincipal(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(principalHeader)
		if p, ok := auth.PrincipalFrom(r.Context()); ok {
			ref := uuid.NewString()
			s.principals.Store(ref, p)
			defer s.principals.Delete(ref)
			r.Header.Set(principalHeader, ref)
		}
		h.ServeHTTP(w, r)
	})
}

// hookContext returns the hook's context carrying the request's principal.
func (s *Service) hookContext(hook tusd.HookEvent) context.Context {
	ctx := hook.Context
	if v, ok := s.principals.Load(hook.HTTPRequest.Header.Get(principalHeader)); ok {
		ctx = auth.WithPrincipal(ctx, v.(auth.Principal))
	}
	return ctx
}

// tusCreate validates a new resumable upload and creates its asset.
func (s *Service) tusCreate(hook tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	info := hook.Upload
	if info.SizeIsDeferred {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_LENGTH_REQUIRED", "Upload-Length is required", http.StatusBadRequest)
	}
	if info.IsPartial || info.IsFinal {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_CONCAT_UNSUPPORTED", "concatenation is not supported", http.StatusBadRequest)
	}
	md := tusMetadata(info.MetaData)
	if err := ValidateMetadata(md); err != nil {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_INVALID_METADATA", err.Error(), http.StatusBadRequest)
	}
	ctx := s.hookContext(hook)
	a, err := s.newAsset(ctx, info.MetaData["filename"], info.MetaData["filetype"], info.Size, md, info.MetaData["visibility"])
	if errors.Is(err, ErrInvalid) {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_INVALID_METADATA", err.Error(), http.StatusBadRequest)
	}
	if errors.Is(err, store.ErrQuotaExceeded) {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_QUOTA_EXCEEDED", err.Error(), http.StatusTooManyRequests)
	}
	if err != nil {
		s.log.ErrorContext(ctx, "upload: tus create", "err", err)
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_INTERNAL", "could not create the asset", http.StatusInternalServerError)
	}
	return tusd.HTTPResponse{Header: tusd.HTTPHeader{"Sluice-Asset-Id": a.ID}},
		tusd.FileInfoChanges{ID: a.ID}, nil
}

// tusMetadata is the asset metadata in a tus Upload-Metadata header:
// every pair except those that describe the file itself, which clients
// such as Uppy send alongside.
func tusMetadata(md tusd.MetaData) map[string]string {
	out := map[string]string{}
	for k, v := range md {
		switch k {
		case "filename", "filetype", "name", "type", "relativePath", "visibility":
			continue
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// tusFinish moves a finished upload into the bucket and completes it.
func (s *Service) tusFinish(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	ctx := hook.Context
	info := hook.Upload
	fail := func(err error) (tusd.HTTPResponse, error) {
		s.log.ErrorContext(ctx, "upload: tus finish", "asset", info.ID, "err", err)
		s.metrics.Uploads.WithLabelValues("tus", "error").Inc()
		return tusd.HTTPResponse{}, tusd.NewError("ERR_INTERNAL", "could not store the upload", http.StatusInternalServerError)
	}
	a, err := s.store.GetAsset(ctx, tusAsset(info.ID))
	if err != nil {
		return fail(err)
	}
	if s.tusS3 {
		// The object is in place already; complete sniffs it (and
		// deletes a refused one).
		attrs, err := s.bucket.Stat(ctx, a.Key)
		if err != nil {
			return fail(err)
		}
		err = s.complete(ctx, a, attrs, event.ActionCompleteMultipartUpload, "tus")
		if err == nil || errors.Is(err, ErrUnsupportedType) {
			// tusd leaves its .info (and an empty .part) behind; as with
			// the file store, a finished upload is gone.
			s.deleteTusInfo(ctx, a.ID)
		}
		if err != nil {
			if errors.Is(err, ErrUnsupportedType) {
				s.metrics.Uploads.WithLabelValues("tus", "rejected").Inc()
				return tusd.HTTPResponse{}, tusd.NewError("ERR_UNSUPPORTED_TYPE", err.Error(), http.StatusUnsupportedMediaType)
			}
			return fail(err)
		}
		return tusd.HTTPResponse{Header: tusd.HTTPHeader{"Sluice-Asset-Id": a.ID}}, nil
	}
	if err := s.checkFile(info.Storage["Path"]); err != nil {
		if !errors.Is(err, ErrUnsupportedType) {
			return fail(err)
		}
		s.metrics.Uploads.WithLabelValues("tus", "rejected").Inc()
		_ = os.Remove(info.Storage["Path"])
		_ = os.Remove(info.Storage["InfoPath"])
		if serr := s.store.SetAssetStatus(ctx, a.ID, store.StatusFailed, err.Error()); serr != nil {
			s.log.ErrorContext(ctx, "upload: mark refused tus upload failed", "asset", a.ID, "err", serr)
		}
		return tusd.HTTPResponse{}, tusd.NewError("ERR_UNSUPPORTED_TYPE", err.Error(), http.StatusUnsupportedMediaType)
	}
	attrs, err := blob.Import(ctx, s.bucket, a.Key, info.Storage["Path"], blob.PutOptions{ContentType: a.ContentType, Size: info.Size})
	if err != nil {
		return fail(err)
	}
	_ = os.Remove(info.Storage["InfoPath"])
	if err := s.complete(ctx, a, attrs, event.ActionCompleteMultipartUpload, "tus"); err != nil {
		// The bytes are in the bucket: Reconcile completes the upload.
		return fail(err)
	}
	return tusd.HTTPResponse{Header: tusd.HTTPHeader{"Sluice-Asset-Id": a.ID}}, nil
}

// checkFile applies checkHead to the start of a file.
func (s *Service) checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, SniffLen)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	_, err = s.checkHead(head[:n])
	return err
}

// tusTerminate fails the asset of an upload its client cancelled.
func (s *Service) tusTerminate(hook tusd.HookEvent) (tusd.HTTPResponse, error) {
	err := s.store.SetAssetStatus(hook.Context, tusAsset(hook.Upload.ID), store.StatusFailed, "upload cancelled by the client")
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return tusd.HTTPResponse{}, err
	}
	s.metrics.Uploads.WithLabelValues("tus", "terminated").Inc()
	return tusd.HTTPResponse{}, nil
}

// withExpiration adds the tus expiration extension that tusd lacks: it
// advertises it and tells clients until when an unfinished upload is kept.
// Reconcile deletes uploads that received nothing for TusExpiry.
func (s *Service) withExpiration(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&expiringWriter{ResponseWriter: w, r: r, s: s}, r)
	})
}

type expiringWriter struct {
	http.ResponseWriter
	r           *http.Request
	s           *Service
	wroteHeader bool
}

func (w *expiringWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.wroteHeader = true
		hdr := w.Header()
		if ext := hdr.Get("Tus-Extension"); ext != "" && !strings.Contains(ext, "expiration") {
			hdr.Set("Tus-Extension", ext+",expiration")
		}
		// Unfinished uploads only: a finished one has left the tus dir by
		// the time its response is written.
		id := path.Base(w.r.URL.Path)
		if w.r.Method == http.MethodPost {
			id = path.Base(hdr.Get("Location"))
		}
		id = tusAsset(id)
		if (w.r.Method == http.MethodPost || w.r.Method == http.MethodPatch) && code < 300 && w.s.tusInProgress(w.r.Context(), id) {
			hdr.Set("Upload-Expires", w.s.now().Add(w.s.cfg.TusExpiry).UTC().Format(http.TimeFormat))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *expiringWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (tusd sets
// read deadlines through it).
func (w *expiringWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
