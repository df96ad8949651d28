package feeds

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
)

// MaxFeedSize bounds a feed as downloaded and as decompressed. The real
// feeds are far smaller (KEV ≈ 1.5 MB, EPSS ≈ 10 MB uncompressed, 300,000 CVEs); the
// bound stops a runaway or hostile source (a gzip bomb) from filling the
// disk or memory.
const MaxFeedSize = 128 << 20

var errTooLarge = fmt.Errorf("larger than %d MiB", MaxFeedSize>>20)

// decompressed returns r's content, gunzipped when it starts with the gzip
// magic bytes (FIRST publishes EPSS as .csv.gz; mirrors may gzip either
// feed), limited to MaxFeedSize. Close releases the gzip reader.
func decompressed(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		// Multistream (the default): concatenated members are one file, and
		// the stream is read to its end (an object store verifies its
		// digest there); trailing garbage is an error.
		return &limited{r: zr, c: zr, gz: true, n: MaxFeedSize}, nil
	}
	return &limited{r: br, n: MaxFeedSize}, nil
}

// limited reads at most n bytes and fails (rather than truncating) past
// them; gzip errors (a bad checksum, a truncated stream) are named as such.
type limited struct {
	r  io.Reader
	c  io.Closer
	gz bool
	n  int64
}

func (l *limited) Read(p []byte) (int, error) {
	if l.n <= 0 {
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	if err != nil && !errors.Is(err, io.EOF) && l.gz {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("gzip: truncated stream: %w", err)
		} else {
			err = fmt.Errorf("gzip: %w", err)
		}
	}
	return n, err
}

func (l *limited) Close() error {
	if l.c != nil {
		return l.c.Close()
	}
	return nil
}
