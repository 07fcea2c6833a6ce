package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-media/sluice/internal/event"
)

// Headers on dead letters.
const (
	hdrReason     = "Sluice-Reason"
	hdrDeliveries = "Sluice-Deliveries"
	hdrOrigSeq    = "Sluice-Stream-Seq"
	hdrFailedAt   = "Sluice-Failed-At"
)

// ErrNotFound is returned for a dead letter that does not exist.
var ErrNotFound = errors.New("queue: dead letter not found")

// DeadLetter is an event that failed every delivery.
type DeadLetter struct {
	Seq        uint64          `json:"seq"`
	Event      json.RawMessage `json:"event"`
	AssetID    string          `json:"asset_id,omitempty"`
	Reason     string          `json:"reason"`
	Deliveries int             `json:"deliveries"`
	FailedAt   time.Time       `json:"failed_at"`
}

func (q *Queue) deadLetter(ctx context.Context, data []byte, seq uint64, deliveries int, reason string) error {
	m := nats.NewMsg(dlqSubject)
	m.Data = data
	m.Header.Set(hdrReason, reason)
	m.Header.Set(hdrDeliveries, strconv.Itoa(deliveries))
	m.Header.Set(hdrOrigSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrFailedAt, time.Now().UTC().Format(time.RFC3339Nano))
	// Several workers may see the same max-deliveries advisory.
	m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("dlq-%s-%d", q.cfg.Stream, seq))
	if _, err := q.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("queue: dead-letter: %w", err)
	}
	return nil
}

// DeadLetters lists up to limit dead letters with a sequence greater than
// after, oldest first.
func (q *Queue) DeadLetters(ctx context.Context, after uint64, limit int) ([]DeadLetter, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	out := []DeadLetter{}
	seq := after + 1
	for len(out) < limit {
		raw, err := q.dlq.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(dlqSubject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("queue: list dead letters: %w", err)
		}
		out = append(out, toDeadLetter(raw))
		seq = raw.Sequence + 1
	}
	return out, nil
}

// GetDeadLetter returns one dead letter.
func (q *Queue) GetDeadLetter(ctx context.Context, seq uint64) (DeadLetter, error) {
	raw, err := q.dlq.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, ErrNotFound
	}
	if err != nil {
		return DeadLetter{}, err
	}
	return toDeadLetter(raw), nil
}

// Replay queues a dead letter's event again, with fresh deliveries, and
// removes it from the dead-letter stream.
func (q *Queue) Replay(ctx context.Context, seq uint64) error {
	dl, err := q.GetDeadLetter(ctx, seq)
	if err != nil {
		return err
	}
	ev, err := event.Unmarshal(dl.Event)
	if err != nil {
		return fmt.Errorf("queue: replay %d: %w", seq, err)
	}
	// A new publish id: the original is likely still remembered.
	if err := q.publish(ctx, ev, fmt.Sprintf("%s-replay-%d", ev.IdempotencyKey(), seq)); err != nil {
		return err
	}
	return q.dlq.DeleteMsg(ctx, seq)
}

func toDeadLetter(raw *jetstream.RawStreamMsg) DeadLetter {
	dl := DeadLetter{
		Seq:    raw.Sequence,
		Event:  json.RawMessage(raw.Data),
		Reason: raw.Header.Get(hdrReason),
	}
	if !json.Valid(raw.Data) {
		dl.Event, _ = json.Marshal(string(raw.Data))
	}
	dl.Deliveries, _ = strconv.Atoi(raw.Header.Get(hdrDeliveries))
	dl.FailedAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(hdrFailedAt))
	var ev struct {
		AssetID string `json:"assetId"`
	}
	if json.Unmarshal(raw.Data, &ev) == nil {
		dl.AssetID = ev.AssetID
	}
	return dl
}

// PublishRaw publishes bytes as an event without validating them; the
// worker side must cope with anything on the stream. For tests and tools.
func (q *Queue) PublishRaw(ctx context.Context, data []byte) error {
	_, err := q.js.Publish(ctx, subjectPrefix+"object-created.raw", data)
	return err
}
