package logging

import (
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Typed field constructors for the keys fleetscan's components share, so a
// key is spelled once and means the same in every log line: a run's
// dispatcher, worker and reporter lines can be joined on run_id, an image's
// on digest and platform. Every log key is snake_case; keys without a
// constructor here are local to one message. A test enforces both rules.

// RunID is a dispatcher run.
func RunID(id string) zap.Field { return zap.String("run_id", id) }

// Cycle is the scan cycle jobs are deduplicated in.
func Cycle(cycle string) zap.Field { return zap.String("cycle", cycle) }

// Cluster names a cluster.
func Cluster(name string) zap.Field { return zap.String("cluster", name) }

// Digest is an image manifest digest.
func Digest(digest string) zap.Field { return zap.String("digest", digest) }

// Platform is an image platform ("linux/arm64/v8").
func Platform(p contract.Platform) zap.Field { return zap.Stringer("platform", p) }

// JobID names a scan job.
func JobID(id string) zap.Field { return zap.String("job_id", id) }

// Attempt counts deliveries or tries, from 1.
func Attempt(n int) zap.Field { return zap.Int("attempt", n) }

// FailureClass classifies a failed scan.
func FailureClass(c contract.FailureClass) zap.Field { return zap.String("class", string(c)) }

// Outcome is how an attempt ended (worker.Outcome*, feeds.Outcome*).
func Outcome(outcome string) zap.Field { return zap.String("outcome", outcome) }

// Worker names a worker.
func Worker(name string) zap.Field { return zap.String("worker", name) }

// DBVersion is the vulnerability DB's schema version.
func DBVersion(v int) zap.Field { return zap.Int("db_version", v) }

// DBUpdatedAt is when the vulnerability DB was built.
func DBUpdatedAt(t time.Time) zap.Field { return zap.Time("db_updated_at", t) }

// DBNextUpdate is when a newer vulnerability DB is due.
func DBNextUpdate(t time.Time) zap.Field { return zap.Time("db_next_update", t) }

// Took is how long a step took.
func Took(d time.Duration) zap.Field { return zap.Duration("took", d) }
