package queue

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// fakeMsg records the replies a delivery gets, with the (bubble) time of
// each heartbeat.
type fakeMsg struct {
	jetstream.Msg // unused methods panic
	data          []byte

	mu         sync.Mutex
	inProgress []time.Time
	replies    []string
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: 1, Sequence: jetstream.SequencePair{Stream: 1, Consumer: 1}}, nil
}
func (m *fakeMsg) Data() []byte         { return m.data }
func (m *fakeMsg) Headers() nats.Header { return nil }
func (m *fakeMsg) Subject() string      { return "fleetscan.jobs.x" }
func (m *fakeMsg) reply(r string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.replies = append(m.replies, r)
	return nil
}
func (m *fakeMsg) DoubleAck(context.Context) error { return m.reply("ack") }
func (m *fakeMsg) Nak() error                      { return m.reply("nak") }
func (m *fakeMsg) NakWithDelay(time.Duration) error {
	return m.reply("nak-delay")
}
func (m *fakeMsg) Term() error                 { return m.reply("term") }
func (m *fakeMsg) TermWithReason(string) error { return m.reply("term") }
func (m *fakeMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inProgress = append(m.inProgress, time.Now())
	return nil
}

// TestHeartbeatEveryThirdOfAckWait: a scan running three AckWaits (1 s)
// sends InProgress every AckWait/3 — checked on the synctest bubble's
// clock, so a loaded machine cannot make a heartbeat look late — and the
// delivery gets exactly one reply, an ack.
func TestHeartbeatEveryThirdOfAckWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ackWait = time.Second
		digest := "sha256:" + strings.Repeat("0", 63) + "1"
		job := contract.NewScanJob("run-1", "c1", contract.ImageKey{Digest: digest, Platform: contract.DefaultPlatform},
			"registry.example/app@"+digest, nil, time.Now())
		data, err := job.Encode()
		if err != nil {
			t.Fatal(err)
		}
		msg := &fakeMsg{data: data}
		c := &Consumer{
			handler: HandlerFunc(func(ctx context.Context, d Delivery) error {
				time.Sleep(3 * ackWait)
				return nil
			}),
			log: zap.NewNop(),
		}
		c.cfg.defaults(ackWait)
		start := time.Now()
		c.process(t.Context(), t.Context(), msg)

		msg.mu.Lock()
		defer msg.mu.Unlock()
		if len(msg.replies) != 1 || msg.replies[0] != "ack" {
			t.Fatalf("replies %v, want one ack", msg.replies)
		}
		if len(msg.inProgress) != 9 {
			t.Fatalf("%d heartbeats during a 3s scan, want 9 (every %s)", len(msg.inProgress), ackWait/3)
		}
		prev := start
		for i, at := range msg.inProgress {
			if gap := at.Sub(prev); gap > ackWait/3 {
				t.Errorf("heartbeat %d came %s after the previous one, more than AckWait/3", i+1, gap)
			}
			prev = at
		}
	})
}
