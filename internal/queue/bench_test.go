package queue_test

import (
	"fmt"
	"testing"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// BenchmarkPublish measures job publish throughput into the jobs stream of
// an embedded JetStream (file store): 10,000 unique jobs per operation
// ("new"), and the same 10,000 again in the same cycle, all dropped by the
// duplicate window ("duplicates", what a second dispatcher of the cycle
// costs). The stream is purged between operations, outside the timer.
func BenchmarkPublish(b *testing.B) {
	const jobs = 10_000
	env := natstest.Start(b)
	ctx := b.Context()
	stream, err := env.JS.Stream(ctx, topology.JobsStream)
	if err != nil {
		b.Fatal(err)
	}
	batch := func(cycle string) []contract.ScanJob {
		out := make([]contract.ScanJob, jobs)
		for i := range out {
			out[i] = job(i, cycle)
		}
		return out
	}
	// Go runs each sub-benchmark several times with i restarting at 0:
	// round makes every batch's cycle (and so its Nats-Msg-Ids) unique.
	round := 0
	for _, dup := range []bool{false, true} {
		name := "new"
		if dup {
			name = "duplicates"
		}
		b.Run(name, func(b *testing.B) {
			p := queue.NewPublisher(env.JS)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := stream.Purge(ctx); err != nil {
					b.Fatal(err)
				}
				round++
				js := batch(fmt.Sprintf("bench-%s-%d", name, round))
				if dup {
					if _, err := p.Publish(ctx, js); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				st, err := p.Publish(ctx, js)
				if err != nil {
					b.Fatal(err)
				}
				want := queue.PublishStats{Stored: jobs}
				if dup {
					want = queue.PublishStats{Duplicates: jobs}
				}
				if st != want {
					b.Fatalf("publish stats %+v, want %+v", st, want)
				}
			}
			b.ReportMetric(float64(jobs*b.N)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
