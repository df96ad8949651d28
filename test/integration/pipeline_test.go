package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
	"github.com/fleetscan/fleetscan/test/integration/harness"
)

var (
	linuxAMD64 = contract.Platform{OS: "linux", Architecture: "amd64"}
	linuxARM64 = contract.Platform{OS: "linux", Architecture: "arm64"}
)

// pipelineOptions choose the infrastructure of a scenario.
type pipelineOptions struct {
	// natsNodes is 1 (a single server) or 3 (a cluster at R3).
	natsNodes int
	// faultProxy puts a fault-injecting proxy between workers and the
	// registry; pods then pull from "faultproxy:5000".
	faultProxy bool
	// s3 starts the S3 gateway with the "reports" bucket.
	s3 bool
	// ackWait is the jobs' AckWait (how soon a dead worker's job returns).
	ackWait time.Duration
	// maxDeliver is the delivery budget of a job.
	maxDeliver int
}

// pipeline is the infrastructure and test world of one scenario.
type pipeline struct {
	t     *testing.T
	env   *harness.Env
	opts  pipelineOptions
	nats  *harness.NATS
	reg   *harness.Registry
	proxy *harness.FaultProxy
	s3    *harness.S3
	// pullHost is the registry name pods reference.
	pullHost string
	fleet    *harness.Fleet
	// images by fixture spec name.
	images map[string]fixture.Pushed
	// dbCache is the host directory holding db/ (the fixture Trivy DB),
	// mounted read-only into every worker.
	dbCache string
	dbInfo  contract.DBInfo
	// filesDir holds the inventory files, mounted at /inventory.
	filesDir string
	cycle    string

	js  jetstream.JetStream
	res *topology.Resources
	st  *store.Store
}

// bucket is the S3 bucket reports are uploaded to.
const bucket = "reports"

func newPipeline(t *testing.T, ctx context.Context, opts pipelineOptions) *pipeline {
	t.Helper()
	if opts.natsNodes == 0 {
		opts.natsNodes = 1
	}
	if opts.ackWait == 0 {
		opts.ackWait = 30 * time.Second
	}
	if opts.maxDeliver == 0 {
		opts.maxDeliver = 5
	}
	env := harness.New(t)
	p := &pipeline{t: t, env: env, opts: opts, images: map[string]fixture.Pushed{}, cycle: "it-" + env.ID}
	if opts.natsNodes == 1 {
		p.nats = env.StartNATS(ctx)
	} else {
		p.nats = env.StartNATSCluster(ctx, opts.natsNodes)
	}
	p.reg = env.StartRegistry(ctx)
	p.pullHost = p.reg.InternalHost
	if opts.faultProxy {
		p.proxy = env.StartFaultProxy(ctx, "http://"+p.reg.InternalHost)
		p.pullHost = p.proxy.InternalHost
	}
	if opts.s3 {
		p.s3 = env.StartS3(ctx, bucket)
	}

	// The topology is laid by the test with the same settings every
	// fleetscan container gets, so nobody flips the consumer's config.
	_, p.js = p.nats.Connect(ctx)
	var err error
	if p.res, err = topology.Ensure(ctx, p.js, p.topology()); err != nil {
		t.Fatalf("topology: %v", err)
	}
	p.st = store.New(p.js, p.res)

	p.dbCache = env.TempDir()
	base, err := fixture.BaseAdvisories()
	if err != nil {
		t.Fatal(err)
	}
	if p.dbInfo, err = fixture.BuildDB(p.dbCache, base, fixture.DBOptions{}); err != nil {
		t.Fatalf("fixture DB: %v", err)
	}
	// Containers run as an unprivileged user: let it read the DB.
	if err := harness.MakeReadable(p.dbCache); err != nil {
		t.Fatal(err)
	}
	p.filesDir = env.TempDir()
	return p
}

