package store_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestReuseByFingerprint: results carry their scanner-and-DB fingerprint in
// a header, read back without their findings (inline and claim-checked
// alike); failures carry none; Reusable compares them with the workers'
// identity and reuses nothing without one or once its DB is due.
func TestReuseByFingerprint(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	st.InlineLimit = 64 << 10 // key(1)'s 5,000 findings go to the object store

	scanner := contract.ScannerInfo{Name: "trivy", Version: "0.74.0"}
	db := contract.DBInfo{Version: 2, UpdatedAt: now.Add(-time.Hour), NextUpdate: now.Add(23 * time.Hour)}
	newer := contract.DBInfo{Version: 2, UpdatedAt: now, NextUpdate: now.Add(24 * time.Hour)}

	big := bigResult(key(1), 5000)
	big.DB = db
	small := bigResult(key(2), 3)
	small.DB = db
	other := bigResult(key(3), 3)
	other.DB = newer
	failed := contract.NewFailedResult(contract.NewScanJob("run", "c", key(4), "x@"+key(4).Digest, nil, now), contract.FailureTimeout, "slow", 5, now)
	failed.Scanner, failed.DB = scanner, db
	for _, r := range []contract.ScanResult{big, small, other, failed} {
		if err := st.PutResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	fp := contract.Fingerprint(scanner, db)
	if big.Fingerprint() != fp || failed.Fingerprint() != "" || other.Fingerprint() == fp {
		t.Fatal("fingerprints: a scanned result's must be its scanner and DB's; a failure has none")
	}

	fps, err := st.ResultFingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{key(1).Token(): fp, key(2).Token(): fp, key(3).Token(): other.Fingerprint()}
	if len(fps) != len(want) {
		t.Fatalf("fingerprints %v, want %v", fps, want)
	}
	for k, v := range want {
		if fps[k] != v {
			t.Errorf("fingerprint of %s = %q, want %q", k, fps[k], v)
		}
	}

	for _, tc := range []struct {
		key  contract.ImageKey
		ok   bool
		size int
	}{{key(1), true, 5000}, {key(2), true, 3}, {key(3), false, 0}, {key(4), false, 0}, {key(5), false, 0}} {
		r, ok, err := st.ReusableResult(ctx, tc.key, fp)
		if err != nil || ok != tc.ok || len(r.Findings) != tc.size {
			t.Errorf("ReusableResult(%s) = %d findings, %v, %v; want %d, %v", tc.key, len(r.Findings), ok, err, tc.size, tc.ok)
		}
	}

	keys := []contract.ImageKey{key(1), key(2), key(3), key(4), key(5)}
	r, err := st.Reusable(ctx, keys, now)
	if err != nil || len(r.Keys) != 0 || r.Skipped == "" {
		t.Fatalf("no identity yet: %+v %v; want nothing reused and a reason", r, err)
	}
	if _, err := st.ScannerIdentity(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("identity before any worker: %v, want ErrNotFound", err)
	}
	id := contract.ScannerIdentity{Scanner: scanner, DB: db, Worker: "w", PublishedAt: now}
	if err := st.PutScannerIdentity(ctx, id); err != nil {
		t.Fatal(err)
	}
	r, err = st.Reusable(ctx, keys, now)
	if err != nil || r.Skipped != "" || !slices.Equal(r.Keys, keys[:2]) {
		t.Fatalf("Reusable = %+v %v, want %v", r, err, keys[:2])
	}
	r, err = st.Reusable(ctx, keys, db.NextUpdate)
	if err != nil || len(r.Keys) != 0 || r.Skipped == "" {
		t.Fatalf("at the DB's next update: %+v %v; want nothing reused", r, err)
	}
}
