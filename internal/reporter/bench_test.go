package reporter

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// natsStoreEnv makes the test binary serve NATS JetStream instead of
// running tests (see TestMain), so benchmarks can measure the reporter's
// memory without the server's.
const natsStoreEnv = "FLEETSCAN_BENCH_NATS_STORE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(natsStoreEnv); dir != "" {
		srv, err := natsembed.Start(natsembed.Config{StoreDir: dir}, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(srv.URL())
		_, _ = io.Copy(io.Discard, os.Stdin) // serve until the parent closes stdin
		srv.Shutdown()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startNATSProcess runs JetStream in a child process and connects to it.
func startNATSProcess(b *testing.B) (jetstream.JetStream, *topology.Resources) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), natsStoreEnv+"="+b.TempDir())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	url, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("NATS child: %v", err)
	}
	nc, err := nats.Connect(strings.TrimSpace(url))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	res, err := topology.Ensure(b.Context(), js, topology.Defaults())
	if err != nil {
		b.Fatal(err)
	}
	return js, res
}

// BenchmarkRun200k runs the whole reporter against real JetStream (a
// nats-server in a child process) holding 12 cluster inventories and 2,000
// results with 200,000 findings: scope, result reads, first-seen clock
// (steady state: the records exist), build and every output format.
// peak-RSS-MiB is the benchmark process's, so it covers the reporter (and
// the setup that stored the results) but not the server.
func BenchmarkRun200k(b *testing.B) {
	js, res := startNATSProcess(b)
	st := store.New(js, res)
	ctx := b.Context()
	now := time.Now().UTC()
	m := contract.RunManifest{RunID: "bench-run", Cycle: "c1", CreatedAt: now.Add(-time.Hour)}
	for c := range reporttest.Clusters {
		inv := contract.Inventory{RunID: m.RunID, Cycle: m.Cycle, Cluster: reporttest.ClusterName(c),
			CollectedAt: m.CreatedAt, Entries: reporttest.Entries(c)}
		inv.Pods = len(inv.Entries)
		if err := st.PutInventory(ctx, inv); err != nil {
			b.Fatal(err)
		}
		m.Clusters = append(m.Clusters, contract.ClusterStatus{Name: inv.Cluster, OK: true, Pods: inv.Pods})
	}
	for i := range reporttest.Images {
		m.Expected = append(m.Expected, reporttest.Key(i))
		if err := st.PutResult(ctx, reporttest.Result(i, m.Cycle, now)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.PutManifest(ctx, m); err != nil {
		b.Fatal(err)
	}
	cfg := Defaults()
	cfg.OutDir = filepath.Join(b.TempDir(), "report")
	cfg.Now = "2025-03-10T06:00:00Z"
	deps := Deps{Store: st, FirstSeen: res.FirstSeen, Log: zap.NewNop()}
	// The first run records every first-seen date; the benchmark measures
	// the daily steady state.
	if _, err := Run(ctx, cfg, deps); err != nil {
		b.Fatal(err)
	}
	var o Outcome
	for b.Loop() {
		var err error
		if o, err = Run(ctx, cfg, deps); err != nil {
			b.Fatal(err)
		}
	}
	if o.Report.Summary.Findings != reporttest.Images*reporttest.PerImage {
		b.Fatalf("%d findings", o.Report.Summary.Findings)
	}
	if hwm, err := rss.Peak(); err == nil {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	}
}