// topology is the JetStream configuration of the scenario.
func (p *pipeline) topology() topology.Config {
	c := topology.Defaults()
	c.Replicas = p.opts.natsNodes
	c.AckWait = p.opts.ackWait
	c.MaxDeliver = p.opts.maxDeliver
	return c
}

// commonArgs are the NATS and topology flags every fleetscan container gets.
func (p *pipeline) commonArgs() []string {
	return []string{
		"--nats-url", p.nats.InternalURL(),
		"--js-replicas", fmt.Sprint(p.opts.natsNodes),
		"--js-ack-wait", p.opts.ackWait.String(),
		"--js-max-deliver", fmt.Sprint(p.opts.maxDeliver),
		"--log-format", "json",
	}
}

// push pushes specs to the registry and remembers them by name.
func (p *pipeline) push(ctx context.Context, specs ...fixture.ImageSpec) {
	p.t.Helper()
	pushed, err := fixture.PushSamples(ctx, p.reg.HostAddr, specs)
	if err != nil {
		p.t.Fatalf("push images: %v", err)
	}
	for _, img := range pushed {
		p.images[img.Spec.Name] = img
	}
}

// ref is img's in-network reference by tag (as a pod spec names it).
func (p *pipeline) ref(img fixture.Pushed, tag string) string {
	return strings.Replace(img.Repository, p.reg.HostAddr, p.pullHost, 1) + ":" + tag
}

// standardFleet pushes the standard images and lays them out over three
// clusters with overlapping workloads: 13 unique digest+platform keys.
func (p *pipeline) standardFleet(ctx context.Context) {
	p.t.Helper()
	p.pushStandardImages(ctx)
	samples := fixture.SampleImages()

	f := harness.NewFleet()
	f.AddNode("prod-eu", "eu-amd64-1", linuxAMD64)
	f.AddNode("prod-eu", "eu-arm64-1", linuxARM64)
	f.AddNode("prod-us", "us-amd64-1", linuxAMD64)
	f.AddNode("staging", "st-amd64-1", linuxAMD64)
	for _, s := range samples {
		img := p.images[s.Name]
		f.Deployment("prod-eu", "apps", s.Name, "eu-amd64-1", 2, img, p.ref(img, s.Tags[0]), harness.IDContainerd)
	}
	alpine := p.images["alpine-3.18"]
	f.Deployment("prod-eu", "tools", "alpine-pinned", "eu-amd64-1", 1, alpine, p.ref(alpine, "3.18.0"), harness.IDContainerd)
	node := p.images["node-app"]
	f.Deployment("prod-eu", "apps", "node-app-arm", "eu-arm64-1", 3, node, p.ref(node, "1.0.0"), harness.IDContainerd)
	for i := range 5 {
		img := p.images[fmt.Sprintf("fleet-%03d", i)]
		f.Deployment("prod-us", "fleet", img.Spec.Name, "us-amd64-1", 2, img, p.ref(img, "v1"), harness.IDDockerPullable)
	}
	for _, name := range []string{"alpine-curl", "python-app", "node-app"} {
		img := p.images[name]
		f.Deployment("prod-us", "apps", name, "us-amd64-1", 1, img, p.ref(img, img.Spec.Tags[0]), harness.IDDockerPullable)
	}
	for _, name := range []string{"alpine-mirror", "debian-12", "go-agent", "static-site"} {
		img := p.images[name]
		f.Deployment("staging", "apps", name, "st-amd64-1", 1, img, p.ref(img, img.Spec.Tags[0]), harness.IDContainerd)
	}
	p.fleet = f
}

// pushStandardImages pushes a dozen images — the fixture samples (shared
// base layers, several tags, a multi-arch index) and five fleet images —
// plus a copy of the Alpine image under a second repository (one digest, two
// names).
func (p *pipeline) pushStandardImages(ctx context.Context) {
	p.t.Helper()
	samples := fixture.SampleImages()
	p.push(ctx, slices.Concat(samples, fixture.FleetImages(5))...)
	// Same name label, so the same digest, in a second repository.
	mirror := samples[0]
	mirror.Repository, mirror.Tags = "mirror/alpine", []string{"3.18"}
	mp, err := fixture.PushSample(ctx, p.reg.HostAddr, mirror)
	if err != nil {
		p.t.Fatal(err)
	}
	if mp.Digest != p.images["alpine-3.18"].Digest {
		p.t.Fatal("the mirrored image has a different digest")
	}
	p.images["alpine-mirror"] = mp
}

