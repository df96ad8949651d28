package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/test/integration/harness"
)

// testJobs returns n distinct jobs of one cycle.
func testJobs(n int, cycle string) []contract.ScanJob {
	jobs := make([]contract.ScanJob, n)
	for i := range jobs {
		key := contract.ImageKey{Digest: fmt.Sprintf("sha256:%064x", i+1), Platform: contract.DefaultPlatform}
		jobs[i] = contract.NewScanJob("run-it", cycle, key, "registry:5000/app@"+key.Digest, nil, time.Now())
	}
	return jobs
}

// consumeAll runs a queue.Consumer until want distinct jobs were handled or
// timeout passes, and returns how often each digest was handled.
func consumeAll(ctx context.Context, t *testing.T, cons jetstream.Consumer, want int, timeout time.Duration) map[string]int {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	h := queue.HandlerFunc(func(ctx context.Context, d queue.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		seen[d.Job.Digest]++
		if len(seen) == want {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	})
	c, err := queue.NewConsumer(ctx, cons, h, nil, queue.ConsumerConfig{Concurrency: 8, FetchWait: 500 * time.Millisecond}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- c.Run(runCtx) }()
	select {
	case <-done:
	case <-time.After(timeout):
		mu.Lock()
		t.Errorf("consumed %d distinct jobs within %s, want %d", len(seen), timeout, want)
		mu.Unlock()
	}
	stop()
	if err := <-errc; err != nil {
		t.Errorf("consumer: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]int, len(seen))
	for k, v := range seen {
		out[k] = v
	}
	return out
}

func smokeTopology(replicas int) topology.Config {
	cfg := topology.Defaults()
	cfg.Replicas = replicas
	cfg.AckWait = 5 * time.Second
	return cfg
}

// TestNATSFileStoreSurvivesRestart is the foundation's smoke test against a
// real nats-server container: the topology is laid from the test process,
// jobs are published, the server is replaced by a new container on the same
// volume, and every job is still there and consumed exactly once.
func TestNATSFileStoreSurvivesRestart(t *testing.T) {
	env := harness.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	srv := env.StartNATS(ctx)
	nc, js := srv.Connect(ctx)
	res, err := topology.Ensure(ctx, js, smokeTopology(1))
	if err != nil {
		t.Fatalf("topology.Ensure against the container: %v", err)
	}

	const n = 200
	jobs := testJobs(n, "2030-01-01")
	st, err := queue.NewPublisher(js).Publish(ctx, jobs)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if st.Stored != n || st.Duplicates != 0 {
		t.Fatalf("publish stored %d, duplicates %d; want %d, 0", st.Stored, st.Duplicates, n)
	}

	// A new container on the same volume: the state must come from the
	// file store, not from the old container's writable layer.
	srv.ReplaceNode(ctx, 0)
	// The client reconnects by itself (same host port).
	deadline := time.Now().Add(20 * time.Second)
	for !nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if !nc.IsConnected() {
		t.Fatalf("client did not reconnect after the restart: %v", nc.Status())
	}

	// Ensure is idempotent against the recovered state, and the jobs and the
	// duplicate window survived: republishing stores nothing.
	if res, err = topology.Ensure(ctx, js, smokeTopology(1)); err != nil {
		t.Fatalf("topology.Ensure after restart: %v", err)
	}
	info, err := res.Jobs.Info(ctx)
	if err != nil {
		t.Fatalf("jobs stream info: %v", err)
	}
	if info.State.Msgs != n {
		t.Fatalf("jobs stream holds %d messages after the restart, want %d", info.State.Msgs, n)
	}
	st, err = queue.NewPublisher(js).Publish(ctx, jobs[:10])
	if err != nil {
		t.Fatalf("republish: %v", err)
	}
	if st.Stored != 0 || st.Duplicates != 10 {
		t.Errorf("republish after restart stored %d, duplicates %d; want 0, 10 (duplicate window lost?)", st.Stored, st.Duplicates)
	}

	seen := consumeAll(ctx, t, res.Workers, n, time.Minute)
	for d, c := range seen {
		if c != 1 {
			t.Errorf("job %s handled %d times, want once", d, c)
		}
	}
	if lag, err := queue.Lag(ctx, res.Workers); err != nil || lag != 0 {
		t.Errorf("lag after consuming = %d (%v), want 0", lag, err)
	}
}

// TestNATSClusterR3NodeDown runs the topology at R3 on a three-node cluster,
// stops the jobs stream's leader, and checks that publishing and consuming
// go on and nothing is lost; then brings that node back and kills the new
// leader with SIGKILL, and checks the same again.
func TestNATSClusterR3NodeDown(t *testing.T) {
	env := harness.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	cluster := env.StartNATSCluster(ctx, 3)
	_, js := cluster.Connect(ctx)
	res, err := topology.Ensure(ctx, js, smokeTopology(3))
	if err != nil {
		t.Fatalf("topology.Ensure at R3: %v", err)
	}
	info, err := res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("jobs stream replicas = %d, cluster %+v; want R3 with two followers", info.Config.Replicas, info.Cluster)
	}

	const n = 150
	jobs := testJobs(n, "2030-01-02")
	if _, err := queue.NewPublisher(js).Publish(ctx, jobs[:100]); err != nil {
		t.Fatalf("publish: %v", err)
	}

	// Stop the stream leader: the worst node to lose.
	var leader *harness.Container
	for _, c := range cluster.Nodes {
		if c.Name == info.Cluster.Leader {
			leader = c
		}
	}
	if leader == nil {
		t.Fatalf("stream leader %q is not one of the nodes", info.Cluster.Leader)
	}
	if err := leader.StopGracefully(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped stream leader %s", leader.Name)

	// Publishing continues once a new leader is elected.
	pubCtx, pubCancel := context.WithTimeout(ctx, 45*time.Second)
	defer pubCancel()
	for {
		_, err := queue.NewPublisher(js).Publish(pubCtx, jobs[100:])
		if err == nil {
			break
		}
		if pubCtx.Err() != nil {
			t.Fatalf("publish with one node down: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	info, err = res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("jobs stream holds %d messages with one node down, want %d", info.State.Msgs, n)
	}
	if info.Cluster == nil || info.Cluster.Leader == leader.Name {
		t.Fatalf("no new leader after stopping %s: %+v", leader.Name, info.Cluster)
	}

	seen := consumeAll(ctx, t, res.Workers, n, time.Minute)
	for d, c := range seen {
		if c != 1 {
			t.Errorf("job %s handled %d times, want once", d, c)
		}
	}

	// The stopped node comes back and catches up; then the new leader is
	// killed with SIGKILL — no graceful leadership transfer, no flushed
	// state, like a node lost to the OOM killer or a power cut.
	if err := leader.Start(ctx); err != nil {
		t.Fatalf("start %s again: %v", leader.Name, err)
	}
	if err := cluster.WaitHealthy(ctx, time.Minute, leader); err != nil {
		t.Fatal(err)
	}
	// Each poll has its own short timeout: a JetStream request without a
	// leader to answer it waits for its context's deadline.
	poll := func(f func(context.Context) bool) func() bool {
		return func() bool {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return f(pctx)
		}
	}
	waitFor(ctx, t, time.Minute, "three current replicas again", poll(func(ctx context.Context) bool {
		info, err := res.Jobs.Info(ctx)
		if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Offline {
				return false
			}
		}
		return true
	}))
	t.Logf("%s is back and current", leader.Name)
	info, err = res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var killed *harness.Container
	for _, c := range cluster.Nodes {
		if c.Name == info.Cluster.Leader {
			killed = c
		}
	}
	if killed == nil {
		t.Fatalf("stream leader %q is not one of the nodes", info.Cluster.Leader)
	}
	if err := killed.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed stream leader %s with SIGKILL", killed.Name)
	killedAt := time.Now()
	defer func() { t.Logf("recovered %s after the kill", time.Since(killedAt).Round(time.Millisecond)) }()
	more := testJobs(n+50, "2030-01-02")[n:]
	pubCtx2, pubCancel2 := context.WithTimeout(ctx, 45*time.Second)
	defer pubCancel2()
	for {
		_, err := queue.NewPublisher(js).Publish(pubCtx2, more)
		if err == nil {
			break
		}
		if pubCtx2.Err() != nil {
			t.Fatalf("publish after the leader was killed: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	info, err = res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || info.Cluster.Leader == killed.Name || info.Cluster.Leader == "" {
		t.Fatalf("no new leader after killing %s: %+v", killed.Name, info.Cluster)
	}
	// The workers' consumer gets a leader of its own (a worker restarted
	// by Kubernetes would wait the same way).
	waitFor(ctx, t, time.Minute, "the workers' consumer to have a leader", poll(func(ctx context.Context) bool {
		ci, err := res.Workers.Info(ctx)
		return err == nil && ci.Cluster != nil && ci.Cluster.Leader != "" && ci.Cluster.Leader != killed.Name
	}))
	t.Logf("new leaders elected; consuming")
	seen = consumeAll(ctx, t, res.Workers, len(more), time.Minute)
	for _, j := range more {
		if seen[j.Digest] != 1 {
			t.Errorf("job %s handled %d times after the kill, want once", j.Digest, seen[j.Digest])
		}
	}
}
