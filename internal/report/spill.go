package report

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
	"sync"
)

// Spill says where a large report keeps its ranked rows: a fleet's rows are
// ranked in runs of RunRows records, each run written to a temporary file
// in Dir, and the runs merged into one ranked file the writers stream, so
// the rows cost the report no memory beyond one run whatever the fleet's
// size. A report of at most RunRows rows stays in memory.
type Spill struct {
	// Dir is the directory of the temporary files ("": rows stay in
	// memory). The files are removed as soon as they are created; the
	// space is freed once the rows are unreachable.
	Dir string
	// RunRows is the records ranked in memory at a time (0: DefaultRunRows).
	RunRows int
}

// DefaultRunRows is Spill.RunRows by default: 65,536 records, 3 MiB.
const DefaultRunRows = 1 << 16

func (s Spill) runRows() int {
	if s.RunRows <= 0 {
		return DefaultRunRows
	}
	return s.RunRows
}

// recSize is a rowRec's size on disk.
const recSize = 48

// spilled are rows kept in a temporary file, ranked, n records from off.
type spilled struct {
	f *os.File
	n int

	mu  sync.Mutex
	err error // the first read failure
}

func (s *spilled) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *spilled) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// records yields the ranked records, reading blocks of them; a read failure
// ends it and is kept (Rows.Err).
func (s *spilled) records() iter.Seq[*rowRec] {
	return func(yield func(*rowRec) bool) {
		r := newRunReader(s.f, 0, s.n)
		for rec := range r.all() {
			if !yield(rec) {
				return
			}
		}
		if r.err != nil {
			s.fail(fmt.Errorf("read the ranked rows back from %s: %w", s.f.Name(), r.err))
		}
	}
}

// at reads record i.
func (s *spilled) at(i int) (rowRec, error) {
	var b [recSize]byte
	if _, err := s.f.ReadAt(b[:], int64(i)*recSize); err != nil {
		return rowRec{}, fmt.Errorf("read row %d back from %s: %w", i, s.f.Name(), err)
	}
	return decodeRec(b[:]), nil
}

// rowSink takes a report's records as they are made and ranks them: in
// memory, or in runs a spiller writes when Spill asks for it and there
// are more than a run's worth.
type rowSink struct {
	tab  *rowTables
	sp   *spiller
	run  int
	recs []rowRec
	// err: rows lost; spillErr: the spill failed, the rows stayed in memory.
	err, spillErr error
}

// newRowSink makes a sink for at most n records.
func newRowSink(tab *rowTables, opts Spill, n int) *rowSink {
	s := &rowSink{tab: tab, run: opts.runRows()}
	if opts.Dir != "" && n > s.run {
		s.sp, n = &spiller{tab: tab, opts: opts}, s.run
	}
	s.recs = make([]rowRec, 0, n)
	return s
}

// add takes one record, spilling a full run.
func (s *rowSink) add(rec rowRec) {
	s.recs = append(s.recs, rec)
	if s.sp == nil || len(s.recs) < s.run {
		return
	}
	if err := s.sp.add(s.recs); err != nil {
		s.unspill(err)
		return
	}
	s.recs = s.recs[:0]
}

// unspill keeps the rows in memory after the spill failed with err: the
// runs written so far are read back.
func (s *rowSink) unspill(err error) {
	s.spillErr = err
	back, rerr := s.sp.readAll()
	s.sp = nil
	if rerr != nil {
		s.err = fmt.Errorf("%w; reading the spilled rows back: %w", err, rerr)
	}
	s.recs = append(back, s.recs...)
}

// rows ranks the records taken.
func (s *rowSink) rows() Rows {
	if s.sp != nil && s.sp.n > 0 {
		merged, err := s.sp.merge(s.recs)
		if err == nil {
			return Rows{sp: merged, tab: s.tab}
		}
		s.unspill(err)
	}
	s.tab.sortRows(s.recs)
	return Rows{recs: slices.Clip(s.recs), tab: s.tab, err: s.err, spillErr: s.spillErr}
}

