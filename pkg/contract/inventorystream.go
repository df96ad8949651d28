package contract

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// An inventory is written either as one document (Inventory.Encode, schema
// 1.0 and later) or, since schema 1.1, as a stream of JSON values, one a
// line, so that neither its writer nor its reader holds a cluster's whole
// entry list:
//
//	{"schemaVersion":"1.1","runId":…,"cycle":…,"cluster":…,"collectedAt":…,"layout":"chunked"}
//	{"chunk":{"seq":0,"count":1000,"entries":[…]}}
//	{"chunk":{"seq":1,"count":412,"entries":[…]}}
//	{"end":{"chunks":2,"entries":1412,"pods":700}}
//
// The end record is written last: a stream without it, with chunks missing
// or out of order, or with counts that do not add up is incomplete and
// rejected with a *DecodeError. Readers of schema 1.0 reject the stream as
// malformed (it is not one JSON document) rather than misread it.
// InventoryDecoder reads both forms.

// InventoryLayoutChunked is the layout of a chunked inventory's header.
const InventoryLayoutChunked = "chunked"

// DefaultInventoryChunk is how many entries a chunk record holds at most
// unless the writer chooses otherwise.
const DefaultInventoryChunk = 1000

// InventoryHeader is an inventory without its entries: the first record of
// a chunked inventory.
type InventoryHeader struct {
	SchemaVersion string    `json:"schemaVersion"`
	RunID         string    `json:"runId"`
	Cycle         string    `json:"cycle"`
	Cluster       string    `json:"cluster"`
	CollectedAt   time.Time `json:"collectedAt"`
	// Layout is InventoryLayoutChunked in a chunked inventory; empty
	// when the header was read from a single document.
	Layout string `json:"layout,omitempty"`
}

func (h *InventoryHeader) schemaVersion() string { return h.SchemaVersion }
func (h *InventoryHeader) kind() string          { return "inventory" }

func (h *InventoryHeader) validate() error {
	const k = "inventory"
	if err := required(k, "runId", h.RunID); err != nil {
		return err
	}
	if err := required(k, "cluster", h.Cluster); err != nil {
		return err
	}
	return requiredTime(k, "collectedAt", h.CollectedAt)
}

// Header returns the inventory's header.
func (v Inventory) Header() InventoryHeader {
	return InventoryHeader{SchemaVersion: v.SchemaVersion, RunID: v.RunID, Cycle: v.Cycle, Cluster: v.Cluster, CollectedAt: v.CollectedAt}
}

// InventoryChunk is one chunk record: entries Seq*chunk size onwards.
type InventoryChunk struct {
	Seq     int              `json:"seq"`
	Count   int              `json:"count"`
	Entries []InventoryEntry `json:"entries"`
}

// InventoryEnd is the last record of a chunked inventory: what its writer
// wrote. For a single document it is computed from the document.
type InventoryEnd struct {
	Chunks  int `json:"chunks"`
	Entries int `json:"entries"`
	Pods    int `json:"pods"`
}

// inventoryRecord is a record after the header.
type inventoryRecord struct {
	Chunk *InventoryChunk `json:"chunk,omitempty"`
	End   *InventoryEnd   `json:"end,omitempty"`
}

// InventoryEncoder writes a chunked inventory.
type InventoryEncoder struct {
	enc   *json.Encoder
	size  int
	buf   []InventoryEntry
	end   InventoryEnd
	state error
}

// NewInventoryEncoder writes h as the header of a chunked inventory to w
// and returns the encoder of its entries; chunks hold at most chunk entries
// (DefaultInventoryChunk when chunk <= 0).
func NewInventoryEncoder(w io.Writer, h InventoryHeader, chunk int) (*InventoryEncoder, error) {
	h.SchemaVersion, h.Layout = InventorySchemaVersion, InventoryLayoutChunked
	if err := h.validate(); err != nil {
		return nil, err
	}
	if chunk <= 0 {
		chunk = DefaultInventoryChunk
	}
	e := &InventoryEncoder{enc: json.NewEncoder(w), size: chunk, buf: make([]InventoryEntry, 0, chunk)}
	e.enc.SetEscapeHTML(false)
	if err := e.enc.Encode(h); err != nil {
		return nil, fmt.Errorf("write inventory header: %w", err)
	}
	return e, nil
}