// dispatch runs the dispatcher container over the fleet's files and
// returns its exit and the run id.
func (p *pipeline) dispatch(ctx context.Context, runID string) harness.Exited {
	p.t.Helper()
	files, err := p.fleet.WriteFiles(p.filesDir, "/inventory")
	if err != nil {
		p.t.Fatal(err)
	}
	if err := harness.MakeReadable(p.filesDir); err != nil {
		p.t.Fatal(err)
	}
	args := slices.Concat(p.commonArgs(), files, []string{"--cycle", p.cycle, "--run-id", runID})
	return p.env.Run(ctx, harness.Spec{
		Name:   "dispatcher-" + runID,
		Image:  p.env.FleetscanImage(ctx, "dispatcher"),
		Cmd:    args,
		Mounts: []harness.Mount{{HostPath: p.filesDir, Target: "/inventory", ReadOnly: true}},
	}, 2*time.Minute)
}

// checkManifest asserts the run manifest names exactly the fleet's keys.
func (p *pipeline) checkManifest(ctx context.Context, runID string) contract.RunManifest {
	p.t.Helper()
	m, err := p.st.Manifest(ctx, runID)
	if err != nil {
		p.t.Fatalf("run manifest %s: %v", runID, err)
	}
	want := p.fleet.ExpectedKeys()
	got := slices.Clone(m.Expected)
	slices.SortFunc(got, func(a, b contract.ImageKey) int { return strings.Compare(a.String(), b.String()) })
	if !slices.Equal(got, want) {
		p.t.Errorf("manifest expects %d keys, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for _, c := range m.Clusters {
		if !c.OK || c.Pods != p.fleet.Pods(c.Name) {
			p.t.Errorf("cluster %s in manifest: ok=%v pods=%d (%s), want ok with %d pods", c.Name, c.OK, c.Pods, c.Error, p.fleet.Pods(c.Name))
		}
	}
	if len(m.Clusters) != len(p.fleet.Clusters()) {
		p.t.Errorf("manifest covers %d clusters, want %d", len(m.Clusters), len(p.fleet.Clusters()))
	}
	return m
}

// workerArgs are the flags of a worker container.
func (p *pipeline) workerArgs(name string) []string {
	return slices.Concat(p.commonArgs(), []string{
		"--cache-dir", "/var/cache/fleetscan",
		"--scratch-dir", "/scratch",
		"--insecure-registry", p.pullHost,
		"--listen", ":8080",
		"--worker-name", name,
		"--concurrency", "2",
	})
}

// workerSpec is a worker container sharing the read-only DB volume.
func (p *pipeline) workerSpec(ctx context.Context, name string, extra ...string) harness.Spec {
	return harness.Spec{
		Name:   name,
		Image:  p.env.FleetscanImage(ctx, "worker"),
		Cmd:    slices.Concat(p.workerArgs(name), extra),
		Mounts: []harness.Mount{{HostPath: p.dbCache, Target: "/var/cache/fleetscan", ReadOnly: true}},
		Tmpfs:  []string{"/scratch"},
		Ports:  []string{"8080/tcp"},
		Wait:   wait.ForHTTP("/readyz").WithPort("8080/tcp").WithStartupTimeout(60 * time.Second),
	}
}

// startWorkers starts n workers named worker-1..n.
func (p *pipeline) startWorkers(ctx context.Context, n int, extra ...string) []*harness.Container {
	p.t.Helper()
	out := make([]*harness.Container, n)
	for i := range n {
		out[i] = p.env.Start(ctx, p.workerSpec(ctx, fmt.Sprintf("worker-%d", i+1), extra...))
	}
	return out
}

// waitResults polls the store until every key has a result of this cycle
// or timeout passes, and returns the results found.
func (p *pipeline) waitResults(ctx context.Context, keys []contract.ImageKey, timeout time.Duration) map[contract.ImageKey]contract.ScanResult {
	p.t.Helper()
	got := map[contract.ImageKey]contract.ScanResult{}
	deadline := time.Now().Add(timeout)
	for {
		for _, k := range keys {
			if _, ok := got[k]; ok {
				continue
			}
			if r, ok := p.result(ctx, k); ok {
				got[k] = r
			}
		}
		if len(got) == len(keys) || time.Now().After(deadline) {
			return got
		}
		select {
		case <-ctx.Done():
			return got
		case <-time.After(time.Second):
		}
	}
}

// result reads k's result of this cycle. Each read has its own short
// timeout: a request sent while the client reconnects after a node died
// can go unanswered, and must not wait for the whole test's context.
func (p *pipeline) result(ctx context.Context, k contract.ImageKey) (contract.ScanResult, bool) {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := p.st.Result(rctx, k)
	return r, err == nil && r.Cycle == p.cycle
}

// reporterRun is what one reporter container produced.
type reporterRun struct {
	harness.Exited
	// outDir is the host directory the report files were written to.
	outDir string
	report reportJSON
	// raw is report.json as written locally.
	raw []byte
}

// runReporter runs the reporter over one dispatcher run, uploading to S3
// when the scenario has it, and decodes the local report.json.
func (p *pipeline) runReporter(ctx context.Context, runID string, extra ...string) reporterRun {
	p.t.Helper()
	out := p.env.TempDir()
	args := slices.Concat(p.commonArgs(), []string{"--run", runID, "--wait", "3m", "--out-dir", "/out"}, extra)
	env := map[string]string{}
	if p.s3 != nil {
		args = append(args, "--s3-url", "s3://"+bucket+"/fleetscan", "--s3-endpoint", p.s3.InternalEndpoint,
			"--s3-path-style", "--s3-region", p.s3.Region, "--s3-timeout", "30s")
		env = map[string]string{
			"AWS_ACCESS_KEY_ID": p.s3.AccessKey, "AWS_SECRET_ACCESS_KEY": p.s3.SecretKey,
			"AWS_EC2_METADATA_DISABLED": "true",
		}
	}
	x := p.env.Run(ctx, harness.Spec{
		Name:   "reporter-" + runID,
		Image:  p.env.FleetscanImage(ctx, "reporter"),
		Cmd:    args,
		Env:    env,
		Mounts: []harness.Mount{{HostPath: out, Target: "/out"}},
	}, 5*time.Minute)
	r := reporterRun{Exited: x, outDir: out}
	raw, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		p.t.Fatalf("no local report: %v\n%s", err, x)
	}
	r.raw = raw
	if err := json.Unmarshal(raw, &r.report); err != nil {
		p.t.Fatalf("report.json: %v", err)
	}
	return r
}

