package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// shape1M is BenchmarkDispatch1MPods' fleet (issue 20): 50 clusters of
// 20,000 pods, 10,000 app images over the fleet (each cluster runs 2,000).
var shape1M = benchShape{clusters: 50, podsPerCluster: 20_000, images: 10_000, replicas: 10, nodes: 100}

// dispatchChildEnv makes the test binary run one dispatch (the JSON
// childDispatch in the variable) and print its childOutcome instead of
// running tests, so a benchmark measures the dispatcher's peak RSS alone:
// not the fleet generator's, not the NATS server's.
const dispatchChildEnv = "FLEETSCAN_BENCH_DISPATCH_CHILD"

type childDispatch struct {
	NATSURL     string   `json:"natsUrl"`
	PodFiles    []string `json:"podFiles"`
	NodeFiles   []string `json:"nodeFiles"`
	RunID       string   `json:"runId"`
	Concurrency int      `json:"concurrency"`
}

type childOutcome struct {
	Pods      int   `json:"pods"`
	Expected  int   `json:"expected"`
	Published int   `json:"published"`
	PeakRSS   int64 `json:"peakRss"`
	// CPU is the child's user+system time, filled by the parent.
	CPU time.Duration `json:"-"`
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(dispatchChildEnv); spec != "" {
		out, err := runChildDispatch(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChildDispatch is the dispatcher binary's work: open the sources, run,
// report the manifest's counts and the process's peak RSS.
func runChildDispatch(spec string) (childOutcome, error) {
	var c childDispatch
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return childOutcome{}, err
	}
	ctx := context.Background()
	nc, err := nats.Connect(c.NATSURL)
	if err != nil {
		return childOutcome{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return childOutcome{}, err
	}
	res, err := topology.Ensure(ctx, js, topology.Defaults())
	if err != nil {
		return childOutcome{}, err
	}
	cfg := Defaults()
	cfg.ResolveTags, cfg.ClusterConcurrency = false, c.Concurrency
	cfg.Cycle, cfg.RunID = c.RunID, c.RunID
	cfg.Sources.InventoryFiles, cfg.Sources.NodesFiles = c.PodFiles, c.NodeFiles
	if err := cfg.Validate(); err != nil {
		return childOutcome{}, err
	}
	sources, failed, err := cfg.Sources.Open(zap.NewNop())
	if err != nil || len(failed) > 0 {
		return childOutcome{}, fmt.Errorf("open sources: %v %v", err, failed)
	}
	deps := Deps{Sources: sources, Publisher: queue.NewPublisher(js), Store: store.New(js, res), Log: zap.NewNop()}
	m, err := Run(ctx, cfg, deps)
	if err != nil {
		return childOutcome{}, err
	}
	out := childOutcome{Expected: len(m.Expected), Published: m.Published}
	for _, cs := range m.Clusters {
		out.Pods += cs.Pods
	}
	out.PeakRSS, err = rss.Peak()
	return out, err
}

// BenchmarkDispatch1MPods dispatches 1,000,000 pods of 50 clusters from
// inventory files (≈4 KB of kubectl JSON a pod, ≈80 MB a cluster) with
// ≈10,000 unique digests: decode, attribute, dedup, store 50 inventories and
// publish the jobs to JetStream. The dispatcher runs in a child process (the
// test binary, see TestMain) with the default --cluster-concurrency, so
// peak-RSS-MiB is the dispatcher's own VmHWM: the files are generated
// beforehand, streaming to disk, and the JetStream server runs in this
// process. s/dispatch is the child's wall time, process start included;
// cpu-s/dispatch its user+system CPU time, which a loaded machine inflates
// less.
//
// With $FLEETSCAN_BENCH_FLEET_DIR set, the files are written there and
// reused by later runs (≈4 GB); $FLEETSCAN_BENCH_CLUSTER_CONCURRENCY sets
// --cluster-concurrency.
func BenchmarkDispatch1MPods(b *testing.B) {
	dir := os.Getenv("FLEETSCAN_BENCH_FLEET_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	podFiles, nodeFiles := benchFleetFiles(b, dir, shape1M)
	env := natstest.Start(b)
	want := shape1M.clusters * shape1M.podsPerCluster
	concurrency := Defaults().ClusterConcurrency
	if v := os.Getenv("FLEETSCAN_BENCH_CLUSTER_CONCURRENCY"); v != "" {
		if _, err := fmt.Sscan(v, &concurrency); err != nil {
			b.Fatalf("$FLEETSCAN_BENCH_CLUSTER_CONCURRENCY: %v", err)
		}
	}
	var last childOutcome
	var wall, cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		spec, _ := json.Marshal(childDispatch{NATSURL: env.Server.URL(), PodFiles: podFiles, NodeFiles: nodeFiles,
			RunID: fmt.Sprintf("bench1m-%d", i), Concurrency: concurrency})
		start := time.Now()
		last = runDispatchChild(b, string(spec))
		wall += time.Since(start)
		cpu += last.CPU
		if last.Pods != want || last.Expected < shape1M.images || last.Published != last.Expected {
			b.Fatalf("pods %d (want %d), expected keys %d, published %d", last.Pods, want, last.Expected, last.Published)
		}
	}
	b.StopTimer()
	st, err := env.Res.Inventories.Status(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("unique keys %d, published %d, peak RSS %.0f MiB, inventories stored %.1f MiB", last.Expected, last.Published,
		float64(last.PeakRSS)/(1<<20), float64(st.Size())/(1<<20))
	b.ReportMetric(float64(st.Size())/(1<<20), "inventories-MiB")
	b.ReportMetric(wall.Seconds()/float64(b.N), "s/dispatch")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/dispatch")
	b.ReportMetric(float64(want)*float64(b.N)/wall.Seconds(), "pods/s")
	b.ReportMetric(float64(last.PeakRSS)/(1<<20), "peak-RSS-MiB")
}

// benchFleetFiles writes the fleet's files into dir, or reuses them when a
// previous run completed them (its marker file exists).
func benchFleetFiles(b *testing.B, dir string, sh benchShape) (podFiles, nodeFiles []string) {
	b.Helper()
	marker := filepath.Join(dir, fmt.Sprintf("complete-%d-%d-%d", sh.clusters, sh.podsPerCluster, sh.images))
	if _, err := os.Stat(marker); err == nil {
		for c := range sh.clusters {
			name := fmt.Sprintf("cluster-%02d", c)
			podFiles = append(podFiles, name+"="+filepath.Join(dir, name+".json"))
			nodeFiles = append(nodeFiles, name+"="+filepath.Join(dir, name+"-nodes.json"))
		}
		return podFiles, nodeFiles
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	podFiles, nodeFiles = writeBenchFleet(b, dir, sh)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated %d pod files in %s", len(podFiles), time.Since(start).Round(time.Millisecond))
	return podFiles, nodeFiles
}

// runDispatchChild runs one dispatch in a child process.
func runDispatchChild(b *testing.B, spec string) childOutcome {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), dispatchChildEnv+"="+spec)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("dispatch child: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var out childOutcome
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		b.Fatalf("dispatch child output %q: %v", stdout.String(), err)
	}
	out.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return out
}
