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

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// natsStoreEnv makes the test binary serve NATS JetStream instead of
// running tests (see TestMain), so benchmarks can measure the reporter's
// memory without the server's.
const natsStoreEnv = "FLEETSCAN_BENCH_NATS_STORE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(reporterChildEnv); spec != "" {
		exitChild(runReporterChild(spec))
	}
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
//
// feeds=none runs without exploit feeds; feeds=kev+epss reads feeds of the
// real sizes (KEV 1,500 entries, EPSS 300,000 rows gzipped) from the
// JetStream object store, as the reporter does in the fleet, and applies
// the KEV and EPSS rules to every row: the difference is what enrichment
// costs (issue 16: under 10 %).
func BenchmarkRun200k(b *testing.B) {
	js, res := startNATSProcess(b)
	st := store.New(js, res)
	ctx := b.Context()
	storeFleet(b, st, reporttest.Default)
	publishBenchFeeds(b, res)
	cfg := Defaults()
	cfg.OutDir = filepath.Join(b.TempDir(), "report")
	cfg.Now = "2025-03-10T06:00:00Z"
	cfg.SLAConfig = filepath.Join(b.TempDir(), "sla.yaml")
	if err := os.WriteFile(cfg.SLAConfig, []byte("epss: {percentile: 0.9, days: 14}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name string
		src  feeds.Source
	}{{"feeds=none", nil}, {"feeds=kev+epss", feeds.ObjectStoreSource(res.Feeds)}} {
		b.Run(v.name, func(b *testing.B) {
			deps := Deps{Store: st, FirstSeen: res.FirstSeen, FirstSeenStream: res.FirstSeenStream, Log: zap.NewNop(), Feeds: v.src}
			// The first run records every first-seen date; the benchmark
			// measures the daily steady state.
			if _, err := Run(ctx, cfg, deps); err != nil {
				b.Fatal(err)
			}
			var o Outcome
			cpu0, _ := rss.CPU()
			n := 0
			for b.Loop() {
				n++
				var err error
				if o, err = Run(ctx, cfg, deps); err != nil {
					b.Fatal(err)
				}
			}
			if o.Report.Summary.Findings != reporttest.Images*reporttest.PerImage {
				b.Fatalf("%d findings", o.Report.Summary.Findings)
			}
			if v.src != nil && (o.Report.Summary.KEV == 0 || o.Report.Summary.FeedsDegraded != 0) {
				b.Fatalf("feeds not applied: %+v", o.Report.Summary)
			}
			if cpu1, err := rss.CPU(); err == nil {
				b.ReportMetric((cpu1-cpu0).Seconds()/float64(n), "cpu-s/op")
			}
			b.ReportMetric(float64(o.Report.Summary.KEV), "kev-rows")
			if hwm, err := rss.Peak(); err == nil {
				b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
			}
		})
	}
}

// publishBenchFeeds publishes feeds of the real sizes (feedstest.RealSize)
// to the object store: EPSS scores for 300,000 CVEs (the 5,000 of package
// reporttest's fleet among them) and 1,500 KEV entries, one in four of the
// fleet's CVEs among them, fetched the day before the benchmark's --now.
func publishBenchFeeds(b *testing.B, res *topology.Resources) {
	b.Helper()
	kevJSON, epssCSV, err := feedstest.RealSize(reporttest.VulnerabilityIDs())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	cfg := feeds.Defaults()
	cfg.KEVURL, cfg.EPSSURL = filepath.Join(dir, "kev.json"), filepath.Join(dir, "epss.csv.gz")
	if err := os.WriteFile(cfg.KEVURL, kevJSON, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(cfg.EPSSURL, feedstest.Gzip(epssCSV), 0o644); err != nil {
		b.Fatal(err)
	}
	cache := b.TempDir()
	u := &feeds.Updater{Config: cfg, CacheDir: cache, Log: zap.NewNop(),
		Now: func() time.Time { return time.Date(2025, 3, 9, 18, 0, 0, 0, time.UTC) }}
	r, err := u.Update(b.Context())
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		b.Fatal(err)
	}
	if _, err := feeds.Publish(b.Context(), res.Feeds, feeds.DirSource(cache), zap.NewNop()); err != nil {
		b.Fatal(err)
	}
}