// spiller ranks records in runs written to a temporary file.
type spiller struct {
	tab  *rowTables
	opts Spill
	runs *os.File
	// bounds are the runs' first records (in records).
	bounds []int
	n      int
}

// newTempFile creates a temporary file in dir and removes its name at once
// (the space is freed when the file is closed, or when it is unreachable).
func newTempFile(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("spill the report's rows: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spill the report's rows: %w", err)
	}
	return f, nil // an *os.File closes itself once unreachable
}

// add ranks one full run and writes it.
func (sp *spiller) add(recs []rowRec) error {
	if sp.runs == nil {
		f, err := newTempFile(sp.opts.Dir, "fleetscan-rows-runs-*")
		if err != nil {
			return err
		}
		sp.runs = f
	}
	sp.tab.sortRows(recs)
	sp.bounds = append(sp.bounds, sp.n)
	if err := writeRecs(sp.runs, int64(sp.n)*recSize, recs); err != nil {
		return fmt.Errorf("spill the report's rows to %s: %w", sp.runs.Name(), err)
	}
	sp.n += len(recs)
	return nil
}

// merge merges the runs and the ranked last one (in memory) into one
// ranked file; the runs' file is closed unless merge fails.
func (sp *spiller) merge(last []rowRec) (*spilled, error) {
	sp.tab.sortRows(last)
	out, err := newTempFile(sp.opts.Dir, "fleetscan-rows-*")
	if err != nil {
		return nil, err
	}
	readers := make([]*runReader, 0, len(sp.bounds))
	for i, start := range sp.bounds {
		end := sp.n
		if i+1 < len(sp.bounds) {
			end = sp.bounds[i+1]
		}
		readers = append(readers, newRunReader(sp.runs, start, end-start))
	}
	w := &recWriter{f: out}
	m := &runMerge{tab: sp.tab}
	for _, r := range readers {
		m.push(r.all())
	}
	m.push(slices.Values(pointers(last)))
	m.each(w.write)
	for _, r := range readers {
		if r.err != nil {
			_ = out.Close()
			return nil, fmt.Errorf("read the report's rows back from %s: %w", sp.runs.Name(), r.err)
		}
	}
	if err := w.flush(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("spill the report's rows to %s: %w", out.Name(), err)
	}
	_ = sp.runs.Close()
	return &spilled{f: out, n: w.n}, nil
}

// readAll reads every record of the runs back (a spill that failed half
// way keeps the rows in memory).
func (sp *spiller) readAll() ([]rowRec, error) {
	if sp.runs == nil {
		return nil, nil
	}
	defer func() { _ = sp.runs.Close() }()
	r := newRunReader(sp.runs, 0, sp.n)
	out := make([]rowRec, 0, sp.n)
	for rec := range r.all() {
		out = append(out, *rec)
	}
	return out, r.err
}

func pointers(recs []rowRec) []*rowRec {
	out := make([]*rowRec, len(recs))
	for i := range recs {
		out[i] = &recs[i]
	}
	return out
}

// runMerge merges ranked sequences of records.
type runMerge struct {
	tab   *rowTables
	heads []mergeHead
}

type mergeHead struct {
	rec  *rowRec
	next func() (*rowRec, bool)
	stop func()
}

func (m *runMerge) push(seq iter.Seq[*rowRec]) {
	next, stop := iter.Pull(seq)
	if rec, ok := next(); ok {
		m.heads = append(m.heads, mergeHead{rec: rec, next: next, stop: stop})
		return
	}
	stop()
}

func (m *runMerge) Len() int           { return len(m.heads) }
func (m *runMerge) Less(i, j int) bool { return m.tab.compare(m.heads[i].rec, m.heads[j].rec) < 0 }
func (m *runMerge) Swap(i, j int)      { m.heads[i], m.heads[j] = m.heads[j], m.heads[i] }
func (m *runMerge) Push(x any)         { m.heads = append(m.heads, x.(mergeHead)) }
func (m *runMerge) Pop() any {
	h := m.heads[len(m.heads)-1]
	m.heads = m.heads[:len(m.heads)-1]
	return h
}

