package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// updatesSubject is where processes announce changes to assets, for live
// views: plain NATS, at most once, to every subscriber.
const updatesSubject = "sluice.updates"

// Update is a change to an asset: its status, or one step's.
type Update struct {
	AssetID    string    `json:"asset_id"`
	Status     string    `json:"status,omitempty"` // the asset's, when it changed
	Step       string    `json:"step,omitempty"`   // the step that changed
	StepStatus string    `json:"step_status,omitempty"`
	At         time.Time `json:"at"`
}

// PublishUpdate announces a change. It is best effort: a live view that
// misses one catches up from the API.
func (q *Queue) PublishUpdate(ctx context.Context, u Update) {
	data, err := json.Marshal(u)
	if err != nil {
		return
	}
	if err := q.nc.Publish(updatesSubject+"."+u.AssetID, data); err != nil {
		q.log.Debug("queue: publish update", "err", err)
	}
}

// SubscribeUpdates calls fn with every update any process publishes.
func (q *Queue) SubscribeUpdates(fn func(Update)) (stop func(), err error) {
	sub, err := q.nc.Subscribe(updatesSubject+".>", func(m *nats.Msg) {
		var u Update
		if json.Unmarshal(m.Data, &u) == nil {
			fn(u)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("queue: subscribe updates: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// samplesSubject carries each process's metrics sample to the processes
// that chart the cluster: plain NATS, at most once.
const samplesSubject = "sluice.samples"

// headerProcess names the process a sample comes from.
const headerProcess = "Sluice-Process"

// PublishSample hands this process's metrics sample to the others. Best
// effort: a lost one leaves a gap in the charts.
func (q *Queue) PublishSample(process string, data []byte) {
	msg := nats.NewMsg(samplesSubject)
	msg.Header.Set(headerProcess, process)
	msg.Data = data
	if err := q.nc.PublishMsg(msg); err != nil {
		q.log.Debug("queue: publish sample", "err", err)
	}
}

// SubscribeSamples calls fn with every other process's samples.
func (q *Queue) SubscribeSamples(self string, fn func(process string, data []byte)) (stop func(), err error) {
	sub, err := q.nc.Subscribe(samplesSubject, func(m *nats.Msg) {
		if p := m.Header.Get(headerProcess); p != "" && p != self {
			fn(p, m.Data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("queue: subscribe samples: %w", err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}