// Add appends entries, writing every chunk that fills. The entries are
// copied: the caller may reuse the slice.
func (e *InventoryEncoder) Add(entries ...InventoryEntry) error {
	for len(entries) > 0 {
		if e.state != nil {
			return e.state
		}
		n := min(e.size-len(e.buf), len(entries))
		e.buf = append(e.buf, entries[:n]...)
		entries = entries[n:]
		if len(e.buf) == e.size {
			e.flush()
		}
	}
	return e.state
}

func (e *InventoryEncoder) flush() {
	if len(e.buf) == 0 || e.state != nil {
		return
	}
	c := &InventoryChunk{Seq: e.end.Chunks, Count: len(e.buf), Entries: e.buf}
	if err := e.enc.Encode(inventoryRecord{Chunk: c}); err != nil {
		e.state = fmt.Errorf("write inventory chunk %d: %w", c.Seq, err)
		return
	}
	e.end.Chunks++
	e.end.Entries += len(e.buf)
	clear(e.buf)
	e.buf = e.buf[:0]
}

// Close writes the last chunk and the end record with pods, the number of
// pods the entries came from. Nothing may be added afterwards.
func (e *InventoryEncoder) Close(pods int) error {
	e.flush()
	if e.state != nil {
		return e.state
	}
	e.end.Pods = pods
	if err := e.enc.Encode(inventoryRecord{End: &e.end}); err != nil {
		e.state = fmt.Errorf("write inventory end: %w", err)
		return e.state
	}
	e.state = errors.New("inventory encoder closed")
	return nil
}

// InventoryDecoder reads an inventory chunk by chunk: a chunked inventory
// or a single document (read whole: it was written whole).
type InventoryDecoder struct {
	dec    *json.Decoder
	head   InventoryHeader
	single *Inventory
	seen   InventoryEnd
	done   bool
}

// NewInventoryDecoder reads the header of the inventory in r.
func NewInventoryDecoder(r io.Reader) (*InventoryDecoder, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	d := &InventoryDecoder{dec: json.NewDecoder(br)}
	var first json.RawMessage
	if err := d.dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &DecodeError{Kind: "inventory", Err: errors.New("empty")}
		}
		return nil, d.readError("header", err)
	}
	var peek struct {
		Layout *string `json:"layout"`
	}
	if json.Unmarshal(first, &peek) == nil && peek.Layout != nil {
		if err := decode(first, &d.head); err != nil {
			return nil, err
		}
		if d.head.Layout != InventoryLayoutChunked {
			return nil, &DecodeError{Kind: "inventory", Field: "layout", Err: fmt.Errorf("%q, want %q", d.head.Layout, InventoryLayoutChunked)}
		}
		return d, nil
	}
	inv, err := DecodeInventory(first)
	if err != nil {
		return nil, err
	}
	d.single, d.head = &inv, inv.Header()
	return d, nil
}

// readError classifies an error of the underlying decoder: malformed JSON
// is a *DecodeError, a failing reader is returned as is.
func (d *InventoryDecoder) readError(where string, err error) error {
	var syn *json.SyntaxError
	var te *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &te) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &DecodeError{Kind: "inventory", Field: where, Err: err}
	}
	return err
}

// Header is the inventory's header.
func (d *InventoryDecoder) Header() InventoryHeader { return d.head }

// End is the end record once Next or Skip returned io.EOF: the chunks,
// entries and pods of the complete inventory.
func (d *InventoryDecoder) End() InventoryEnd { return d.seen }

// Next returns the entries of the next chunk, or io.EOF after the end
// record, once the chunks read add up to it. An incomplete or inconsistent
// inventory is a *DecodeError.
func (d *InventoryDecoder) Next() ([]InventoryEntry, error) {
	if d.done {
		return nil, io.EOF
	}
	if d.single != nil {
		return d.nextSingle()
	}
	rec, err := d.record(false)
	if err != nil || rec.End != nil {
		return nil, err
	}
	c := rec.Chunk
	if len(c.Entries) != c.Count {
		return nil, d.chunkError(c.Seq, "count", fmt.Errorf("%d, but the chunk holds %d entries", c.Count, len(c.Entries)))
	}
	for i := range c.Entries {
		if err := validateEntry(&c.Entries[i]); err != nil {
			return nil, d.chunkError(c.Seq, fmt.Sprintf("entries[%d].%s", i, err.field), err.err)
		}
	}
	return c.Entries, nil
}

