package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/report/reporttest"
	"github.com/fleetscan/fleetscan/internal/rss"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// reporterChildEnv makes the test binary run one reporter run (see
// TestMain and runReporterChild) instead of running tests, so a benchmark
// can measure the peak RSS of the reporter alone: not the NATS server's,
// nor that of the setup that stored the fleet.
const reporterChildEnv = "FLEETSCAN_BENCH_REPORTER"

// reporterLogEnv, when set, makes the reporter child log to stderr (with
// GODEBUG=gctrace=1, the live heap by phase).
const reporterLogEnv = "FLEETSCAN_BENCH_REPORTER_LOG"

// reporterProfileEnv names a file the reporter child writes its heap
// profile to after the run (for go tool pprof: -sample_index=alloc_space
// shows what the run allocated).
const reporterProfileEnv = "FLEETSCAN_BENCH_REPORTER_MEMPROFILE"

// reporterWrittenProfileEnv names a file the reporter child writes its
// heap profile to as soon as the report files are written (inuse_space:
// what the report model holds then).
const reporterWrittenProfileEnv = "FLEETSCAN_BENCH_REPORTER_WRITTEN_MEMPROFILE"

// reporterCPUProfileEnv names a file the reporter child writes the CPU
// profile of its run to.
const reporterCPUProfileEnv = "FLEETSCAN_BENCH_REPORTER_CPUPROFILE"

// reporterChildJob is what the child process runs and reports.
type reporterChildJob struct {
	URL, OutDir, Now, SLAConfig string
	// Findings, Writes and PeakRSS are the child's answer.
	Findings, Writes int
	PeakRSS          int64
}

// BenchmarkReporter1M runs the whole reporter on the 1,000,000-finding
// fleet of issue 20 (reporttest.Large: 10,000 digests, 50 clusters, 500,000
// pods) in steady state — every first-seen record exists — with the KEV
// and EPSS feeds and every output format. The reporter runs in a child
// process: peak-RSS-MiB is its maximum resident set size, neither the
// NATS server's (another child) nor the setup's.
func BenchmarkReporter1M(b *testing.B) { benchReporter(b, reporttest.Large) }

// BenchmarkReporter200k is BenchmarkReporter1M on the default
// 200,000-finding fleet (that of BenchmarkRun200k).
func BenchmarkReporter200k(b *testing.B) { benchReporter(b, reporttest.Default) }

func benchReporter(b *testing.B, fleet reporttest.Fleet) {
	js, res := startNATSProcess(b)
	job := reporterChildJob{URL: js.Conn().ConnectedUrl(), OutDir: filepath.Join(b.TempDir(), "report"),
		Now: "2025-03-10T06:00:00Z", SLAConfig: filepath.Join(b.TempDir(), "sla.yaml")}
	if err := os.WriteFile(job.SLAConfig, []byte("epss: {percentile: 0.9, days: 14}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	storeFleet(b, store.New(js, res), fleet)
	publishBenchFeeds(b, res)
	// The first run records every first-seen date; the benchmark measures
	// the daily steady state.
	first, _, _ := runReporterProcess(b, job)
	b.Logf("first run: %d first-seen writes", first.Writes)
	var out reporterChildJob
	var maxRSS int64
	var cpu time.Duration
	for b.Loop() {
		out, maxRSS, cpu = runReporterProcess(b, job)
	}
	if out.Findings != fleet.Findings() {
		b.Fatalf("%d findings, want %d", out.Findings, fleet.Findings())
	}
	b.ReportMetric(float64(maxRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(out.Writes), "first-seen-writes")
	// CPU time tells more than the wall time on a shared machine.
	b.ReportMetric(cpu.Seconds(), "cpu-s")
}

// storeFleet stores the fleet's inventories and results as a dispatcher
// run and its workers would, one at a time so the setup stays small.
func storeFleet(b *testing.B, st *store.Store, fleet reporttest.Fleet) {
	b.Helper()
	ctx := b.Context()
	now := time.Now().UTC()
	m := contract.RunManifest{RunID: "bench-run", Cycle: "c1", CreatedAt: now.Add(-time.Hour)}
	for c := range fleet.Clusters {
		inv := contract.Inventory{RunID: m.RunID, Cycle: m.Cycle, Cluster: reporttest.ClusterName(c),
			CollectedAt: m.CreatedAt, Entries: fleet.Entries(c)}
		inv.Pods = len(inv.Entries)
		if err := st.PutInventory(ctx, inv); err != nil {
			b.Fatal(err)
		}
		m.Clusters = append(m.Clusters, contract.ClusterStatus{Name: inv.Cluster, OK: true, Pods: inv.Pods})
	}
	for i := range fleet.Images {
		m.Expected = append(m.Expected, fleet.Key(i))
		if err := st.PutResult(ctx, fleet.Result(i, m.Cycle, now)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.PutManifest(ctx, m); err != nil {
		b.Fatal(err)
	}
}

// runReporterProcess runs the reporter once in a child process and returns
// its answer, maximum resident set size (bytes) and CPU time (user + system).
func runReporterProcess(b *testing.B, job reporterChildJob) (reporterChildJob, int64, time.Duration) {
	b.Helper()
	spec, err := json.Marshal(job)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), reporterChildEnv+"="+string(spec))
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("reporter child: %v", err)
	}
	var out reporterChildJob
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		b.Fatalf("reporter child answered %q: %v", stdout.String(), err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return out, out.PeakRSS, cpu
	}
	return out, ru.Maxrss << 10, cpu // kilobytes on Linux
}

// runReporterChild is the child process of runReporterProcess: it runs
// the reporter against the NATS server spec names and prints its answer.
func runReporterChild(spec string) error {
	var job reporterChildJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return err
	}
	nc, err := nats.Connect(job.URL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	res, err := topology.Ensure(ctx, js, topology.Defaults())
	if err != nil {
		return err
	}
	cfg := Defaults()
	cfg.OutDir, cfg.Now, cfg.SLAConfig = job.OutDir, job.Now, job.SLAConfig
	log := zap.NewNop()
	if os.Getenv(reporterLogEnv) != "" {
		if log, err = zap.NewDevelopment(); err != nil { // stderr: stdout is the answer
			return err
		}
	}
	deps := Deps{Store: store.New(js, res), FirstSeen: res.FirstSeen, FirstSeenStream: res.FirstSeenStream, Log: log, Feeds: feeds.ObjectStoreSource(res.Feeds)}
	if path := os.Getenv(reporterWrittenProfileEnv); path != "" {
		deps.OnWritten = func(Outcome) {
			if err := writeHeapProfile(path); err != nil {
				log.Warn("heap profile", zap.Error(err))
			}
		}
	}
	stop, err := startCPUProfile(os.Getenv(reporterCPUProfileEnv))
	if err != nil {
		return err
	}
	o, err := Run(ctx, cfg, deps)
	stop()
	if err != nil {
		return err
	}
	job.Findings = o.Report.Summary.Findings
	job.Writes = o.FirstSeenWrites
	if job.PeakRSS, err = rss.Peak(); err != nil {
		return err
	}
	if path := os.Getenv(reporterProfileEnv); path != "" {
		if err := writeHeapProfile(path); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(job)
}

// startCPUProfile profiles the CPU into path until stop is called (path
// empty: nothing).
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile is as of the last collection
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func exitChild(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
