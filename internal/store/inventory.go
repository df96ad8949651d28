package store

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Inventories live in the object store topology.InventoriesBucket, one
// object per cluster named after it. Its content is the cluster's inventory
// in the chunked form (contract.InventoryEncoder), zstd-compressed, written
// as the entries are collected: neither the writer nor a reader holds the
// whole entry list. Older single-document inventories (uncompressed JSON)
// are read as well; the zstd magic number tells them apart.
//
// The object store makes a replacement atomic: the new content goes to new
// chunk messages and the object's metadata, which names them, is published
// last, so a reader sees the previous inventory until the new one is
// complete; the previous chunks are then purged. A write that fails (the
// collection failed, the context ended) purges what it wrote; the chunks
// of a writer that died mid-write are never referenced and expire with the
// bucket's max age. Readers verify the object's SHA-256 digest and the
// stream's end record, so a truncated inventory is never read as complete.

// zstdMagic starts every zstd frame.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// InventoryFill writes a cluster's entries to enc as they are collected
// and returns how many pods they came from. An error abandons the write.
type InventoryFill func(enc *contract.InventoryEncoder) (pods int, err error)

// WriteInventory stores the inventory of h.Cluster, streaming: fill adds
// the entries, which are encoded, compressed and stored chunk by chunk.
// The previous inventory of the cluster stays readable until the new one
// is complete, and stays the latest when fill or the write fails.
func (s *Store) WriteInventory(ctx context.Context, h contract.InventoryHeader, fill InventoryFill) error {
	pr, pw := io.Pipe()
	put := make(chan error, 1)
	go func() {
		_, err := s.res.Inventories.Put(ctx, jetstream.ObjectMeta{Name: h.Cluster, Description: "fleetscan inventory, chunked, zstd"}, pr)
		pr.CloseWithError(err) // the writer's next write fails if Put gave up early
		put <- err
	}()
	err := s.encodeInventory(pw, h, fill)
	if err != nil {
		pw.CloseWithError(err)
		<-put
		return fmt.Errorf("store inventory of cluster %s: %w", h.Cluster, err)
	}
	pw.Close()
	if err := <-put; err != nil {
		return fmt.Errorf("store inventory of cluster %s: %w", h.Cluster, err)
	}
	return nil
}

// encodeInventory runs fill over a compressing encoder writing to w.
func (s *Store) encodeInventory(w io.Writer, h contract.InventoryHeader, fill InventoryFill) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return err
	}
	enc, err := contract.NewInventoryEncoder(zw, h, s.InventoryChunk)
	if err != nil {
		zw.Close()
		return err
	}
	pods, err := fill(enc)
	if err == nil {
		err = enc.Close(pods)
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	return err
}

// PutInventory stores inv as the latest inventory of its cluster.
func (s *Store) PutInventory(ctx context.Context, inv contract.Inventory) error {
	return s.WriteInventory(ctx, inv.Header(), func(enc *contract.InventoryEncoder) (int, error) {
		return inv.Pods, enc.Add(inv.Entries...)
	})
}

// InventoryReader reads a stored inventory chunk by chunk (its
// contract.InventoryDecoder); Close releases it.
type InventoryReader struct {
	*contract.InventoryDecoder
	obj  jetstream.ObjectResult
	zstd *zstd.Decoder
}

// Close stops reading.
func (r *InventoryReader) Close() error {
	if r.zstd != nil {
		r.zstd.Close()
	}
	return r.obj.Close()
}

// OpenInventory opens the latest inventory of cluster and reads its
// header; ErrNotFound when there is none. Corrupt content (a digest
// mismatch, an incomplete stream) is a *contract.DecodeError, returned by
// OpenInventory or by the reader's Next and Skip.
func (s *Store) OpenInventory(ctx context.Context, cluster string) (*InventoryReader, error) {
	obj, err := s.res.Inventories.Get(ctx, cluster)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("inventory of %s: %w", cluster, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get inventory of %s: %w", cluster, err)
	}
	r := &InventoryReader{obj: obj}
	br := bufio.NewReaderSize(corruptAsDecodeError{obj}, 64<<10)
	var src io.Reader = br
	if magic, _ := br.Peek(len(zstdMagic)); bytes.Equal(magic, zstdMagic) {
		r.zstd, err = zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			obj.Close()
			return nil, err
		}
		src = r.zstd
	}
	r.InventoryDecoder, err = contract.NewInventoryDecoder(src)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("inventory of %s: %w", cluster, err)
	}
	return r, nil
}

// corruptAsDecodeError reports an object whose content does not match its
// digest as undecodable.
type corruptAsDecodeError struct{ r io.Reader }

func (c corruptAsDecodeError) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if errors.Is(err, jetstream.ErrDigestMismatch) {
		err = &contract.DecodeError{Kind: "inventory", Err: err}
	}
	return n, err
}

// InventoryHeader reads the latest inventory of cluster through, checking
// it is complete, without decoding its entries: its header and end record
// (chunks, entries, pods).
func (s *Store) InventoryHeader(ctx context.Context, cluster string) (contract.InventoryHeader, contract.InventoryEnd, error) {
	r, err := s.OpenInventory(ctx, cluster)
	if err != nil {
		return contract.InventoryHeader{}, contract.InventoryEnd{}, err
	}
	defer r.Close()
	if err := r.Skip(); err != nil {
		return r.Header(), r.End(), fmt.Errorf("inventory of %s: %w", cluster, err)
	}
	return r.Header(), r.End(), nil
}

// Inventory returns the latest inventory of cluster, entries and all.
func (s *Store) Inventory(ctx context.Context, cluster string) (contract.Inventory, error) {
	r, err := s.OpenInventory(ctx, cluster)
	if err != nil {
		return contract.Inventory{}, err
	}
	defer r.Close()
	h := r.Header()
	inv := contract.Inventory{SchemaVersion: h.SchemaVersion, RunID: h.RunID, Cycle: h.Cycle, Cluster: h.Cluster,
		CollectedAt: h.CollectedAt, Entries: []contract.InventoryEntry{}}
	for {
		entries, err := r.Next()
		if errors.Is(err, io.EOF) {
			inv.Pods = r.End().Pods
			return inv, nil
		}
		if err != nil {
			return contract.Inventory{}, fmt.Errorf("inventory of %s: %w", cluster, err)
		}
		inv.Entries = append(inv.Entries, entries...)
	}
}
