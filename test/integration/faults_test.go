package integration_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/test/integration/faultproxy"
	"github.com/fleetscan/fleetscan/test/integration/harness"
)

// waitFor polls cond every 250ms until it holds or timeout passes.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// slowManifests makes every manifest fetch by digest take delay, so a run
// lasts long enough to break something in the middle of it.
func slowManifests(delay time.Duration) faultproxy.Rule {
	return faultproxy.Rule{Name: "slow", Match: "/manifests/sha256:", Action: faultproxy.ActionHang, Delay: faultproxy.Duration(delay)}
}

// resultsSoFar counts the keys that already have a result of this cycle.
func (p *pipeline) resultsSoFar(ctx context.Context) int {
	n := 0
	for _, k := range p.fleet.ExpectedKeys() {
		if _, ok := p.result(ctx, k); ok {
			n++
		}
	}
	return n
}

// TestWorkerKilledMidScan kills a worker with SIGKILL while it is stuck in
// a slow scan: its job comes back after AckWait (no heartbeats any more),
// another worker scans it, and the report is complete without duplicates.
func TestWorkerKilledMidScan(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const ackWait = 10 * time.Second
	p := newPipeline(t, ctx, pipelineOptions{faultProxy: true, ackWait: ackWait})
	p.smallFleet(ctx)
	slow := p.keyOf("python-app")
	if err := p.proxy.SetRules(ctx, faultproxy.Rule{
		Name: "stuck", Match: "manifests/" + slow.Digest, Action: faultproxy.ActionHang,
		Delay: faultproxy.Duration(2 * time.Minute), Times: 1,
	}); err != nil {
		t.Fatal(err)
	}

	victim := p.startWorkers(ctx, 1)[0]
	if run := p.dispatch(ctx, "kill"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	waitFor(ctx, t, time.Minute, "worker-1 to get stuck pulling python-app", func() bool {
		st, err := p.proxy.Stats(ctx)
		return err == nil && st.Injected["stuck"] == 1
	})
	if err := victim.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if code, _, err := victim.ExitCode(ctx); err != nil || code != 137 {
		t.Errorf("worker-1 exit code %d (%v), want 137 (SIGKILL)", code, err)
	}
	p.env.Start(ctx, p.workerSpec(ctx, "worker-2"))
	p.env.Start(ctx, p.workerSpec(ctx, "worker-3"))

	results := p.waitResults(ctx, p.fleet.ExpectedKeys(), 2*time.Minute)
	r, ok := results[slow]
	if !ok {
		t.Fatalf("the killed worker's job never finished (%d of %d results)", len(results), len(p.fleet.ExpectedKeys()))
	}
	if r.Status != contract.StatusScanned || r.Worker == "worker-1" {
		t.Errorf("python-app result: %s by %s, want scanned by a surviving worker", r.Status, r.Worker)
	}
	t.Logf("python-app rescanned by %s %s after worker-1 was killed (AckWait %s)", r.Worker, r.StartedAt.Sub(killed).Round(time.Millisecond), ackWait)
	// Redelivery waits for AckWait since the last heartbeat (sent every
	// AckWait/3): never sooner than two thirds of it after the kill.
	if early := killed.Add(2*ackWait/3 - time.Second); r.StartedAt.Before(early) {
		t.Errorf("python-app rescanned at %s, %s after the kill; want after AckWait (%s)", r.StartedAt, r.StartedAt.Sub(killed), ackWait)
	}
	info, err := p.res.Workers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The consumer sequence counts every delivery, the stream sequence
	// every job: more deliveries than jobs means a redelivery.
	if info.Delivered.Consumer <= info.Delivered.Stream {
		t.Errorf("%d deliveries of %d jobs: the killed worker's job was not redelivered", info.Delivered.Consumer, info.Delivered.Stream)
	}
	p.complete(ctx, "kill")
}

// TestNATSRestartMidRun replaces the NATS server (SIGKILL, new container on
// the same file-store volume) while workers are scanning: no job is lost
// and the run completes.
func TestNATSRestartMidRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{faultProxy: true})
	p.standardFleet(ctx)
	if err := p.proxy.SetRules(ctx, slowManifests(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if run := p.dispatch(ctx, "restart"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	p.startWorkers(ctx, 3)
	total := len(p.fleet.ExpectedKeys())
	waitFor(ctx, t, 2*time.Minute, "the first results", func() bool { return p.resultsSoFar(ctx) >= 1 })
	before := p.resultsSoFar(ctx)
	if before == total {
		t.Fatal("the run finished before NATS could be restarted; slow the scans down")
	}
	p.nats.ReplaceNode(ctx, 0)
	t.Logf("NATS replaced after %d of %d results", before, total)

	results := p.waitResults(ctx, p.fleet.ExpectedKeys(), 3*time.Minute)
	if len(results) != total {
		t.Fatalf("%d of %d results after the NATS restart: jobs were lost", len(results), total)
	}
	p.complete(ctx, "restart")
}

// TestNATSClusterNodeDownMidRun runs the pipeline on a three-node cluster
// with every stream at R3 and kills (SIGKILL) the jobs stream's leader
// mid-run: the run completes on the two remaining nodes.
func TestNATSClusterNodeDownMidRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{natsNodes: 3, faultProxy: true})
	p.standardFleet(ctx)
	if err := p.proxy.SetRules(ctx, slowManifests(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if run := p.dispatch(ctx, "cluster"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	p.startWorkers(ctx, 3)
	total := len(p.fleet.ExpectedKeys())
	waitFor(ctx, t, 2*time.Minute, "the first results", func() bool { return p.resultsSoFar(ctx) >= 1 })

	info, err := p.res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("jobs stream: %d replicas, cluster %+v; want R3", info.Config.Replicas, info.Cluster)
	}
	var leader *harness.Container
	for _, n := range p.nats.Nodes {
		if n.Name == info.Cluster.Leader {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("jobs stream leader %q is not a node", info.Cluster.Leader)
	}
	before := p.resultsSoFar(ctx)
	if before == total {
		t.Fatal("the run finished before a node could be stopped; slow the scans down")
	}
	// SIGKILL: the leader dies without handing over leadership or flushing.
	if err := leader.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s (jobs stream leader) with SIGKILL after %d of %d results", leader.Name, before, total)

	results := p.waitResults(ctx, p.fleet.ExpectedKeys(), 3*time.Minute)
	if len(results) != total {
		t.Fatalf("%d of %d results with one node down", len(results), total)
	}
	p.complete(ctx, "cluster")
}

// TestRegistryFaults puts a fault-injecting proxy in front of the registry:
// 500s that stop and a hang recover within the retry budget; 500s that
// outlast it and a 404 end as failures with a reason; the reporter exits 2
// and names the images.
func TestRegistryFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	const budget = 3
	p := newPipeline(t, ctx, pipelineOptions{faultProxy: true, maxDeliver: budget})
	p.smallFleet(ctx, "alpine-curl", "go-agent", "python-app", "debian-12", "alpine-3.18")
	curl, agent, python, debian := p.keyOf("alpine-curl"), p.keyOf("go-agent"), p.keyOf("python-app"), p.keyOf("debian-12")
	if err := p.proxy.SetRules(ctx,
		faultproxy.Rule{Name: "500-then-ok", Match: "manifests/" + curl.Digest, Action: faultproxy.ActionStatus, Status: http.StatusInternalServerError, Times: 2},
		faultproxy.Rule{Name: "hang-once", Match: "manifests/" + agent.Digest, Action: faultproxy.ActionHang, Times: 1},
		faultproxy.Rule{Name: "404", Match: "manifests/" + python.Digest, Action: faultproxy.ActionStatus, Status: http.StatusNotFound},
		faultproxy.Rule{Name: "500-forever", Match: "manifests/" + debian.Digest, Action: faultproxy.ActionStatus, Status: http.StatusInternalServerError},
	); err != nil {
		t.Fatal(err)
	}
	if run := p.dispatch(ctx, "faults"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	p.startWorkers(ctx, 2, "--scan-timeout", "10s")
	results := p.waitResults(ctx, p.fleet.ExpectedKeys(), 3*time.Minute)

	for _, k := range []contract.ImageKey{curl, agent, p.keyOf("alpine-3.18")} {
		if r := results[k]; r.Status != contract.StatusScanned {
			t.Errorf("%s: %s %+v, want scanned after the fault cleared", k, r.Status, r.Failure)
		}
	}
	for k, want := range map[contract.ImageKey]struct {
		class    contract.FailureClass
		attempts int
	}{
		python: {contract.FailureNotFound, 1},
		debian: {contract.FailureInternal, budget},
	} {
		r := results[k]
		if r.Status != contract.StatusFailed || r.Failure == nil {
			t.Errorf("%s: %s, want failed (%s)", k, r.Status, want.class)
			continue
		}
		if r.Failure.Class != want.class || r.Failure.Attempts != want.attempts || r.Failure.Reason == "" {
			t.Errorf("%s: failure %+v, want class %s after %d attempt(s) with a reason", k, *r.Failure, want.class, want.attempts)
		}
	}
	for _, k := range []contract.ImageKey{python, debian} {
		if r := results[k]; r.Failure != nil {
			t.Logf("%s failed: %s after %d attempt(s): %s", k.Digest[:19], r.Failure.Class, r.Failure.Attempts, r.Failure.Reason)
		}
	}
	st, err := p.proxy.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("faults injected: %v", st.Injected)
	if st.Injected["500-then-ok"] != 2 || st.Injected["hang-once"] != 1 || st.Injected["404"] < 1 || st.Injected["500-forever"] < budget {
		t.Errorf("faults injected: %v; want 2 × 500, 1 hang, ≥1 × 404, ≥%d × 500-forever", st.Injected, budget)
	}

	rr := p.runReporter(ctx, "faults")
	if rr.Code != 2 {
		t.Errorf("reporter exit status %d, want 2 (incomplete: failed images)\n%s", rr.Code, rr)
	}
	rep := rr.report
	if rep.Complete || rep.Summary.ImagesFailed != 2 {
		t.Errorf("report complete=%v, %d images failed; want incomplete with 2 failed", rep.Complete, rep.Summary.ImagesFailed)
	}
	failed := map[string]string{}
	for _, f := range rep.Failures {
		failed[f.Digest] = f.Class + " " + f.Image
		if f.Reason == "" {
			t.Errorf("failure of %s has no reason", f.Image)
		}
	}
	for name, k := range map[string]contract.ImageKey{"fixtures/python-app": python, "fixtures/debian": debian} {
		if !strings.Contains(failed[k.Digest], name) {
			t.Errorf("report failures %v do not name %s", failed, name)
		}
		if !strings.Contains(rr.Logs, name) {
			t.Errorf("reporter output does not name the failed image %s", name)
		}
	}
	checkFindings(t, rep, p.fleet.ExpectedFindings(python.Digest, debian.Digest))
}

// TestS3Down stops the S3 gateway before the reporter runs: the local
// report is still written and complete, the exit status carries bit 2, and
// the error names the bucket and the endpoint.
func TestS3Down(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{s3: true})
	p.smallFleet(ctx, "alpine-curl", "go-agent")
	if run := p.dispatch(ctx, "s3down"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	p.startWorkers(ctx, 1)
	if got := p.waitResults(ctx, p.fleet.ExpectedKeys(), 2*time.Minute); len(got) != len(p.fleet.ExpectedKeys()) {
		t.Fatalf("%d of %d results", len(got), len(p.fleet.ExpectedKeys()))
	}
	if err := p.s3.StopGracefully(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	rr := p.runReporter(ctx, "s3down")
	if rr.Code&2 == 0 || rr.Code > 3 {
		t.Errorf("reporter exit status %d, want the incomplete bit (2) set and a report produced\n%s", rr.Code, rr)
	}
	if rr.Code != 2 {
		t.Errorf("reporter exit status %d, want exactly 2 (nothing breached)", rr.Code)
	}
	checkFindings(t, rr.report, p.fleet.ExpectedFindings())
	for _, want := range []string{bucket, "s3:7070"} {
		if !strings.Contains(rr.Logs, want) {
			t.Errorf("reporter output does not name %q:\n%s", want, rr)
		}
	}
}

// TestPoisonMessage publishes garbage on the jobs subjects: each message is
// terminated and logged once, the workers keep scanning, nothing
// crash-loops, and the report is complete.
func TestPoisonMessage(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{})
	p.smallFleet(ctx)
	workers := p.startWorkers(ctx, 2)

	poison := map[string][]byte{
		topology.JobsSubjectPrefix + ".garbage.bytes":  []byte("\x00\xffnot a job at all"),
		topology.JobsSubjectPrefix + ".future.version": []byte(`{"schemaVersion":"9.0","digest":"sha256:` + strings.Repeat("a", 64) + `"}`),
		topology.JobsSubjectPrefix + ".missing.fields": []byte(`{"schemaVersion":"1.0"}`),
	}
	for subj, data := range poison {
		if _, err := p.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data}); err != nil {
			t.Fatalf("publish poison on %s: %v", subj, err)
		}
	}
	if run := p.dispatch(ctx, "poison"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	if got := p.waitResults(ctx, p.fleet.ExpectedKeys(), 2*time.Minute); len(got) != len(p.fleet.ExpectedKeys()) {
		t.Fatalf("%d of %d results: workers stopped working", len(got), len(p.fleet.ExpectedKeys()))
	}
	p.complete(ctx, "poison")

	logged := 0
	for _, w := range workers {
		state, err := w.State(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !state.Running || state.Restarting {
			t.Errorf("%s is not running (%s, exit %d)", w.Name, state.Status, state.ExitCode)
		}
		logs, err := w.Logs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		logged += strings.Count(logs, "poison message")
	}
	if logged != len(poison) {
		t.Errorf("poison messages logged %d times, want once each (%d)", logged, len(poison))
	}
	info, err := p.res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := p.res.Workers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 || cons.NumAckPending != 0 || cons.NumPending != 0 {
		t.Errorf("after the run: %d jobs stored, %d pending, %d unacknowledged; want the poison terminated and nothing left",
			info.State.Msgs, cons.NumPending, cons.NumAckPending)
	}
	if cons.Delivered.Consumer != cons.Delivered.Stream {
		t.Errorf("%d deliveries of %d messages: something (the poison?) was redelivered", cons.Delivered.Consumer, cons.Delivered.Stream)
	}
}
