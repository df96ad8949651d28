package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

func testInventory(cluster, runID string, n int) contract.Inventory {
	inv := contract.Inventory{RunID: runID, Cycle: "c", Cluster: cluster, CollectedAt: now, Pods: n}
	for i := range n {
		inv.Entries = append(inv.Entries, contract.InventoryEntry{Namespace: "ns", Pod: fmt.Sprintf("p-%d", i), Container: "app",
			ContainerKind: contract.ContainerRegular, Image: "docker.io/library/nginx:1.25",
			Digest: key(i % 7).Digest, Platform: contract.DefaultPlatform, Resolution: contract.ResolvedStatus})
	}
	return inv
}

// inventoryMsgs counts the messages of the inventories bucket's stream:
// every chunk of every stored object and their metadata.
func inventoryMsgs(t *testing.T, env *natstest.Env) uint64 {
	t.Helper()
	s, err := env.JS.Stream(t.Context(), "OBJ_fleetscan-inventories")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestInventoryChunkedRoundTrip: a stored inventory is read back chunk by
// chunk, its header and counts checked without decoding entries; an
// inventory of the single-document form (schema 1.0, before chunking) is
// still read.
func TestInventoryChunkedRoundTrip(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	st.InventoryChunk = 100
	inv := testInventory("prod", "r1", 1050)
	if err := st.PutInventory(ctx, inv); err != nil {
		t.Fatal(err)
	}
	old := testInventory("legacy", "r0", 3)
	old.SchemaVersion = "1.0"
	data, err := old.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Res.Inventories.PutBytes(ctx, "legacy", data); err != nil {
		t.Fatal(err)
	}
	for _, want := range []contract.Inventory{inv, old} {
		r, err := st.OpenInventory(ctx, want.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		chunks, n := 0, 0
		for {
			entries, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			chunks++
			n += len(entries)
		}
		r.Close()
		if r.Header().RunID != want.RunID || n != len(want.Entries) || r.End().Pods != want.Pods {
			t.Fatalf("%s: header %+v, %d entries in %d chunks, end %+v", want.Cluster, r.Header(), n, chunks, r.End())
		}
		h, end, err := st.InventoryHeader(ctx, want.Cluster)
		if err != nil || h.Cluster != want.Cluster || end.Entries != len(want.Entries) || end.Pods != want.Pods {
			t.Fatalf("%s: InventoryHeader %+v %+v %v", want.Cluster, h, end, err)
		}
		got, err := st.Inventory(ctx, want.Cluster)
		if err != nil || len(got.Entries) != len(want.Entries) || got.Entries[len(got.Entries)-1] != want.Entries[len(want.Entries)-1] {
			t.Fatalf("%s: Inventory: %d entries, %v", want.Cluster, len(got.Entries), err)
		}
	}
	if _, end, _ := st.InventoryHeader(ctx, "prod"); end.Chunks != 11 {
		t.Fatalf("%d chunks of 100 entries for 1,050 entries, want 11", end.Chunks)
	}
}

// TestInventoryWriteFailureKeepsPrevious: a dispatcher whose collection
// fails mid-cluster leaves the previous complete inventory the latest and
// no chunk of its own behind; a replaced inventory's chunks are purged, so
// the bucket holds one inventory per cluster however many runs stored one.
func TestInventoryWriteFailureKeepsPrevious(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	st.InventoryChunk = 10
	if err := st.PutInventory(ctx, testInventory("prod", "r1", 5000)); err != nil {
		t.Fatal(err)
	}
	settled := inventoryMsgs(t, env)
	for run := 2; run <= 4; run++ {
		if err := st.PutInventory(ctx, testInventory("prod", fmt.Sprintf("r%d", run), 5000)); err != nil {
			t.Fatal(err)
		}
		if got := inventoryMsgs(t, env); got != settled {
			t.Fatalf("run %d: %d messages in the bucket, want %d (the previous chunks purged)", run, got, settled)
		}
	}
	lost := errors.New("cluster connection lost")
	next := testInventory("prod", "r5", 5000)
	err := st.WriteInventory(ctx, next.Header(), func(enc *contract.InventoryEncoder) (int, error) {
		if err := enc.Add(next.Entries[:4000]...); err != nil {
			return 0, err
		}
		return 0, lost
	})
	if !errors.Is(err, lost) {
		t.Fatalf("err = %v, want the fill's error", err)
	}
	h, end, err := st.InventoryHeader(ctx, "prod")
	if err != nil || h.RunID != "r4" || end.Entries != 5000 {
		t.Fatalf("after a failed write: %+v %+v %v, want run r4 complete", h, end, err)
	}
	if got := inventoryMsgs(t, env); got != settled {
		t.Fatalf("%d messages in the bucket after a failed write, want %d", got, settled)
	}
}

// TestInventoryIncompleteIsUnreadable: an object holding an inventory that
// stops before its end record (a writer that did not use WriteInventory,
// a bug) or whose chunks do not add up is a DecodeError, at open or while
// reading, never a shorter inventory.
func TestInventoryIncompleteIsUnreadable(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	st := store.New(env.JS, env.Res)
	full, err := testInventory("cut", "r1", 50).EncodeChunked(10)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(full, []byte("\n"))
	cut := bytes.Join(lines[:4], nil) // header and 3 of 5 chunks
	zw, _ := zstd.NewWriter(nil)
	for name, data := range map[string][]byte{"cut": cut, "cut-zstd": zw.EncodeAll(cut, nil), "garbage": []byte("{not json")} {
		if _, err := env.Res.Inventories.PutBytes(ctx, name, data); err != nil {
			t.Fatal(err)
		}
		var de *contract.DecodeError
		if _, _, err := st.InventoryHeader(ctx, name); !errors.As(err, &de) {
			t.Errorf("%s: InventoryHeader: %v, want a DecodeError", name, err)
		}
		if _, err := st.Inventory(ctx, name); !errors.As(err, &de) {
			t.Errorf("%s: Inventory: %v, want a DecodeError", name, err)
		}
	}
	if _, err := st.OpenInventory(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("absent: %v", err)
	}
}
