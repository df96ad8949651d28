package natsconn

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/topology"
)

// TestEnsureRetriesWhileJetStreamIsNotReady: a cluster that lost its leader
// to SIGKILL times requests out until it elected a new one; Open retries
// those (on a bounded time), not configuration errors.
func TestEnsureRetriesWhileJetStreamIsNotReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		res, err := ensure(t.Context(), zap.NewNop(), time.Minute, func() (*topology.Resources, error) {
			calls++
			switch calls {
			case 1:
				return nil, fmt.Errorf("topology: stream FLEETSCAN_JOBS: %w", context.DeadlineExceeded)
			case 2:
				return nil, nats.ErrNoResponders
			}
			return &topology.Resources{}, nil
		})
		if err != nil || res == nil || calls != 3 {
			t.Fatalf("ensure = %v, %v after %d calls; want success on the third", res, err, calls)
		}

		calls = 0
		bad := errors.New("insufficient resources")
		if _, err := ensure(t.Context(), zap.NewNop(), time.Minute, func() (*topology.Resources, error) { calls++; return nil, bad }); err != bad || calls != 1 {
			t.Fatalf("a configuration error: %v after %d calls, want it at once", err, calls)
		}

		start := time.Now()
		calls = 0
		_, err = ensure(t.Context(), zap.NewNop(), 30*time.Second, func() (*topology.Resources, error) { calls++; return nil, nats.ErrTimeout })
		if !errors.Is(err, nats.ErrTimeout) || time.Since(start) > 31*time.Second || calls < 5 {
			t.Fatalf("never ready: %v after %s and %d calls, want to give up after 30s", err, time.Since(start), calls)
		}
	})
}
