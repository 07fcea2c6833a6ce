package gateway

import (
	"errors"
	"io"
	"net/http"

	"github.com/sluice-media/sluice/internal/notify"
	"github.com/sluice-media/sluice/internal/upload"
)

// maxNotification bounds a bucket notification document.
const maxNotification = 1 << 20

// bucketEvents takes S3 bucket notifications (the AWS event JSON that
// MinIO and versitygw send to a webhook target) and completes the
// uploads they announce. Creations of other objects become assets;
// removals are ignored. The answer is 204 once every record is handled,
// so that a sender retries a notification Sluice could not take.
func (g *Gateway) bucketEvents(w http.ResponseWriter, r *http.Request) {
	readWithin(w, r, jsonReadTimeout)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxNotification))
	if err != nil {
		writeError(w, r, g.deps.Log, err)
		return
	}
	evs, err := g.cfg.S3Events.Decode(body)
	if err != nil {
		writeError(w, r, g.deps.Log, badRequest(err.Error()))
		return
	}
	for _, ev := range evs {
		if err := g.deps.Uploads.ObjectCreated(r.Context(), ev); err != nil {
			if errors.Is(err, upload.ErrInvalid) || errors.Is(err, upload.ErrUnsupportedType) {
				// Nothing to retry: the record is not for Sluice, or its
				// asset failed with the reason.
				g.deps.Log.Info("gateway: bucket notification refused", "key", ev.Key, "err", err)
				continue
			}
			writeError(w, r, g.deps.Log, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// S3EventDecoder decodes bucket notifications; notify.S3Decoder with
// RawKeys for senders that do not URL-encode keys (versitygw).
type S3EventDecoder = notify.S3Decoder
