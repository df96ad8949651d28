package worker

import (
	"github.com/nats-io/nats.go"

	"github.com/fleetscan/fleetscan/internal/store"
)

// The production implementations of the worker's small interfaces.
var (
	_ ResultStore = (*store.Store)(nil)
	_ Conn        = (*nats.Conn)(nil)
)