// checkFindings asserts the report lists exactly the expected rows, each
// once.
func checkFindings(t *testing.T, rep reportJSON, want map[harness.FindingKey]fixture.Finding) {
	t.Helper()
	seen := map[harness.FindingKey]int{}
	for _, f := range rep.Findings {
		k := harness.FindingKey{Digest: f.Digest, Platform: f.Platform, VulnerabilityID: f.VulnerabilityID, PkgName: f.PkgName, InstalledVersion: f.InstalledVersion}
		seen[k]++
		exp, ok := want[k]
		switch {
		case !ok:
			t.Errorf("unexpected finding %s", k)
		case seen[k] == 2:
			t.Errorf("finding %s listed more than once", k)
		case exp.Severity != f.Severity || exp.FixedVersion != f.FixedVersion:
			t.Errorf("finding %s: severity %s fixed %q, want %s fixed %q", k, f.Severity, f.FixedVersion, exp.Severity, exp.FixedVersion)
		}
	}
	for k := range want {
		if seen[k] == 0 {
			t.Errorf("missing finding %s", k)
		}
	}
	if len(rep.Findings) != len(want) {
		t.Errorf("report lists %d findings, want %d", len(rep.Findings), len(want))
	}
}

// checkScannedOnce asserts every job was delivered once: no scan was
// repeated and none is left.
func (p *pipeline) checkScannedOnce(ctx context.Context, jobs int) {
	p.t.Helper()
	info, err := p.res.Workers.Info(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	if int(info.Delivered.Consumer) != jobs || info.NumAckPending != 0 || info.NumPending != 0 {
		p.t.Errorf("workers consumer: %d deliveries, %d pending, %d unacknowledged; want %d deliveries of %d jobs and nothing left",
			info.Delivered.Consumer, info.NumPending, info.NumAckPending, jobs, jobs)
	}
}

// TestHappyPath runs the whole pipeline in containers: NATS, a registry
// holding a dozen images, S3, a dispatcher reading three clusters, three
// workers sharing one read-only DB, and a reporter uploading to S3. The
// report lists exactly the expected findings, every image is scanned once,
// the S3 copy equals the local one, and the exit status is 0.
func TestHappyPath(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	p := newPipeline(t, ctx, pipelineOptions{s3: true})
	p.standardFleet(ctx)
	keys := p.fleet.ExpectedKeys()

	// Workers first, so all three are waiting when the jobs arrive.
	p.startWorkers(ctx, 3)
	start := time.Now()
	if run := p.dispatch(ctx, "happy"); run.Code != 0 {
		t.Fatalf("dispatcher: %s", run)
	}
	m := p.checkManifest(ctx, "happy")
	if m.Published != len(keys) || m.Duplicates != 0 {
		t.Errorf("dispatch published %d, duplicates %d; want %d, 0", m.Published, m.Duplicates, len(keys))
	}
	for _, cl := range p.fleet.Clusters() {
		if inv, err := p.st.Inventory(ctx, cl); err != nil || inv.Pods != p.fleet.Pods(cl) {
			t.Errorf("inventory of %s: %d pods (%v), want %d", cl, inv.Pods, err, p.fleet.Pods(cl))
		}
	}
	results := p.waitResults(ctx, keys, 3*time.Minute)
	t.Logf("%d images dispatched and scanned by 3 workers in %s", len(results), time.Since(start).Round(time.Millisecond))

	workers := map[string]int{}
	for k, r := range results {
		if r.Status != contract.StatusScanned {
			t.Errorf("result %s: %s %+v", k, r.Status, r.Failure)
		}
		if r.DB.UpdatedAt.Unix() != p.dbInfo.UpdatedAt.Unix() {
			t.Errorf("result %s used DB of %s, want the fixture DB of %s", k, r.DB.UpdatedAt, p.dbInfo.UpdatedAt)
		}
		workers[r.Worker]++
	}
	t.Logf("results per worker: %v", workers)
	if len(workers) < 2 {
		t.Errorf("results per worker %v: the jobs were not shared between the workers", workers)
	}

	// A second dispatcher of the same cycle (another cluster's CronJob, a
	// retry) publishes nothing: every image already has a result from the
	// scanner and DB the workers published as their identity, so none is
	// even queued, and the manifest lists them all as reused.
	if run := p.dispatch(ctx, "happy-again"); run.Code != 0 {
		t.Fatalf("second dispatcher: %s", run)
	}
	if m2 := p.checkManifest(ctx, "happy-again"); m2.Published != 0 || m2.Reused != len(keys) || len(m2.ReusedKeys) != len(keys) {
		t.Errorf("second dispatch of the cycle published %d, reused %d (%d keys listed); want 0, %d",
			m2.Published, m2.Reused, len(m2.ReusedKeys), len(keys))
	}
	info, err := p.res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("jobs stream holds %d jobs after the run, want 0", info.State.Msgs)
	}

	rr := p.runReporter(ctx, "happy")
	if rr.Code != 0 {
		t.Errorf("reporter exit status %d, want 0 (complete, nothing breached)\n%s", rr.Code, rr)
	}
	rep := rr.report
	if !rep.Complete || rep.Summary.Images != len(keys) || rep.Summary.ImagesScanned != len(keys) ||
		rep.Summary.ImagesFailed != 0 || rep.Summary.ImagesNotScanned != 0 || rep.Summary.Clusters != 3 {
		t.Errorf("report summary = %+v, complete=%v; want %d images all scanned over 3 clusters", rep.Summary, rep.Complete, len(keys))
	}
	checkFindings(t, rep, p.fleet.ExpectedFindings())
	t.Logf("report: %d findings over %d images, exit status %d", len(rep.Findings), rep.Summary.Images, rr.Code)
	p.checkScannedOnce(ctx, m.Published)

	// The S3 copy (dated and latest) equals the local report.
	s3keys, err := p.s3.List(ctx, bucket, "fleetscan/")
	if err != nil {
		t.Fatal(err)
	}
	var dated, latest string
	for _, k := range s3keys {
		switch {
		case k == "fleetscan/latest/report.json":
			latest = k
		case strings.HasSuffix(k, "/report.json"):
			dated = k
		}
	}
	if dated == "" || latest == "" {
		t.Fatalf("S3 holds %v; want a dated and a latest report.json", s3keys)
	}
	for _, k := range []string{dated, latest} {
		body, err := p.s3.Get(ctx, bucket, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, rr.raw) {
			t.Errorf("s3://%s/%s differs from the local report.json (%d vs %d bytes)", bucket, k, len(body), len(rr.raw))
		}
	}
}

