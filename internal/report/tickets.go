package report

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// maxSummaryIDs bounds the vulnerability IDs spelled out in a summary.
const maxSummaryIDs = 6

// BuildTickets groups findings that are not accepted into one ticket per
// (image repository, package): the upgrade that fixes them, the worst
// severity, the earliest deadline (its earliest row's, exploit-aware rules
// included), the KEV-listed vulnerabilities and the affected workloads.
// findings must already be sorted; tickets come out breached first, then
// KEV-listed first, then by deadline and severity. The tickets are kept
// compactly and rendered when read (see Tickets).
func BuildTickets(findings iter.Seq[*Finding]) Tickets {
	in := newTicketInterner()
	groups := map[[2]uint32]*ticketGroup{}
	var order []*ticketGroup
	repos := map[*Image]uint32{}
	for f := range findings {
		switch f.Status {
		case sla.StatusAccepted, sla.StatusNotAffected, sla.StatusFixed:
			continue // accepted, or not exploitable per VEX: no work
		}
		repo, ok := repos[f.Img]
		if !ok {
			repo = in.str(TicketRepository(f))
			repos[f.Img] = repo
		}
		k := [2]uint32{repo, in.str(f.PkgName)}
		g := groups[k]
		if g == nil {
			g = &ticketGroup{rec: ticketRec{repo: k[0], pkg: k[1], sev: in.sev(f.Severity), deadline: unixNano(f.Deadline)}}
			groups[k] = g
			order = append(order, g)
		}
		g.add(f, in)
	}
	return completeTickets(order, in)
}

// completeTickets completes the groups' records, lays their lists out in
// one table and sorts the records.
func completeTickets(order []*ticketGroup, in *ticketInterner) Tickets {
	where := newPlaces()
	total := 0
	for _, g := range order {
		g.complete(in, where)
		for _, l := range g.lists {
			total += len(l)
		}
	}
	tab := in.tab
	tab.places = where.list
	tab.strs = slices.Clip(tab.strs)
	tab.ids = make([]uint32, 0, total)
	recs := make([]ticketRec, len(order))
	for i, g := range order {
		g.rec.lists = uint32(len(tab.ids))
		for j, l := range g.lists {
			g.rec.n[j] = uint32(len(l))
			tab.ids = append(tab.ids, l...)
		}
		recs[i] = g.rec
	}
	slices.SortStableFunc(recs, func(a, b ticketRec) int { return tab.compare(&a, &b) })
	return Tickets{recs: recs, tab: tab}
}

// TicketID is the stable ticket ID of a package of an image repository.
// Tickets render it when read, so it costs one allocation.
func TicketID(repo, pkg string) string {
	const digits = "0123456789ABCDEF"
	var buf [256]byte
	key := append(append(append(buf[:0], repo...), 0), pkg...)
	h := sha256.Sum256(key)
	id := [13]byte{'F', 'S', '-'}
	for i, c := range h[:5] {
		id[3+2*i], id[4+2*i] = digits[c>>4], digits[c&0xf]
	}
	return string(id[:])
}

// TicketRepository is the repository a finding's ticket is grouped under.
func TicketRepository(f *Finding) string {
	if repo := sla.Repository(f.Image()); repo != "" {
		return repo
	}
	return f.Digest()
}

// ticketGroup gathers the findings of one (repository, package) ticket,
// its strings interned. A fleet has one per repository and package, so
// the sets are lists (duplicates are dropped when the ticket is
// completed) rather than maps.
type ticketGroup struct {
	rec     ticketRec
	lists   [ticketLists][]uint32
	targets []uint32
	images  []*Image
}