func (d *InventoryDecoder) nextSingle() ([]InventoryEntry, error) {
	entries := d.single.Entries
	d.seen = InventoryEnd{Entries: len(entries), Pods: d.single.Pods}
	if len(entries) > 0 {
		d.seen.Chunks = 1
	}
	d.single, d.done = nil, true
	if len(entries) == 0 {
		return nil, io.EOF
	}
	return entries, nil
}

// Skip reads the rest of the inventory and checks that it is complete,
// without decoding the entries of its chunks.
func (d *InventoryDecoder) Skip() error {
	if d.single != nil {
		_, err := d.nextSingle()
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		d.done = true
		return nil
	}
	for !d.done {
		if _, err := d.record(true); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// record reads the next record after the header, checks its place in the
// sequence and, for the end record, that the counts add up and nothing
// follows (then it sets done). skip leaves a chunk's entries undecoded.
func (d *InventoryDecoder) record(skip bool) (inventoryRecord, error) {
	if d.done {
		return inventoryRecord{}, io.EOF
	}
	var (
		rec  inventoryRecord
		err  error
		skim struct {
			Chunk *struct {
				Seq   int `json:"seq"`
				Count int `json:"count"`
			} `json:"chunk"`
			End *InventoryEnd `json:"end"`
		}
	)
	if skip {
		err = d.dec.Decode(&skim)
		if skim.Chunk != nil {
			rec.Chunk = &InventoryChunk{Seq: skim.Chunk.Seq, Count: skim.Chunk.Count}
		}
		rec.End = skim.End
	} else {
		err = d.dec.Decode(&rec)
	}
	switch {
	case errors.Is(err, io.EOF):
		return rec, &DecodeError{Kind: "inventory", Field: "end", Err: fmt.Errorf("incomplete: no end record after %d chunks", d.seen.Chunks)}
	case err != nil:
		return rec, d.readError(fmt.Sprintf("chunk %d", d.seen.Chunks), err)
	case rec.End != nil:
		return rec, d.finish(*rec.End)
	case rec.Chunk == nil:
		return rec, &DecodeError{Kind: "inventory", Field: fmt.Sprintf("chunk %d", d.seen.Chunks), Err: errors.New("neither a chunk nor the end record")}
	case rec.Chunk.Seq != d.seen.Chunks:
		return rec, d.chunkError(rec.Chunk.Seq, "seq", fmt.Errorf("chunk %d where chunk %d was due: chunks missing or out of order", rec.Chunk.Seq, d.seen.Chunks))
	}
	d.seen.Chunks++
	d.seen.Entries += rec.Chunk.Count
	return rec, nil
}

// finish checks the end record against what was read.
func (d *InventoryDecoder) finish(end InventoryEnd) error {
	if end.Chunks != d.seen.Chunks || end.Entries != d.seen.Entries {
		return &DecodeError{Kind: "inventory", Field: "end", Err: fmt.Errorf("incomplete: the end record counts %d chunks and %d entries, %d and %d were read",
			end.Chunks, end.Entries, d.seen.Chunks, d.seen.Entries)}
	}
	if _, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		return &DecodeError{Kind: "inventory", Field: "end", Err: fmt.Errorf("data after the end record at offset %d", d.dec.InputOffset())}
	}
	d.seen.Pods, d.done = end.Pods, true
	return io.EOF
}

func (d *InventoryDecoder) chunkError(seq int, field string, err error) error {
	return &DecodeError{Kind: "inventory", Field: fmt.Sprintf("chunks[%d].%s", seq, field), Err: err}
}

type entryError struct {
	field string
	err   error
}

// validateEntry checks what makes an entry usable: a digest that is one,
// and no digest only when unresolved.
func validateEntry(e *InventoryEntry) *entryError {
	if e.Digest != "" && !ValidDigest(e.Digest) {
		return &entryError{"digest", fmt.Errorf("not an OCI digest: %q", e.Digest)}
	}
	if e.Digest == "" && e.Resolution != Unresolved {
		return &entryError{"resolution", errors.New("an entry without a digest must be unresolved")}
	}
	return nil
}

// EncodeChunked renders the inventory in the chunked form, chunk entries
// a chunk (DefaultInventoryChunk when chunk <= 0).
func (v Inventory) EncodeChunked(chunk int) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := NewInventoryEncoder(&buf, v.Header(), chunk)
	if err != nil {
		return nil, err
	}
	if err := enc.Add(v.Entries...); err != nil {
		return nil, err
	}
	if err := enc.Close(v.Pods); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
