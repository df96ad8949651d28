package feeds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// EPSSScore is one CVE's row of FIRST's daily EPSS file.
type EPSSScore struct {
	// Score is the probability (0…1) of exploitation activity in the next
	// 30 days.
	Score float64
	// Percentile is the share (0…1) of scored CVEs with an equal or lower
	// score.
	Percentile float64
}

// EPSSScores is a parsed and validated EPSS file.
type EPSSScores struct {
	// ModelVersion is the file's model_version ("v2025.03.14").
	ModelVersion string
	// ScoreDate is the file's score_date: the day the scores are for.
	ScoreDate time.Time
	scores    table[EPSSScore]
}

// Len is the number of scored CVEs.
func (s *EPSSScores) Len() int {
	if s == nil {
		return 0
	}
	return s.scores.len()
}

// Lookup returns the score of a CVE ID.
func (s *EPSSScores) Lookup(cve string) (EPSSScore, bool) {
	if s == nil {
		return EPSSScore{}, false
	}
	return s.scores.get(cve)
}

// ParseEPSS reads and validates FIRST's EPSS CSV (optionally gzipped):
//
//	#model_version:v2025.03.14,score_date:2025-08-25T12:55:00Z
//	cve,epss,percentile
//	CVE-2023-44487,0.94420,0.99950
//
// It requires the comment line with model_version and score_date (the
// date is what freshness is judged by), the header, and rows with a CVE ID
// and two numbers in [0, 1]; anything else — a truncated gzip stream, a
// cut-off row, a duplicate CVE, an empty file — is an error naming the line.
func ParseEPSS(r io.Reader) (*EPSSScores, error) { return parseEPSS(r, 0) }

// parseEPSS parses with the number of rows expected (a stored copy's
// metadata knows it), so the table is allocated once.
func parseEPSS(r io.Reader, sizeHint int) (*EPSSScores, error) {
	rc, err := decompressed(r)
	if err != nil {
		return nil, fmt.Errorf("EPSS scores: %w", err)
	}
	defer rc.Close()
	p := epssParser{br: bufio.NewReaderSize(rc, 256<<10), s: &EPSSScores{scores: newTable[EPSSScore](min(max(sizeHint, 1024), 2_000_000))}}
	if err := p.parse(); err != nil {
		return nil, fmt.Errorf("EPSS scores: %w", err)
	}
	return p.s, nil
}

type epssParser struct {
	br   *bufio.Reader
	line int
	s    *EPSSScores
}

// next returns the next line without its line ending; io.EOF at the end.
// A last line without a newline is returned as a line.
func (p *epssParser) next() ([]byte, error) {
	b, err := p.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("line %d: longer than %d bytes", p.line+1, p.br.Size())
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(b) == 0 && errors.Is(err, io.EOF) {
		return nil, io.EOF
	}
	p.line++
	b = bytes.TrimSuffix(b, []byte{'\n'})
	return bytes.TrimSuffix(b, []byte{'\r'}), nil
}

func (p *epssParser) parse() error {
	header := false
	for {
		b, err := p.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case len(bytes.TrimSpace(b)) == 0:
			continue
		case b[0] == '#':
			if header {
				return fmt.Errorf("line %d: comment after the header", p.line)
			}
			if err := p.comment(string(b[1:])); err != nil {
				return fmt.Errorf("line %d: %w", p.line, err)
			}
		case !header:
			if p.s.ModelVersion == "" || p.s.ScoreDate.IsZero() {
				return fmt.Errorf("line %d: no #model_version:…,score_date:… line before the header (not an EPSS file?)", p.line)
			}
			if !strings.EqualFold(strings.ReplaceAll(string(b), " ", ""), "cve,epss,percentile") {
				return fmt.Errorf("line %d: header %q, want cve,epss,percentile", p.line, truncate(string(b), 60))
			}
			header = true
		default:
			if err := p.row(b); err != nil {
				return fmt.Errorf("line %d: %w", p.line, err)
			}
		}
	}
	switch {
	case !header && p.s.ModelVersion == "":
		return errors.New("empty or not an EPSS file: no #model_version line and no cve,epss,percentile header")
	case !header:
		return errors.New("no cve,epss,percentile header")
	case p.s.scores.len() == 0:
		return errors.New("no scores")
	}
	return nil
}

// comment parses "model_version:v2025.03.14,score_date:2025-08-25T12:55:00Z";
// other keys are ignored.
func (p *epssParser) comment(s string) error {
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "model_version":
			if v == "" {
				return errors.New("empty model_version")
			}
			p.s.ModelVersion = v
		case "score_date":
			t, err := parseScoreDate(v)
			if err != nil {
				return err
			}
			p.s.ScoreDate = t
		}
	}
	return nil
}

// scoreDateLayouts are the forms FIRST has written score_date in.
var scoreDateLayouts = []string{"2006-01-02T15:04:05-0700", time.RFC3339Nano, time.DateOnly}

func parseScoreDate(v string) (time.Time, error) {
	for _, l := range scoreDateLayouts {
		if t, err := time.Parse(l, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("score_date %q: want a date-time like 2025-08-25T00:00:00+0000", truncate(v, 40))
}

func (p *epssParser) row(b []byte) error {
	cve, rest, ok1 := bytes.Cut(b, []byte{','})
	score, pct, ok2 := bytes.Cut(rest, []byte{','})
	if !ok1 || !ok2 || bytes.IndexByte(pct, ',') >= 0 {
		return fmt.Errorf("%q: want cve,epss,percentile", truncate(string(b), 60))
	}
	cve = bytes.TrimSpace(cve)
	if !validCVE(cve) {
		return fmt.Errorf("cve %q: want CVE-YYYY-NNNN", truncate(string(cve), 40))
	}
	sc, err := probability(score)
	if err != nil {
		return fmt.Errorf("%s: epss %w", cve, err)
	}
	pc, err := probability(pct)
	if err != nil {
		return fmt.Errorf("%s: percentile %w", cve, err)
	}
	v := EPSSScore{Score: sc, Percentile: pc}
	var dup bool
	if k, ok := cveKey(cve); ok {
		// The hot path: no allocation per row.
		_, dup = p.s.scores.packed[k]
		p.s.scores.packed[k] = v
	} else {
		dup = p.s.scores.put(string(cve), v)
	}
	if dup {
		return fmt.Errorf("%s listed twice", cve)
	}
	return nil
}

// pow10 are the exactly representable powers of ten the fast path divides
// by.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// probability parses a number in [0, 1]. EPSS writes plain decimals
// ("0.94420"): those are parsed without allocating, as the exact quotient
// of two integers below 2^53 (correctly rounded, so equal to what
// strconv.ParseFloat returns); anything else goes through strconv.
func probability(b []byte) (float64, error) {
	b = bytes.TrimSpace(b)
	if f, ok := plainDecimal(b); ok {
		if f > 1 {
			return 0, fmt.Errorf("%q: want a number between 0 and 1", truncate(string(b), 30))
		}
		return f, nil
	}
	s := string(b)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		return 0, fmt.Errorf("%q: want a number between 0 and 1", truncate(s, 30))
	}
	return f, nil
}

// plainDecimal parses D+(.D+)? with at most 15 digits in all.
func plainDecimal(b []byte) (float64, bool) {
	var mant uint64
	digits, frac, dot := 0, 0, false
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot && digits > 0:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 || (dot && frac == 0) {
		return 0, false
	}
	return float64(mant) / pow10[frac], true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
