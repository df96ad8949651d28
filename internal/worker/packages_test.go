package worker

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestWorkerStoresPackageRecords: with every scanned result the worker
// stores the image's package record (all its packages, vulnerable or not,
// with PURLs), and a new scan replaces it together with the result.
func TestWorkerStoresPackageRecords(t *testing.T) {
	e := newEnv(t, nil)
	e.start(t, e.config(t), nil)
	pkgs, err := pkgindex.NewStore(e.nats.Res, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	job := e.job(t, "node-app", "c1")
	e.publish(t, job)
	res := e.waitResult(t, job.ImageKey, time.Minute, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, ok, err := pkgs.Packages(ctx, job.ImageKey)
	if err != nil || !ok {
		t.Fatalf("no package record after the scan: %v", err)
	}
	have := map[string]contract.Package{}
	for _, p := range rec.Packages {
		have[p.Name] = p
	}
	if rec.ImageKey != job.ImageKey || rec.Scanner != res.Scanner || rec.OS == nil || rec.OS.Name != "3.19.0" ||
		rec.ManifestDigest == "" || have["lodash"].PURL != "pkg:npm/lodash@4.17.20" || have["body-parser"].Version != "1.20.1" ||
		have["musl"].Class != contract.ClassOSPackages {
		t.Fatalf("record: key %v scanner %v OS %v manifest %q, lodash %+v body-parser %+v", rec.ImageKey, rec.Scanner, rec.OS,
			rec.ManifestDigest, have["lodash"], have["body-parser"])
	}
	first, err := e.nats.Res.Packages.GetLastMsgForSubject(ctx, topology.PackagesSubject(job.ImageKey))
	if err != nil {
		t.Fatal(err)
	}

	rescan := e.job(t, "node-app", "c2")
	rescan.Rescan = true
	e.publish(t, rescan)
	e.waitResult(t, job.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c2" })
	deadline := time.Now().Add(10 * time.Second)
	for {
		again, err := e.nats.Res.Packages.GetLastMsgForSubject(ctx, topology.PackagesSubject(job.ImageKey))
		if err != nil {
			t.Fatal(err)
		}
		if again.Sequence > first.Sequence {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rescan did not replace the package record (sequence %d)", again.Sequence)
		}
		time.Sleep(20 * time.Millisecond)
	}
	info, err := e.nats.Res.Packages.Info(ctx)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("records stream holds %d messages, want the one latest record (%v)", info.State.Msgs, err)
	}
}
