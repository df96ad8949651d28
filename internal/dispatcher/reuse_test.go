package dispatcher

import (
	"slices"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestRunReusesCurrentResults: keys whose stored result has the workers'
// scanner, options and DB get no job and are listed in the manifest as
// reused; everything else is published. Failures, results of another DB,
// an identity whose DB is due for an update, and --rescan reuse nothing.
func TestRunReusesCurrentResults(t *testing.T) {
	amd := contract.Platform{OS: "linux", Architecture: "amd64"}
	arm := contract.Platform{OS: "linux", Architecture: "arm64"}
	kA, kBarm, kBamd := contract.ImageKey{Digest: dA, Platform: amd}, contract.ImageKey{Digest: dB, Platform: arm}, contract.ImageKey{Digest: dB, Platform: amd}
	scanner := contract.ScannerInfo{Name: "trivy", Version: "0.74.0", Options: "scanners=vuln"}
	db := contract.DBInfo{Version: 2, UpdatedAt: testNow.Add(-6 * time.Hour), NextUpdate: testNow.Add(18 * time.Hour)}
	olderDB := contract.DBInfo{Version: 2, UpdatedAt: testNow.Add(-30 * time.Hour), NextUpdate: testNow.Add(-6 * time.Hour)}
	identity := contract.ScannerIdentity{Scanner: scanner, DB: db, Worker: "w-1", PublishedAt: testNow.Add(-time.Hour)}

	tests := []struct {
		name       string
		identity   *contract.ScannerIdentity
		rescan     bool
		wantReused []contract.ImageKey
	}{
		{name: "same scanner and DB", identity: &identity, wantReused: []contract.ImageKey{kA}},
		{name: "no worker identity yet", identity: nil},
		{name: "DB due for an update", identity: func() *contract.ScannerIdentity {
			id := identity
			id.DB.NextUpdate = testNow.Add(-time.Minute)
			return &id
		}()},
		{name: "other scanner options", identity: func() *contract.ScannerIdentity {
			id := identity
			id.Scanner.Options = "scanners=vuln;ignore-unfixed"
			return &id
		}()},
		{name: "--rescan", identity: &identity, rescan: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := natstest.Start(t)
			ctx := t.Context()
			st := store.New(env.JS, env.Res)
			for _, r := range []contract.ScanResult{
				{RunID: "old", Cycle: "2026-11-26", ImageKey: kA, Status: contract.StatusScanned, CompletedAt: testNow.Add(-24 * time.Hour), Scanner: scanner, DB: db, Findings: []contract.Finding{}},
				{RunID: "old", Cycle: "2026-11-26", ImageKey: kBarm, Status: contract.StatusScanned, CompletedAt: testNow.Add(-24 * time.Hour), Scanner: scanner, DB: olderDB, Findings: []contract.Finding{}},
				contract.NewFailedResult(contract.NewScanJob("old", "2026-11-26", kBamd, "redis@"+dB, nil, testNow), contract.FailureNotFound, "gone", 1, testNow.Add(-24*time.Hour)),
			} {
				if r.Status == contract.StatusFailed {
					r.Scanner, r.DB = scanner, db
				}
				if err := st.PutResult(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			if tc.identity != nil {
				if err := st.PutScannerIdentity(ctx, *tc.identity); err != nil {
					t.Fatal(err)
				}
			}
			deps := runDeps(t, env, fleet())
			deps.Reuse = st
			cfg := testConfig("2026-11-27")
			cfg.Rescan = tc.rescan
			m, err := Run(ctx, cfg, deps)
			if err != nil {
				t.Fatal(err)
			}
			if m.Reused != len(tc.wantReused) || !slices.Equal(m.ReusedKeys, tc.wantReused) {
				t.Errorf("manifest reused %d %v, want %v", m.Reused, m.ReusedKeys, tc.wantReused)
			}
			if len(m.Expected) != 3 {
				t.Errorf("manifest expects %d keys, want all 3 (reused ones included)", len(m.Expected))
			}
			stored, err := st.Manifest(ctx, m.RunID)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Reused != m.Reused || !slices.Equal(stored.ReusedKeys, m.ReusedKeys) {
				t.Errorf("stored manifest reused %d %v, want %d %v", stored.Reused, stored.ReusedKeys, m.Reused, m.ReusedKeys)
			}
			jobs := storedJobs(t, env)
			if len(jobs)+len(tc.wantReused) != 3 || m.Published != len(jobs) {
				t.Errorf("%d jobs stored, manifest says %d published; want %d", len(jobs), m.Published, 3-len(tc.wantReused))
			}
			for _, j := range jobs {
				if slices.Contains(tc.wantReused, j.ImageKey) {
					t.Errorf("job published for reused key %s", j.ImageKey)
				}
				if j.Rescan != tc.rescan {
					t.Errorf("job %s rescan=%v, want %v", j.ImageKey, j.Rescan, tc.rescan)
				}
			}
		})
	}
}

// TestRescanIsNotDroppedAsDuplicate: a --rescan run in a cycle whose jobs
// were already published still queues every key.
func TestRescanIsNotDroppedAsDuplicate(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	cfg := testConfig("2026-11-27")
	if _, err := Run(ctx, cfg, runDeps(t, env, fleet())); err != nil {
		t.Fatal(err)
	}
	cfg.Rescan = true
	m, err := Run(ctx, cfg, runDeps(t, env, fleet()))
	if err != nil {
		t.Fatal(err)
	}
	if m.Published != 3 || m.Duplicates != 0 {
		t.Fatalf("--rescan in the same cycle published %d (duplicates %d), want 3", m.Published, m.Duplicates)
	}
}
