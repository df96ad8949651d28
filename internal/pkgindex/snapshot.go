package pkgindex

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// The snapshot is the index compacted into one object: a string table,
// the units, and per image its fields and delta-coded unit ids, all
// varint-encoded, then zstd-compressed. Loading it decodes no JSON and
// builds no map.
const (
	snapshotMagic   = "FSPX"
	snapshotVersion = 1
)

// ErrSnapshotFormat is returned for a snapshot this build cannot read.
var ErrSnapshotFormat = errors.New("package index snapshot: unknown format")

type strTable struct {
	ids  map[string]uint64
	list []string
}

func (t *strTable) id(s string) uint64 {
	if id, ok := t.ids[s]; ok {
		return id
	}
	id := uint64(len(t.list))
	t.ids[s] = id
	t.list = append(t.list, s)
	return id
}

// Encode renders the index as a snapshot. Units no image holds any more
// are left out (ids are renumbered).
func (ix *Index) Encode() ([]byte, error) {
	images := ix.sortedImages()
	order, remap := ix.liveUnits(images)
	w := &writer{st: &strTable{ids: map[string]uint64{}}}
	w.u(uint64(len(order)))
	for _, id := range order {
		w.unit(&ix.units[id])
	}
	w.u(uint64(len(images)))
	for _, im := range images {
		w.image(im, remap)
	}
	var head []byte
	head = append(head, snapshotMagic...)
	head = binary.AppendUvarint(head, snapshotVersion)
	head = binary.AppendUvarint(head, ix.LastSeq)
	head = binary.AppendUvarint(head, uint64(len(w.st.list)))
	for _, str := range w.st.list {
		head = binary.AppendUvarint(head, uint64(len(str)))
		head = append(head, str...)
	}
	raw := append(head, w.body...)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	return enc.EncodeAll(raw, make([]byte, 0, len(raw)/4)), nil
}

// liveUnits lists the units the images hold, in their old order (so ids
// stay stable across compactions), and maps old ids to new ones.
func (ix *Index) liveUnits(images []*Image) ([]uint32, []int64) {
	remap := make([]int64, len(ix.units))
	for i := range remap {
		remap[i] = -1
	}
	var order []uint32
	for _, im := range images {
		for _, id := range im.Units {
			if remap[id] < 0 {
				remap[id] = 0
				order = append(order, id)
			}
		}
	}
	slices.Sort(order)
	for i, id := range order {
		remap[id] = int64(i)
	}
	return order, remap
}

// writer appends varints and string-table ids to the snapshot body.
type writer struct {
	st   *strTable
	body []byte
}

func (w *writer) u(v uint64) { w.body = binary.AppendUvarint(w.body, v) }
func (w *writer) s(v string) { w.u(w.st.id(v)) }
func (w *writer) i(v int64)  { w.body = binary.AppendVarint(w.body, v) }
func (w *writer) flag(v bool) {
	if v {
		w.u(1)
	} else {
		w.u(0)
	}
}

func (w *writer) unit(x *Unit) {
	for _, f := range []string{x.Name, x.Version, x.PURL, x.Type, x.Class, x.Path, x.ID, x.RawVersion, x.Release,
		x.Arch, x.SrcName, x.SrcVersion, x.SrcRelease, x.Modularitylabel, x.BuildNvr, x.BuildArch,
		x.RepositoryClass, x.Relationship} {
		w.s(f)
	}
	w.u(uint64(x.Epoch))
	w.u(uint64(x.SrcEpoch))
	w.flag(x.Dev)
	w.u(uint64(len(x.ContentSets)))
	for _, c := range x.ContentSets {
		w.s(c)
	}
}

func (w *writer) image(im *Image, remap []int64) {
	for _, f := range []string{im.Digest, im.Platform.OS, im.Platform.Architecture, im.Platform.Variant} {
		w.s(f)
	}
	w.u(im.Seq)
	for _, f := range []string{im.Reference, im.ManifestDigest, im.Scanner.Name, im.Scanner.Version, im.Scanner.Options} {
		w.s(f)
	}
	w.i(im.AnalyzedAt.UnixNano())
	w.flag(im.OS != nil)
	if im.OS != nil {
		w.s(im.OS.Family)
		w.s(im.OS.Name)
		w.flag(im.OS.EOSL)
	}
	w.flag(im.OSExtended)
	w.s(im.OSSupplier)
	w.flag(im.Repository != nil)
	if im.Repository != nil {
		w.s(im.Repository.Family)
		w.s(im.Repository.Release)
	}
	ids := make([]uint32, len(im.Units))
	for i, id := range im.Units {
		ids[i] = uint32(remap[id])
	}
	slices.Sort(ids)
	w.u(uint64(len(ids)))
	prev := uint32(0)
	for _, id := range ids {
		w.u(uint64(id - prev))
		prev = id
	}
}

