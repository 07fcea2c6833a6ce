package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/sluice-media/sluice/internal/auth"
	"github.com/sluice-media/sluice/internal/blob"
	"github.com/sluice-media/sluice/internal/delivery"
	"github.com/sluice-media/sluice/internal/queue"
	"github.com/sluice-media/sluice/internal/ratelimit"
	"github.com/sluice-media/sluice/internal/store"
	"github.com/sluice-media/sluice/internal/upload"
	"github.com/sluice-media/sluice/internal/wire"
)

// httpError is an error the gateway itself raises, with its status and code.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{http.StatusBadRequest, "invalid_request", msg} }

var (
	errRouteNotFound    = &httpError{http.StatusNotFound, "not_found", "no such route"}
	errMethodNotAllowed = &httpError{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this route"}
)

// statusOf maps an error to its HTTP status and a stable code. This is the
// only place that does; anything unknown is a 500 whose details stay in
// the log.
func statusOf(err error) (int, string) {
	var he *httpError
	var mbe *http.MaxBytesError
	var re *rateError
	if status, code, ok := delivery.ErrorStatus(err); ok {
		return status, code
	}
	switch {
	case errors.As(err, &he):
		return he.status, he.code
	case errors.As(err, &re):
		return http.StatusTooManyRequests, "rate_limited"
	case errors.Is(err, store.ErrQuotaExceeded):
		return http.StatusTooManyRequests, "quota_exceeded"
	case errors.Is(err, auth.ErrNoKey), errors.Is(err, auth.ErrBadKey):
		return http.StatusUnauthorized, "unauthenticated"
	case errors.Is(err, auth.ErrScope):
		return http.StatusForbidden, "forbidden"
	case errors.Is(err, upload.ErrUnsupportedType):
		return http.StatusUnsupportedMediaType, "unsupported_type"
	case errors.Is(err, upload.ErrSourceRefused):
		return http.StatusBadRequest, "source_refused"
	case errors.As(err, &mbe), errors.Is(err, upload.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, store.ErrNotFound), errors.Is(err, blob.ErrNotFound), errors.Is(err, queue.ErrNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, store.ErrInvalidCursor), errors.Is(err, upload.ErrInvalid), errors.Is(err, auth.ErrInvalid):
		return http.StatusBadRequest, "invalid_request"
	case errors.Is(err, blob.ErrSizeMismatch):
		return http.StatusBadRequest, "size_mismatch"
	case errors.Is(err, blob.ErrChecksumMismatch):
		return http.StatusBadRequest, "checksum_mismatch"
	case errors.Is(err, blob.ErrInvalidKey):
		return http.StatusBadRequest, "invalid_key"
	case errors.Is(err, store.ErrConflict), errors.Is(err, upload.ErrAlreadyUploaded), errors.Is(err, upload.ErrNotReady):
		return http.StatusConflict, "conflict"
	case errors.Is(err, delivery.ErrHeld):
		return http.StatusForbidden, "quarantined"
	case errors.Is(err, delivery.ErrSignatureRequired):
		return http.StatusForbidden, "signature_required"
	case errors.Is(err, auth.ErrExpired):
		return http.StatusForbidden, "url_expired"
	case errors.Is(err, auth.ErrBadSignature), errors.Is(err, auth.ErrUnsigned):
		return http.StatusForbidden, "bad_signature"
	}
	return http.StatusInternalServerError, "internal"
}

// retryAfter is when a refused request may be tried again: when the
// bucket has a token, or, for a daily quota, at the next UTC midnight.
func retryAfter(err error, now time.Time) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	now = now.UTC()
	return time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
}

// writeError sends err as a JSON error document.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", ratelimit.RetryAfter(retryAfter(err, time.Now())))
	}
	if status == http.StatusInternalServerError {
		log.ErrorContext(r.Context(), "gateway: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	writeJSON(w, status, wire.Error{Error: wire.ErrorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// maxJSONBody bounds API request documents.
const maxJSONBody = 1 << 20

// jsonReadTimeout bounds reading an API request document.
const jsonReadTimeout = 30 * time.Second

// decodeJSON reads a request document strictly: unknown fields, trailing
// data and bodies over 1 MiB are errors.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	// A slow client may not hold a connection open by trickling a small
	// document (uploads have their own, longer, pace).
	readWithin(w, r, jsonReadTimeout)
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return &httpError{http.StatusBadRequest, "invalid_json", "malformed JSON body: " + err.Error()}
	}
	if dec.More() {
		return &httpError{http.StatusBadRequest, "invalid_json", "malformed JSON body: trailing data"}
	}
	return nil
}
