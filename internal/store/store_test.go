package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

var now = time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)

func key(i int) contract.ImageKey {
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	return contract.ImageKey{Digest: "sha256:" + hex.EncodeToString(h[:]), Platform: contract.DefaultPlatform}
}

func bigResult(k contract.ImageKey, findings int) contract.ScanResult {
	r := contract.ScanResult{
		SchemaVersion: contract.ResultSchemaVersion, RunID: "run", Cycle: "c", ImageKey: k,
		Status: contract.StatusScanned, CompletedAt: now, Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
	}
	desc := strings.Repeat("a long advisory description; ", 40)
	for i := range findings {
		r.Findings = append(r.Findings, contract.Finding{
			VulnerabilityID: fmt.Sprintf("CVE-2026-%05d", i), PkgName: fmt.Sprintf("pkg-%d", i%300), PkgVersion: "1.0.0",
			FixedVersion: "1.0.1", Severity: "HIGH", Title: "title", Description: desc,
			References: []string{"https://example.org/a", "https://example.org/b"},
		})
	}
	return r
}

func TestLargeResultRoundTripsThroughObjectStore(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	r := bigResult(key(1), 5000)
	data, _ := r.Encode()
	if len(data) < 5<<20 {
		t.Fatalf("fixture is %d bytes, want >= 5 MiB", len(data))
	}
	if err := st.PutResult(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := st.Result(ctx, r.ImageKey)
	if err != nil {
		t.Fatal(err)
	}
	gotData, _ := got.Encode()
	if string(gotData) != string(data) {
		t.Fatalf("5 MiB result changed in transit (%d vs %d bytes)", len(gotData), len(data))
	}
	// A later small result for the same key replaces it.
	small := bigResult(r.ImageKey, 1)
	small.RunID = "run-2"
	if err := st.PutResult(ctx, small); err != nil {
		t.Fatal(err)
	}
	got, err = st.Result(ctx, r.ImageKey)
	if err != nil || got.RunID != "run-2" || len(got.Findings) != 1 {
		t.Fatalf("latest result = %v %v", got.RunID, err)
	}
}

func TestResultsLatestPerKey(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	if _, err := st.Result(ctx, key(42)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing result: %v", err)
	}
	want := map[string]string{}
	for i := range 50 {
		for _, run := range []string{"a", "b"} {
			r := bigResult(key(i), 2)
			r.RunID = run
			if i == 7 {
				r = bigResult(key(i), 3000) // one claim-checked result among them
				r.RunID = run
			}
			if err := st.PutResult(ctx, r); err != nil {
				t.Fatal(err)
			}
			want[r.Digest] = run
		}
	}
	got := map[string]string{}
	err := st.EachResult(ctx, func(r contract.ScanResult) error {
		if _, dup := got[r.Digest]; dup {
			return fmt.Errorf("duplicate %s", r.Digest)
		}
		got[r.Digest] = r.RunID
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("EachResult returned %d results, want %d latest", len(got), len(want))
	}
}

func TestInventoriesAndManifests(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	for _, c := range []string{"prod-eu", "prod-us"} {
		inv := contract.Inventory{RunID: "r1", Cycle: "c", Cluster: c, CollectedAt: now, Pods: 1, Entries: []contract.InventoryEntry{
			{Namespace: "ns", Pod: "p", Container: "app", ContainerKind: contract.ContainerRegular, Image: "docker.io/library/nginx:1.25",
				Digest: key(1).Digest, Platform: contract.DefaultPlatform, Resolution: contract.ResolvedStatus},
		}}
		if err := st.PutInventory(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	clusters, err := st.Clusters(ctx)
	if err != nil || len(clusters) != 2 {
		t.Fatalf("clusters = %v, %v", clusters, err)
	}
	inv, err := st.Inventory(ctx, "prod-us")
	if err != nil || inv.Cluster != "prod-us" || len(inv.Entries) != 1 {
		t.Fatalf("inventory = %+v, %v", inv, err)
	}
	if _, err := st.Inventory(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing inventory: %v", err)
	}
	m := contract.RunManifest{RunID: "r1", Cycle: "c", CreatedAt: now, Expected: []contract.ImageKey{key(1)},
		Clusters: []contract.ClusterStatus{{Name: "prod-eu", OK: true}, {Name: "staging", Error: "forbidden"}}}
	if err := st.PutManifest(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, err := st.Manifest(ctx, "r1")
	if err != nil || len(got.Clusters) != 2 || got.Clusters[1].Error != "forbidden" {
		t.Fatalf("manifest = %+v, %v", got, err)
	}
	runs, err := st.Runs(ctx)
	if err != nil || len(runs) != 1 {
		t.Fatalf("runs = %v %v", runs, err)
	}
}

// TestDecodeWith: every read of results (Result, EachResult, a watch)
// decodes with the decoder it is given, inline and claim-checked results
// alike, and with contract.DecodeScanResult by default.
func TestDecodeWith(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	st.InlineLimit = 4 << 10
	decoded := 0
	lean := store.DecodeWith(func(data []byte) (contract.ScanResult, error) {
		decoded++
		return contract.DecodeScanResult(data)
	})
	watch, err := st.WatchResults(ctx, lean)
	if err != nil {
		t.Fatal(err)
	}
	small, large := bigResult(key(1), 1), bigResult(key(2), 50) // large is claim-checked
	for _, r := range []contract.ScanResult{small, large} {
		if err := st.PutResult(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		read func(opts ...store.ReadOption) (int, error)
	}{
		{"Result", func(opts ...store.ReadOption) (int, error) {
			for _, k := range []contract.ImageKey{small.ImageKey, large.ImageKey} {
				if _, err := st.Result(ctx, k, opts...); err != nil {
					return 0, err
				}
			}
			return 2, nil
		}},
		{"EachResult", func(opts ...store.ReadOption) (int, error) {
			n := 0
			err := st.EachResult(ctx, func(contract.ScanResult) error { n++; return nil }, opts...)
			return n, err
		}},
	}
	for _, tt := range tests {
		for _, opts := range [][]store.ReadOption{nil, {lean}} {
			decoded = 0
			n, err := tt.read(opts...)
			if err != nil || n != 2 || decoded != len(opts)*2 {
				t.Errorf("%s with %d options: read %d, decoded %d by the option, %v", tt.name, len(opts), n, decoded, err)
			}
		}
	}
	decoded = 0
	var got []string
	for len(got) < 2 {
		err := watch.Next(ctx, time.Minute, func(token string, r contract.ScanResult, err error) bool {
			if err != nil {
				t.Errorf("watched %s: %v", token, err)
			}
			got = append(got, token)
			return len(got) < 2
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if decoded != 2 {
		t.Errorf("the watch decoded %d of its 2 results with its decoder", decoded)
	}
}
