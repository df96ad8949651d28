package feeds

import (
	"fmt"
	"time"
)

// Kind names a feed.
type Kind string

const (
	// KEV is CISA's Known Exploited Vulnerabilities catalogue.
	KEV Kind = "kev"
	// EPSS is FIRST's daily Exploit Prediction Scoring System file.
	EPSS Kind = "epss"
)

// Kinds lists the feeds in a stable order.
var Kinds = []Kind{KEV, EPSS}

// Title is the feed's name in messages.
func (k Kind) Title() string {
	if k == KEV {
		return "KEV catalogue"
	}
	return "EPSS scores"
}

// Flag is the flag that sets the feed's source.
func (k Kind) Flag() string { return "--" + string(k) + "-url" }

// Meta describes a stored copy of a feed: where and when it was fetched,
// and what the content says about itself. It is meta.json in a generation
// directory and the metadata of the feed's object in JetStream.
type Meta struct {
	Feed Kind `json:"feed"`
	// Source is where it was fetched from (credentials and query
	// redacted).
	Source string `json:"source"`
	// File is the data file's name in its generation directory.
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// FetchedAt is when this content was downloaded; CheckedAt the last
	// time the source was seen to still serve it (a 304, or the same
	// bytes).
	FetchedAt time.Time `json:"fetchedAt"`
	CheckedAt time.Time `json:"checkedAt"`
	// ETag and LastModified make the next fetch conditional.
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"lastModified,omitempty"`
	// Version is the KEV catalogVersion or the EPSS model_version; Date the
	// KEV dateReleased or the EPSS score_date; Entries the number of CVEs.
	Version string    `json:"version"`
	Date    time.Time `json:"date"`
	Entries int       `json:"entries"`
}

// FreshAsOf is the time a copy's age counts from. EPSS is published daily,
// so its score_date says how current it is (a mirror that stopped updating
// shows). CISA publishes KEV only when it adds entries — two weeks without a
// release happen — so the catalogue's own date says nothing about
// freshness; what counts is when the source last confirmed it.
func (m Meta) FreshAsOf() time.Time {
	if m.Feed == EPSS {
		return m.Date
	}
	if !m.CheckedAt.IsZero() {
		return m.CheckedAt
	}
	return m.FetchedAt
}

// State is what a reader can say about a feed.
type State string

const (
	// StateFresh: loaded and younger than the maximum age.
	StateFresh State = "fresh"
	// StateStale: loaded, older than the maximum age (--max-enrichment-age).
	StateStale State = "stale"
	// StateNeverLoaded: no copy was ever stored (a state, not an error:
	// the feed may be disabled, or the updater has not run yet).
	StateNeverLoaded State = "never loaded"
	// StateUnreadable: a stored copy exists but could not be read.
	StateUnreadable State = "unreadable"
)

// Status is one feed as Load found it.
type Status struct {
	Feed Kind
	// Loaded is true when a stored copy was read and validated.
	Loaded bool
	// Meta describes the loaded copy (zero unless Loaded).
	Meta Meta
	// MaxAge is the age past which the copy is stale (--max-enrichment-age).
	MaxAge time.Duration
	// Err says why a stored copy could not be read; nil when it was read
	// or when there is none.
	Err error
}

// Age is how old the copy is at now: for EPSS since its score_date, for
// KEV since the source last confirmed it (see Meta). Zero when not loaded.
func (s Status) Age(now time.Time) time.Duration {
	if !s.Loaded {
		return 0
	}
	return now.Sub(s.Meta.FreshAsOf())
}

// Stale reports whether a loaded copy is older than MaxAge at now.
func (s Status) Stale(now time.Time) bool {
	return s.Loaded && s.MaxAge > 0 && s.Age(now) > s.MaxAge
}

// Degraded reports whether the feed makes the report incomplete at now:
// stale, or stored but unreadable. A feed never loaded is not degraded.
func (s Status) Degraded(now time.Time) bool { return s.Stale(now) || s.Err != nil }

// State classifies the feed at now.
func (s Status) State(now time.Time) State {
	switch {
	case s.Err != nil:
		return StateUnreadable
	case !s.Loaded:
		return StateNeverLoaded
	case s.Stale(now):
		return StateStale
	}
	return StateFresh
}

// Describe is one line for reports and logs, e.g.
// "KEV catalogue 2025.08.25 (1404 CVEs, released 2025-08-25, fetched
// 2025-08-26 from https://…): fresh".
func (s Status) Describe(now time.Time) string {
	st := s.State(now)
	switch st {
	case StateNeverLoaded:
		return s.Feed.Title() + ": never loaded"
	case StateUnreadable:
		return fmt.Sprintf("%s: unreadable: %v", s.Feed.Title(), s.Err)
	}
	dated := "released"
	if s.Feed == EPSS {
		dated = "scores of"
	}
	out := fmt.Sprintf("%s %s (%d CVEs, %s %s, fetched %s from %s): %s", s.Feed.Title(), s.Meta.Version, s.Meta.Entries,
		dated, s.Meta.Date.UTC().Format(time.DateOnly), s.Meta.FetchedAt.UTC().Format(time.DateOnly), s.Meta.Source, st)
	if st == StateStale {
		out += fmt.Sprintf(" (%s old, more than %s)", roundAge(s.Age(now)), roundAge(s.MaxAge))
	}
	return out
}

// roundAge renders a duration in days and hours ("8d4h").
func roundAge(d time.Duration) string {
	d = d.Round(time.Hour)
	days := d / (24 * time.Hour)
	hours := (d % (24 * time.Hour)) / time.Hour
	switch {
	case days == 0:
		return fmt.Sprintf("%dh", hours)
	case hours == 0:
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}
