package feeds

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// Enrichment is the loaded feeds, for the reporter: lookups by CVE ID and
// the state of each feed. A nil *Enrichment is valid and finds nothing
// (enrichment off). Lookups are safe for concurrent use.
type Enrichment struct {
	kev    *KEVCatalog
	epss   *EPSSScores
	status map[Kind]Status
}

// Load reads the last good copy of each feed from src and parses it. A
// feed with no stored copy is a state (StateNeverLoaded), not an error; a
// stored copy that cannot be read or parsed is reported in its Status
// (StateUnreadable). The error is only for a cancelled context.
func Load(ctx context.Context, src Source, maxAge time.Duration) (*Enrichment, error) {
	e := &Enrichment{status: map[Kind]Status{}}
	for _, k := range Kinds {
		st := Status{Feed: k, MaxAge: maxAge}
		if err := e.load(ctx, src, k, &st); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("load %s: %w", k.Title(), ctx.Err())
			}
			if !errors.Is(err, ErrNotStored) {
				st.Err = err
			}
		}
		e.status[k] = st
	}
	return e, nil
}

func (e *Enrichment) load(ctx context.Context, src Source, k Kind, st *Status) error {
	rc, m, err := src.Open(ctx, k)
	if err != nil {
		return err
	}
	defer rc.Close()
	switch k {
	case KEV:
		c, err := ParseKEV(rc)
		if err != nil {
			return fmt.Errorf("stored copy in %s: %w", src, err)
		}
		e.kev = c
		m.Version, m.Date, m.Entries = c.Version, c.Released, c.Len()
	default:
		s, err := parseEPSS(rc, m.Entries)
		if err != nil {
			return fmt.Errorf("stored copy in %s: %w", src, err)
		}
		e.epss = s
		m.Version, m.Date, m.Entries = s.ModelVersion, s.ScoreDate, s.Len()
	}
	st.Loaded, st.Meta = true, m
	return nil
}

// New builds an Enrichment from parsed feeds (either may be nil), as if
// loaded at fetchedAt: for tests and tools.
func New(kev *KEVCatalog, epss *EPSSScores, fetchedAt time.Time, maxAge time.Duration) *Enrichment {
	e := &Enrichment{kev: kev, epss: epss, status: map[Kind]Status{
		KEV: {Feed: KEV, MaxAge: maxAge}, EPSS: {Feed: EPSS, MaxAge: maxAge},
	}}
	if kev != nil {
		e.status[KEV] = Status{Feed: KEV, MaxAge: maxAge, Loaded: true, Meta: Meta{Feed: KEV, Source: "(built in)",
			FetchedAt: fetchedAt, CheckedAt: fetchedAt, Version: kev.Version, Date: kev.Released, Entries: kev.Len()}}
	}
	if epss != nil {
		e.status[EPSS] = Status{Feed: EPSS, MaxAge: maxAge, Loaded: true, Meta: Meta{Feed: EPSS, Source: "(built in)",
			FetchedAt: fetchedAt, CheckedAt: fetchedAt, Version: epss.ModelVersion, Date: epss.ScoreDate, Entries: epss.Len()}}
	}
	return e
}

// Status returns a feed's status; without an Enrichment, never loaded.
func (e *Enrichment) Status(k Kind) Status {
	if e == nil {
		return Status{Feed: k}
	}
	return e.status[k]
}

// Statuses returns every feed's status, in Kinds order.
func (e *Enrichment) Statuses() []Status {
	out := make([]Status, len(Kinds))
	for i, k := range Kinds {
		out[i] = e.Status(k)
	}
	return out
}

// Degraded reports whether any feed is stale or unreadable at now (the
// report is then incomplete: exit status bit 2).
func (e *Enrichment) Degraded(now time.Time) bool {
	for _, k := range Kinds {
		if e.Status(k).Degraded(now) {
			return true
		}
	}
	return false
}

// KEV returns the KEV catalogue entry of a CVE ID.
func (e *Enrichment) KEV(cve string) (KEVEntry, bool) {
	if e == nil {
		return KEVEntry{}, false
	}
	return e.kev.Lookup(cve)
}

// EPSS returns the EPSS score of a CVE ID; the model version and score
// date are in Status(EPSS).Meta.
func (e *Enrichment) EPSS(cve string) (EPSSScore, bool) {
	if e == nil {
		return EPSSScore{}, false
	}
	return e.epss.Lookup(cve)
}

// Match is what the feeds know about one vulnerability.
type Match struct {
	// KEV is the catalogue entry; nil when the CVE is not listed. It is
	// shared: do not modify it.
	KEV     *KEVEntry
	EPSS    EPSSScore
	HasEPSS bool
}

// InKEV reports whether the vulnerability is in the KEV catalogue.
func (m Match) InKEV() bool { return m.KEV != nil }

// Lookup finds a vulnerability in both feeds, parsing its ID once.
func (e *Enrichment) Lookup(id string) Match {
	var m Match
	if e == nil {
		return m
	}
	if key, ok := cveKey(id); ok {
		if e.kev != nil {
			m.KEV = e.kev.entries.packed[key]
		}
		if e.epss != nil {
			m.EPSS, m.HasEPSS = e.epss.scores.packed[key]
		}
		return m
	}
	if e.kev != nil {
		m.KEV, _ = e.kev.entries.get(id)
	}
	m.EPSS, m.HasEPSS = e.epss.Lookup(id)
	return m
}

// Memo caches Lookup by vulnerability ID for one goroutine: a report looks
// each distinct vulnerability up once, however many rows (images) share
// it. Its cache holds a small value per distinct ID.
type Memo struct {
	e *Enrichment
	m map[string]Match
}

// Memo returns an empty cache over e (nil e: every lookup finds nothing).
func (e *Enrichment) Memo() *Memo { return &Memo{e: e, m: map[string]Match{}} }

// Lookup is Enrichment.Lookup, cached.
func (c *Memo) Lookup(id string) Match {
	if m, ok := c.m[id]; ok {
		return m
	}
	m := c.e.Lookup(id)
	c.m[id] = m
	return m
}

// Exposure is the match as the SLA policy's rules take it; eol is the
// image's end-of-life flag (contract.OSInfo.EOSL).
func (m Match) Exposure(eol bool) sla.Exposure {
	x := sla.Exposure{EOL: eol}
	if m.KEV != nil {
		x.InKEV, x.KEVAdded, x.KEVDue = true, m.KEV.DateAdded, m.KEV.DueDate
	}
	if m.HasEPSS {
		x.HasEPSS, x.EPSSPercentile = true, m.EPSS.Percentile
	}
	return x
}
