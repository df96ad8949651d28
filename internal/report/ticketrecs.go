package report

import (
	"cmp"
	"encoding/json"
	"iter"
	"math"
	"slices"
	"strings"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// Tickets are the report's tickets in report order. A built report keeps
// each ticket as a compact record — indexes into tables of the strings,
// lists and places its tickets share, its deadline and flags, 48 bytes —
// and renders the Ticket, its summary included, only when it is read (as
// Rows do), so a fleet's tickets cost a record and their list entries
// rather than rendered tickets. Tickets made with TicketsOf hold rendered
// Tickets (tests, small reports).
type Tickets struct {
	list []Ticket
	recs []ticketRec
	tab  *ticketTables
}

// TicketsOf makes tickets of tickets, in the order given.
func TicketsOf(tickets ...Ticket) Tickets { return Tickets{list: tickets} }

// Len is the number of tickets.
func (t Tickets) Len() int {
	if t.tab != nil {
		return len(t.recs)
	}
	return len(t.list)
}

// At renders ticket i (tickets made with TicketsOf: the ticket itself).
func (t Tickets) At(i int) *Ticket {
	if t.tab == nil {
		return &t.list[i]
	}
	tk := new(Ticket)
	t.tab.render(&t.recs[i], tk)
	return tk
}

// All yields every ticket in order. The Ticket yielded is reused for the
// next ticket: copy it (*t) to keep it (its lists are not reused). Several
// goroutines may range over the same tickets at once.
func (t Tickets) All() iter.Seq[*Ticket] {
	return func(yield func(*Ticket) bool) {
		if t.tab == nil {
			for i := range t.list {
				if !yield(&t.list[i]) {
					return
				}
			}
			return
		}
		var tk Ticket
		for i := range t.recs {
			t.tab.render(&t.recs[i], &tk)
			if !yield(&tk) {
				return
			}
		}
	}
}

// Slice renders every ticket: a copy a caller may change (tests, small
// reports; a fleet's writers range over All instead).
func (t Tickets) Slice() []Ticket {
	out := make([]Ticket, 0, t.Len())
	for tk := range t.All() {
		out = append(out, *tk)
	}
	return out
}

// MarshalJSON encodes the tickets as a JSON array of Ticket (never null).
func (t Tickets) MarshalJSON() ([]byte, error) { return json.Marshal(t.Slice()) }

// ticketRec is one ticket, compactly: indexes into the report's
// ticketTables, and its deadline as Unix nanoseconds (the report's times
// are UTC).
type ticketRec struct {
	deadline int64
	// repo, pkg and fixed index strs (fixed 0: no fix).
	repo, pkg, fixed uint32
	// place indexes places; lists is where the ticket's lists start in
	// ids, n their lengths (installed, fixes, unfixed, KEV-listed).
	place, lists  uint32
	n             [4]uint32
	sev           uint16
	breached, kev bool
}

// The ticket lists, in the order a record keeps them in ids.
const (
	listInstalled = iota
	listFixes
	listUnfixed
	listKEV
	ticketLists
)

// ticketTables hold what a report's tickets share: the distinct strings
// (repositories, packages, versions, vulnerability IDs; 0 is ""), the
// severities, the tickets' lists as indexes into strs, and the places
// (images, platforms, workloads) tickets cover.
type ticketTables struct {
	strs    []string
	sevs    []string
	sevRank []int
	ids     []uint32
	places  []*place
}

// render fills tk with the ticket rec records: its lists are fresh
// (one allocation), its place lists shared with other tickets.
func (tab *ticketTables) render(rec *ticketRec, tk *Ticket) {
	total := 0
	for _, n := range rec.n {
		total += int(n)
	}
	all := make([]string, total)
	for i, id := range tab.ids[rec.lists : rec.lists+uint32(total)] {
		all[i] = tab.strs[id]
	}
	var lists [ticketLists][]string
	at := 0
	for i, n := range rec.n {
		lists[i] = all[at : at+int(n) : at+int(n)]
		at += int(n)
	}
	repo, pkg := tab.strs[rec.repo], tab.strs[rec.pkg]
	p := tab.places[rec.place]
	*tk = Ticket{
		ID: TicketID(repo, pkg), Repository: repo, Package: pkg,
		Installed: lists[listInstalled], FixedVersion: tab.strs[rec.fixed],
		Fixes: lists[listFixes], Unfixed: lists[listUnfixed],
		Severity: tab.sevs[rec.sev], Deadline: fromUnixNano(rec.deadline), Breached: rec.breached,
		Images: p.images, Platforms: p.platforms, Workloads: p.workloads, OwnerInferred: p.inferred,
		KEV: rec.kev, KEVVulnerabilities: lists[listKEV],
	}
	tk.Summary = ticketSummary(tk)
}

// compare orders two records as BuildTickets orders tickets: breached
// first, then KEV-listed first, then by deadline and severity, and by
// repository and package.
func (tab *ticketTables) compare(a, b *ticketRec) int {
	return cmp.Or(cmpBool(b.breached, a.breached), cmpBool(b.kev, a.kev),
		cmp.Compare(a.deadline, b.deadline), cmp.Compare(tab.sevRank[a.sev], tab.sevRank[b.sev]),
		strings.Compare(tab.strs[a.repo], tab.strs[b.repo]), strings.Compare(tab.strs[a.pkg], tab.strs[b.pkg]))
}

// ticketInterner interns the strings and severities of tickets being
// built into their tables.
type ticketInterner struct {
	tab    *ticketTables
	strIdx map[string]uint32
	sevIdx map[string]uint16
}

func newTicketInterner() *ticketInterner {
	return &ticketInterner{tab: &ticketTables{strs: []string{""}},
		strIdx: map[string]uint32{"": 0}, sevIdx: map[string]uint16{}}
}

func (in *ticketInterner) str(s string) uint32 { return intern(&in.tab.strs, in.strIdx, s) }

func (in *ticketInterner) sev(s string) uint16 {
	if i, ok := in.sevIdx[s]; ok {
		return i
	}
	if len(in.tab.sevs) > math.MaxUint16 {
		panic("report: more than 65536 distinct severities")
	}
	i := uint16(len(in.tab.sevs))
	in.tab.sevs = append(in.tab.sevs, s)
	in.tab.sevRank = append(in.tab.sevRank, sla.SeverityRank(s))
	in.sevIdx[s] = i
	return i
}

// sortedIDs sorts interned strings by their text and drops duplicates,
// in place.
func (in *ticketInterner) sortedIDs(list []uint32) []uint32 {
	strs := in.tab.strs
	slices.SortFunc(list, func(a, b uint32) int { return strings.Compare(strs[a], strs[b]) })
	return slices.Compact(list)
}
