package contract

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func streamInventory(n int) Inventory {
	inv := Inventory{SchemaVersion: "1.0", RunID: "run-1", Cycle: "c", Cluster: "prod", CollectedAt: testNow, Pods: n}
	for i := range n {
		e := InventoryEntry{Namespace: "web", Pod: fmt.Sprintf("p-%d", i), Container: "app", ContainerKind: ContainerRegular,
			Image: "docker.io/library/nginx:1.25", Digest: testDigest, Platform: DefaultPlatform, Resolution: ResolvedStatus}
		if i%3 == 0 {
			e.Digest, e.Resolution, e.Reason = "", Unresolved, "container waiting"
		}
		inv.Entries = append(inv.Entries, e)
	}
	return inv
}

// readAll reads an inventory with the decoder: its header, its entries
// chunk by chunk, its end record.
func readAll(t *testing.T, data []byte) (InventoryHeader, []InventoryEntry, InventoryEnd, int, error) {
	t.Helper()
	d, err := NewInventoryDecoder(bytes.NewReader(data))
	if err != nil {
		return InventoryHeader{}, nil, InventoryEnd{}, 0, err
	}
	var all []InventoryEntry
	chunks := 0
	for {
		entries, err := d.Next()
		if errors.Is(err, io.EOF) {
			return d.Header(), all, d.End(), chunks, nil
		}
		if err != nil {
			return d.Header(), all, d.End(), chunks, err
		}
		chunks++
		all = append(all, entries...)
	}
}

func TestInventoryStreamRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 7, 10, 25} {
		inv := streamInventory(n)
		chunked, err := inv.EncodeChunked(10)
		if err != nil {
			t.Fatal(err)
		}
		single, err := inv.Encode()
		if err != nil {
			t.Fatal(err)
		}
		wantChunks := (n + 9) / 10
		for _, c := range []struct {
			name   string
			data   []byte
			chunks int
			layout string
		}{{"chunked", chunked, wantChunks, InventoryLayoutChunked}, {"single document", single, min(n, 1), ""}} {
			h, entries, end, chunks, err := readAll(t, c.data)
			if err != nil {
				t.Fatalf("%d entries, %s: %v", n, c.name, err)
			}
			if h.RunID != "run-1" || h.Cluster != "prod" || !h.CollectedAt.Equal(testNow) || h.Layout != c.layout {
				t.Fatalf("%d entries, %s: header %+v", n, c.name, h)
			}
			if len(entries) != n || chunks != c.chunks || end != (InventoryEnd{Chunks: c.chunks, Entries: n, Pods: n}) {
				t.Fatalf("%d entries, %s: read %d entries in %d chunks, end %+v", n, c.name, len(entries), chunks, end)
			}
			for i := range entries {
				if entries[i] != inv.Entries[i] {
					t.Fatalf("%d entries, %s: entry %d = %+v, want %+v", n, c.name, i, entries[i], inv.Entries[i])
				}
			}
			d, err := NewInventoryDecoder(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Skip(); err != nil || d.End() != end {
				t.Fatalf("%d entries, %s: Skip: %v, end %+v", n, c.name, err, d.End())
			}
		}
	}
}

// TestInventoryStreamIncomplete: a chunked inventory whose writer stopped
// before the end record, lost a chunk or wrote counts that do not add up is
// never read as complete, by Next or by Skip.
func TestInventoryStreamIncomplete(t *testing.T) {
	t.Parallel()
	data, err := streamInventory(25).EncodeChunked(10)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 { // header, 3 chunks, end
		t.Fatalf("%d records", len(lines))
	}
	join := func(idx ...int) []byte {
		var b strings.Builder
		for _, i := range idx {
			b.WriteString(lines[i])
		}
		return []byte(b.String())
	}
	tests := []struct {
		name      string
		data      []byte
		wantField string // alternatives separated by |
	}{
		{"header only", join(0), "end"},
		{"no end record", join(0, 1, 2, 3), "end"},
		{"chunk missing", join(0, 1, 3, 4), "chunks[2].seq"},
		{"last chunk missing", join(0, 1, 2, 4), "end"},
		{"cut inside a chunk", []byte(string(join(0, 1, 2)) + lines[3][:len(lines[3])/2]), "chunk 2"},
		{"data after the end", []byte(string(join(0, 1, 2, 3, 4)) + `{"chunk":{"seq":3,"count":0,"entries":[]}}`), "end"},
		{"count wrong", []byte(strings.Replace(string(data), `"count":5`, `"count":6`, 1)), "end|chunks[2].count"},
		{"neither chunk nor end", []byte(string(join(0, 1)) + "{}\n"), "chunk 1"},
		{"bad digest", []byte(strings.Replace(string(data), testDigest, "sha256:nope", 1)), "chunks[0].entries[1].digest"},
		{"future major", []byte(strings.Replace(string(data), `"schemaVersion":"1.1"`, `"schemaVersion":"2.0"`, 1)), "schemaVersion"},
		{"unknown layout", []byte(strings.Replace(string(data), `"layout":"chunked"`, `"layout":"sharded"`, 1)), "layout"},
		{"no header", []byte(""), ""},
	}
	for _, tt := range tests {
		for _, skip := range []bool{false, true} {
			var err error
			d, err := NewInventoryDecoder(bytes.NewReader(tt.data))
			if err == nil && skip {
				err = d.Skip()
			} else if err == nil {
				for err == nil {
					_, err = d.Next()
				}
				if errors.Is(err, io.EOF) {
					err = nil
				}
			}
			var de *DecodeError
			if !errors.As(err, &de) || !strings.Contains("|"+tt.wantField+"|", "|"+de.Field+"|") {
				if tt.name == "bad digest" && skip && err == nil {
					continue // Skip does not decode entries
				}
				t.Errorf("%s (skip %v): err = %v, want a DecodeError on %q", tt.name, skip, err, tt.wantField)
			}
		}
	}
}

// TestInventoryStreamOldReaders: a reader of single documents rejects a
// chunked inventory instead of misreading it as empty.
func TestInventoryStreamOldReaders(t *testing.T) {
	t.Parallel()
	data, err := streamInventory(3).EncodeChunked(2)
	if err != nil {
		t.Fatal(err)
	}
	var de *DecodeError
	if _, err := DecodeInventory(data); !errors.As(err, &de) {
		t.Fatalf("DecodeInventory of a chunked inventory: %v, want a DecodeError", err)
	}
}