// add folds f into the ticket: the worst severity, the earliest deadline,
// the installed versions and the upgrade targets.
func (g *ticketGroup) add(f *Finding, in *ticketInterner) {
	r := &g.rec
	if sla.SeverityRank(f.Severity) < in.tab.sevRank[r.sev] {
		r.sev = in.sev(f.Severity)
	}
	if d := unixNano(f.Deadline); d < r.deadline {
		r.deadline = d
	}
	r.breached = r.breached || f.Breached
	if f.Exploit.InKEV() {
		g.lists[listKEV] = appendNew(g.lists[listKEV], in.str(f.ID))
	}
	if f.PkgVersion != "" {
		g.lists[listInstalled] = appendNew(g.lists[listInstalled], in.str(f.PkgVersion))
	}
	if target := fixTarget(f.PkgVersion, f.FixedVersion); target != "" {
		g.lists[listFixes] = appendNew(g.lists[listFixes], in.str(f.ID))
		g.targets = appendNew(g.targets, in.str(target))
	} else {
		g.lists[listUnfixed] = appendNew(g.lists[listUnfixed], in.str(f.ID))
	}
	if n := len(g.images); n == 0 || g.images[n-1] != f.Img {
		g.images = append(g.images, f.Img)
	}
}

// appendNew appends s unless it is the last element (the rest of the
// duplicates are dropped by sortedIDs).
func appendNew(list []uint32, s uint32) []uint32 {
	if n := len(list); n > 0 && list[n-1] == s {
		return list
	}
	return append(list, s)
}

// sortedSet sorts list and drops duplicates, in place.
func sortedSet(list []string) []string {
	slices.Sort(list)
	return slices.Compact(list)
}

// complete completes the ticket's record and lists: the installed
// versions in version order, the highest upgrade target, the fixed and
// unfixed vulnerabilities, the KEV-listed ones, the images and workloads.
func (g *ticketGroup) complete(in *ticketInterner, where *places) {
	strs := in.tab.strs
	installed := in.sortedIDs(g.lists[listInstalled])
	slices.SortStableFunc(installed, func(a, b uint32) int { return CompareVersions(strs[a], strs[b]) })
	g.lists[listInstalled] = installed
	for _, v := range g.targets {
		if g.rec.fixed == 0 || CompareVersions(strs[v], strs[g.rec.fixed]) > 0 {
			g.rec.fixed = v
		}
	}
	fixes := in.sortedIDs(g.lists[listFixes])
	g.lists[listFixes] = fixes
	// Fixed in one image, so the upgrade covers it.
	g.lists[listUnfixed] = slices.DeleteFunc(in.sortedIDs(g.lists[listUnfixed]), func(id uint32) bool {
		_, fixed := slices.BinarySearchFunc(fixes, strs[id], func(f uint32, s string) int { return strings.Compare(strs[f], s) })
		return fixed
	})
	g.lists[listKEV] = in.sortedIDs(g.lists[listKEV])
	g.rec.kev = len(g.lists[listKEV]) > 0
	g.rec.place = where.of(g.images)
}

// place is where a set of images runs, as tickets list it.
type place struct{ images, platforms, workloads, inferred []string }

// places shares the lists of tickets that cover the same images: a
// repository's packages mostly do, and its workloads can number thousands.
// The lists are clipped, so appending to one copies it.
type places struct {
	index map[*Image]uint32
	byKey map[string]uint32
	list  []*place
	key   []byte
}

func newPlaces() *places { return &places{index: map[*Image]uint32{}, byKey: map[string]uint32{}} }

// of returns the index in ps.list of the place of images (in the order a
// ticket group met them).
func (ps *places) of(images []*Image) uint32 {
	ps.key = ps.key[:0]
	for _, img := range images {
		i, ok := ps.index[img]
		if !ok {
			i = uint32(len(ps.index))
			ps.index[img] = i
		}
		ps.key = binary.LittleEndian.AppendUint32(ps.key, i)
	}
	if i, ok := ps.byKey[string(ps.key)]; ok {
		return i
	}
	var digests, platforms, workloads, inferred []string
	for _, img := range images {
		digests = append(digests, img.Key.Digest)
		platforms = append(platforms, img.Platform)
		workloads = append(workloads, img.Workloads...)
		inferred = append(inferred, img.OwnerInferred...)
	}
	i := uint32(len(ps.list))
	ps.list = append(ps.list, &place{images: clipped(digests), platforms: clipped(platforms),
		workloads: clipped(workloads), inferred: clipped(inferred)})
	ps.byKey[string(ps.key)] = i
	return i
}

