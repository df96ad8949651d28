package reporter

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

var amd64 = contract.Platform{OS: "linux", Architecture: "amd64"}

func key(c byte) contract.ImageKey {
	return contract.ImageKey{Digest: "sha256:" + strings.Repeat(string(c), 64), Platform: amd64}
}

// fleetEnv is a real embedded JetStream with fleetscan's topology and the
// store the dispatcher and workers write to.
type fleetEnv struct {
	t   *testing.T
	env *natstest.Env
	st  *store.Store
	ctx context.Context
}

func newFleet(t *testing.T) *fleetEnv {
	t.Helper()
	env := natstest.Start(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return &fleetEnv{t: t, env: env, st: store.New(env.JS, env.Res), ctx: ctx}
}

type container struct {
	ns, kind, name, image string
	key                   contract.ImageKey
	unresolved            string // reason; key ignored
}

// dispatch stores what a dispatcher run stores: one inventory per cluster
// and the run manifest.
func (f *fleetEnv) dispatch(runID, cycle string, created time.Time, clusters map[string][]container, failed map[string]string) contract.RunManifest {
	f.t.Helper()
	m := contract.RunManifest{RunID: runID, Cycle: cycle, CreatedAt: created}
	seen := map[contract.ImageKey]bool{}
	for name, cs := range clusters {
		inv := contract.Inventory{RunID: runID, Cycle: cycle, Cluster: name, CollectedAt: created.Add(time.Second), Pods: len(cs)}
		for _, c := range cs {
			e := contract.InventoryEntry{Namespace: c.ns, Pod: c.name + "-x", Workload: contract.Workload{Kind: c.kind, Name: c.name},
				Container: "main", ContainerKind: contract.ContainerRegular, Image: c.image, Platform: amd64}
			if c.unresolved != "" {
				e.Resolution, e.Reason = contract.Unresolved, c.unresolved
			} else {
				e.Digest, e.Resolution = c.key.Digest, contract.ResolvedStatus
				if !seen[c.key] {
					seen[c.key] = true
					m.Expected = append(m.Expected, c.key)
				}
			}
			inv.Entries = append(inv.Entries, e)
		}
		if err := f.st.PutInventory(f.ctx, inv); err != nil {
			f.t.Fatal(err)
		}
		m.Clusters = append(m.Clusters, contract.ClusterStatus{Name: name, OK: true, Pods: len(cs), Containers: len(cs)})
	}
	for name, reason := range failed {
		m.Clusters = append(m.Clusters, contract.ClusterStatus{Name: name, OK: false, Error: reason})
	}
	if err := f.st.PutManifest(f.ctx, m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

type vuln struct {
	id, sev, pkg, installed, fixed string
}

// scanned stores a worker's result for k.
func (f *fleetEnv) scanned(k contract.ImageKey, cycle string, at time.Time, vulns ...vuln) {
	f.t.Helper()
	if err := f.store(k, cycle, at, vulns...); err != nil {
		f.t.Fatal(err)
	}
}

// store is scanned for goroutines other than the test's: it returns the
// error instead of failing the test.
func (f *fleetEnv) store(k contract.ImageKey, cycle string, at time.Time, vulns ...vuln) error {
	r := contract.ScanResult{RunID: "run", Cycle: cycle, ImageKey: k, Reference: "pulled.example/" + k.Digest[7:15],
		Status: contract.StatusScanned, CompletedAt: at, Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB: contract.DBInfo{Version: 2, UpdatedAt: at.Add(-time.Hour)}}
	for _, v := range vulns {
		r.Findings = append(r.Findings, contract.Finding{VulnerabilityID: v.id, Severity: v.sev, PkgName: v.pkg,
			PkgVersion: v.installed, FixedVersion: v.fixed, Title: v.id + " in " + v.pkg})
	}
	return f.st.PutResult(f.ctx, r)
}

// failed stores a worker's failure for k.
func (f *fleetEnv) failed(k contract.ImageKey, cycle string, at time.Time, class contract.FailureClass, reason string) {
	f.t.Helper()
	job := contract.NewScanJob("run", cycle, k, "pulled.example/x@"+k.Digest, nil, at)
	if err := f.st.PutResult(f.ctx, contract.NewFailedResult(job, class, reason, 5, at)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleetEnv) config(now string) Config {
	cfg := Defaults()
	cfg.OutDir = filepath.Join(f.t.TempDir(), "report")
	cfg.Now = now
	cfg.PollInterval = 50 * time.Millisecond
	return cfg
}

func (f *fleetEnv) deps(out *bytes.Buffer) Deps {
	d := Deps{Store: f.st, FirstSeen: f.env.Res.FirstSeen, FirstSeenStream: f.env.Res.FirstSeenStream, Log: zaptest.NewLogger(f.t)}
	if out != nil {
		d.Out = out
	}
	return d
}

func (f *fleetEnv) run(cfg Config) Outcome {
	f.t.Helper()
	o, err := Run(f.ctx, cfg, f.deps(nil))
	if err != nil {
		f.t.Fatal(err)
	}
	return o
}

// csvRows reads report.csv as maps keyed by column.
func csvRows(t *testing.T, dir string) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "report.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, c := range recs[0] {
			m[c] = r[i]
		}
		out = append(out, m)
	}
	return out
}

func rowFor(t *testing.T, rows []map[string]string, cve string) map[string]string {
	t.Helper()
	for _, r := range rows {
		if r["cve_id"] == cve {
			return r
		}
	}
	t.Fatalf("no row for %s in %v", cve, rows)
	return nil
}

func ids(entries []string) string { return strings.Join(entries, ",") }

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return v
}