// smallFleet pushes a few images (one of them multi-arch) to one cluster
// of two nodes: 5 keys, quick to scan, for the fault scenarios.
func (p *pipeline) smallFleet(ctx context.Context, names ...string) {
	p.t.Helper()
	if len(names) == 0 {
		names = []string{"alpine-3.18", "alpine-curl", "node-app", "python-app"}
	}
	var specs []fixture.ImageSpec
	for _, s := range fixture.SampleImages() {
		if slices.Contains(names, s.Name) {
			specs = append(specs, s)
		}
	}
	p.push(ctx, specs...)
	f := harness.NewFleet()
	f.AddNode("prod", "amd64-1", linuxAMD64)
	f.AddNode("prod", "arm64-1", linuxARM64)
	for _, s := range specs {
		img := p.images[s.Name]
		f.Deployment("prod", "apps", s.Name, "amd64-1", 2, img, p.ref(img, s.Tags[0]), harness.IDContainerd)
		if s.MultiArch() {
			f.Deployment("prod", "apps", s.Name+"-arm", "arm64-1", 1, img, p.ref(img, s.Tags[0]), harness.IDContainerd)
		}
	}
	p.fleet = f
}

// keyOf returns the expected amd64 key of a pushed image.
func (p *pipeline) keyOf(name string) contract.ImageKey {
	return contract.ImageKey{Digest: p.images[name].Digest, Platform: linuxAMD64}
}

// complete runs the reporter and asserts a complete report with exactly the
// fleet's findings and exit status 0.
func (p *pipeline) complete(ctx context.Context, runID string) reporterRun {
	p.t.Helper()
	rr := p.runReporter(ctx, runID)
	keys := len(p.fleet.ExpectedKeys())
	if rr.Code != 0 || !rr.report.Complete || rr.report.Summary.ImagesScanned != keys {
		p.t.Errorf("reporter: exit %d, complete=%v, %d of %d images scanned; want 0, complete, all\n%s",
			rr.Code, rr.report.Complete, rr.report.Summary.ImagesScanned, keys, rr)
	}
	checkFindings(p.t, rr.report, p.fleet.ExpectedFindings())
	return rr
}