// clipped is the sorted set of list, never nil, without spare capacity.
func clipped(list []string) []string { return slices.Clip(nonNil(sortedSet(list))) }

// ticketSummary is the ticket's summary line (Ticket.Summary).
func ticketSummary(t *Ticket) string {
	installed := strings.Join(t.Installed, ", ")
	if installed == "" {
		installed = "(unknown version)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", t.Package, installed)
	if t.FixedVersion != "" {
		fmt.Fprintf(&b, " → %s fixes %s", t.FixedVersion, idList(t.Fixes))
		if len(t.Unfixed) > 0 {
			fmt.Fprintf(&b, " (no fix yet: %s)", idList(t.Unfixed))
		}
	} else {
		fmt.Fprintf(&b, ": no fix available yet for %s", idList(t.Unfixed))
	}
	fmt.Fprintf(&b, " in %s", t.Repository)
	if t.KEV {
		fmt.Fprintf(&b, " [KEV: %s]", idList(t.KEVVulnerabilities))
	}
	return b.String()
}

func idList(ids []string) string {
	if len(ids) <= maxSummaryIDs {
		return strings.Join(ids, ", ")
	}
	return strings.Join(ids[:maxSummaryIDs], ", ") + fmt.Sprintf(" and %d more", len(ids)-maxSummaryIDs)
}

// fixTarget picks the version to upgrade to from a fixed-version field,
// which may list alternatives for several release lines ("3.0.12-r0,
// 3.1.4-r0"): the lowest alternative above the installed version, else the
// highest. Empty when there is no fix.
func fixTarget(installed, fixed string) string {
	var best, highest string
	for _, c := range strings.Split(fixed, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if highest == "" || CompareVersions(c, highest) > 0 {
			highest = c
		}
		if installed != "" && CompareVersions(c, installed) > 0 && (best == "" || CompareVersions(c, best) < 0) {
			best = c
		}
	}
	if best != "" {
		return best
	}
	return highest
}

// sortedVersions orders a sorted set of versions by CompareVersions.
func sortedVersions(set []string) []string {
	out := nonNil(set)
	slices.SortStableFunc(out, CompareVersions)
	return out
}

// CompareVersions orders version strings across ecosystems well enough to
// choose an upgrade target: digit runs compare numerically, other runs
// lexically, '~' sorts before everything (Debian pre-releases), and a
// leading "v" or epoch-less form is taken as is. It is not a full
// implementation of any one ecosystem's rules.
func CompareVersions(a, b string) int {
	a, b = strings.TrimPrefix(a, "v"), strings.TrimPrefix(b, "v")
	for a != "" || b != "" {
		if a == "" || b == "" {
			// "1.0~rc1" < "1.0"; otherwise the longer version is newer.
			rest, sign := a, 1
			if a == "" {
				rest, sign = b, -1
			}
			if strings.HasPrefix(rest, "~") {
				return -sign
			}
			return sign
		}
		da, db := isDigit(a[0]), isDigit(b[0])
		switch {
		case da && db:
			na, ra := cutRun(a, true)
			nb, rb := cutRun(b, true)
			na, nb = strings.TrimLeft(na, "0"), strings.TrimLeft(nb, "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			a, b = ra, rb
		case da != db:
			// A number sorts after a separator or letter run ("1.10" > "1.a").
			if a[0] == '~' {
				return -1
			}
			if b[0] == '~' {
				return 1
			}
			if da {
				return 1
			}
			return -1
		default:
			sa, ra := cutRun(a, false)
			sb, rb := cutRun(b, false)
			if c := compareText(sa, sb); c != 0 {
				return c
			}
			a, b = ra, rb
		}
	}
	return 0
}

func compareText(a, b string) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] == b[i] {
			continue
		}
		if a[i] == '~' {
			return -1
		}
		if b[i] == '~' {
			return 1
		}
		return cmp.Compare(a[i], b[i])
	}
	return cmp.Compare(len(a), len(b))
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func cutRun(s string, digits bool) (string, string) {
	i := 0
	for i < len(s) && isDigit(s[i]) == digits {
		i++
	}
	return s[:i], s[i:]
}