type reader struct {
	b   []byte
	err error
	str []string
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated", ErrSnapshotFormat)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated", ErrSnapshotFormat)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) s() string {
	id := r.uvarint()
	if r.err != nil {
		return ""
	}
	if id >= uint64(len(r.str)) {
		r.err = fmt.Errorf("%w: string %d of %d", ErrSnapshotFormat, id, len(r.str))
		return ""
	}
	return r.str[id]
}

func (r *reader) bool() bool { return r.uvarint() != 0 }

// count reads a length, refusing one larger than the bytes left could hold.
func (r *reader) count() int {
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b))+1 {
		r.err = fmt.Errorf("%w: count %d exceeds the data", ErrSnapshotFormat, n)
		return 0
	}
	return int(n)
}

// DecodeSnapshot reads a snapshot written by Encode.
func DecodeSnapshot(data []byte) (*Index, error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	raw, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSnapshotFormat, err)
	}
	if len(raw) < len(snapshotMagic) || string(raw[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrSnapshotFormat)
	}
	r := &reader{b: raw[len(snapshotMagic):]}
	if v := r.uvarint(); r.err == nil && v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrSnapshotFormat, v, snapshotVersion)
	}
	ix := NewIndex()
	ix.LastSeq = r.uvarint()
	n := r.count()
	r.str = make([]string, n)
	for i := range n {
		l := r.uvarint()
		if r.err != nil || l > uint64(len(r.b)) {
			return nil, fmt.Errorf("%w: string table", ErrSnapshotFormat)
		}
		r.str[i] = string(r.b[:l])
		r.b = r.b[l:]
	}
	decodeUnits(r, ix)
	decodeImages(r, ix)
	if r.err != nil {
		return nil, r.err
	}
	return ix, nil
}

func decodeUnits(r *reader, ix *Index) {
	n := r.count()
	ix.units = make([]Unit, n)
	for i := range n {
		x := &ix.units[i]
		for _, f := range []*string{&x.Name, &x.Version, &x.PURL, &x.Type, &x.Class, &x.Path, &x.ID, &x.RawVersion, &x.Release,
			&x.Arch, &x.SrcName, &x.SrcVersion, &x.SrcRelease, &x.Modularitylabel, &x.BuildNvr, &x.BuildArch,
			&x.RepositoryClass, &x.Relationship} {
			*f = r.s()
		}
		x.Epoch = int(r.uvarint())
		x.SrcEpoch = int(r.uvarint())
		x.Dev = r.bool()
		if c := r.count(); c > 0 {
			x.ContentSets = make([]string, c)
			for j := range c {
				x.ContentSets[j] = r.s()
			}
		}
		if r.err != nil {
			return
		}
	}
}

func decodeImages(r *reader, ix *Index) {
	n := r.count()
	ix.images = make([]*Image, 0, n)
	ix.byKey = make(map[contract.ImageKey]int, n)
	for range n {
		im := &Image{}
		im.Digest = r.s()
		im.Platform = contract.Platform{OS: r.s(), Architecture: r.s(), Variant: r.s()}
		im.Seq = r.uvarint()
		im.Reference = r.s()
		im.ManifestDigest = r.s()
		im.Scanner = contract.ScannerInfo{Name: r.s(), Version: r.s(), Options: r.s()}
		im.AnalyzedAt = time.Unix(0, r.varint()).UTC()
		if r.bool() {
			im.OS = &contract.OSInfo{Family: r.s(), Name: r.s(), EOSL: r.bool()}
		}
		im.OSExtended = r.bool()
		im.OSSupplier = r.s()
		if r.bool() {
			im.Repository = &contract.PackageRepository{Family: r.s(), Release: r.s()}
		}
		c := r.count()
		im.Units = make([]uint32, c)
		prev := uint64(0)
		for j := range c {
			prev += r.uvarint()
			if prev >= uint64(len(ix.units)) {
				r.err = fmt.Errorf("%w: unit %d of %d", ErrSnapshotFormat, prev, len(ix.units))
				return
			}
			im.Units[j] = uint32(prev)
		}
		if r.err != nil {
			return
		}
		ix.put(im)
	}
}