// each passes every record to fn in rank order.
func (m *runMerge) each(fn func(*rowRec)) {
	heap.Init(m)
	for len(m.heads) > 0 {
		h := &m.heads[0]
		fn(h.rec)
		if rec, ok := h.next(); ok {
			h.rec = rec
			heap.Fix(m, 0)
			continue
		}
		h.stop()
		heap.Pop(m)
	}
}

// runBlock is the records a reader reads at a time (48 KiB).
const runBlock = 1024

// runReader reads n records from start of a file, a block at a time.
type runReader struct {
	f        io.ReaderAt
	start, n int
	err      error
}

func newRunReader(f io.ReaderAt, start, n int) *runReader {
	return &runReader{f: f, start: start, n: n}
}

// all yields the records (one reused record); a read failure ends it and
// is kept in r.err.
func (r *runReader) all() iter.Seq[*rowRec] {
	return func(yield func(*rowRec) bool) {
		buf := make([]byte, runBlock*recSize)
		var rec rowRec
		for done := 0; done < r.n; {
			k := min(runBlock, r.n-done)
			b := buf[:k*recSize]
			if _, err := r.f.ReadAt(b, int64(r.start+done)*recSize); err != nil {
				r.err = err
				return
			}
			for i := range k {
				rec = decodeRec(b[i*recSize:])
				if !yield(&rec) {
					return
				}
			}
			done += k
		}
	}
}

// recWriter appends records to a file through a buffer.
type recWriter struct {
	f   *os.File
	buf []byte
	n   int
	err error
}

func (w *recWriter) write(rec *rowRec) {
	w.buf = appendRec(w.buf, rec)
	w.n++
	if len(w.buf) >= runBlock*recSize {
		_ = w.flush()
	}
}

func (w *recWriter) flush() error {
	if w.err == nil && len(w.buf) > 0 {
		_, w.err = w.f.WriteAt(w.buf, int64(w.n)*recSize-int64(len(w.buf)))
	}
	w.buf = w.buf[:0]
	return w.err
}

// writeRecs writes recs at off.
func writeRecs(f *os.File, off int64, recs []rowRec) error {
	buf := make([]byte, 0, min(len(recs), runBlock)*recSize)
	for i := range recs {
		buf = appendRec(buf, &recs[i])
		if len(buf) == cap(buf) || i == len(recs)-1 {
			if _, err := f.WriteAt(buf, off); err != nil {
				return err
			}
			off += int64(len(buf))
			buf = buf[:0]
		}
	}
	return nil
}

// appendRec encodes rec in recSize bytes.
func appendRec(b []byte, r *rowRec) []byte {
	le := binary.LittleEndian
	b = le.AppendUint64(b, uint64(r.firstSeen))
	b = le.AppendUint64(b, uint64(r.deadline))
	b = le.AppendUint32(b, r.vuln)
	b = le.AppendUint32(b, r.img)
	b = le.AppendUint32(b, r.accept)
	b = le.AppendUint32(b, r.stmt)
	b = le.AppendUint32(b, uint32(r.slaDays))
	b = le.AppendUint16(b, r.slaRule)
	b = le.AppendUint16(b, r.rule)
	b = le.AppendUint16(b, r.status)
	b = le.AppendUint16(b, r.change)
	var flag byte
	if r.breached {
		flag = 1
	}
	return append(b, flag, 0, 0, 0)
}

// decodeRec decodes a record appendRec encoded.
func decodeRec(b []byte) rowRec {
	le := binary.LittleEndian
	_ = b[recSize-1]
	return rowRec{
		firstSeen: int64(le.Uint64(b[0:])), deadline: int64(le.Uint64(b[8:])),
		vuln: le.Uint32(b[16:]), img: le.Uint32(b[20:]), accept: le.Uint32(b[24:]), stmt: le.Uint32(b[28:]),
		slaDays: int32(le.Uint32(b[32:])), slaRule: le.Uint16(b[36:]), rule: le.Uint16(b[38:]),
		status: le.Uint16(b[40:]), change: le.Uint16(b[42:]), breached: b[44] == 1,
	}
}
