package report

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
// KEV-listed first, then by deadline and severity.
func BuildTickets(findings iter.Seq[*Finding]) []Ticket {
	groups := map[[2]string]*ticketGroup{}
	var order []*ticketGroup
	for f := range findings {
		switch f.Status {
		case sla.StatusAccepted, sla.StatusNotAffected, sla.StatusFixed:
			continue // accepted, or not exploitable per VEX: no work
		}
		repo := TicketRepository(f)
		k := [2]string{repo, f.PkgName}
		g := groups[k]
		if g == nil {
			g = newTicketGroup(repo, f)
			groups[k] = g
			order = append(order, g)
		}
		g.add(f)
	}
	out := make([]Ticket, 0, len(order))
	where := newPlaces()
	for _, g := range order {
		out = append(out, g.ticket(where))
	}
	slices.SortStableFunc(out, func(a, b Ticket) int {
		return cmp.Or(cmpBool(b.Breached, a.Breached), cmpBool(b.KEV, a.KEV),
			a.Deadline.Compare(b.Deadline),
			cmp.Compare(sla.SeverityRank(a.Severity), sla.SeverityRank(b.Severity)),
			strings.Compare(a.Repository, b.Repository), strings.Compare(a.Package, b.Package))
	})
	return out
}

// TicketID is the stable ticket ID of a package of an image repository.
func TicketID(repo, pkg string) string {
	h := sha256.Sum256([]byte(repo + "\x00" + pkg))
	return "FS-" + strings.ToUpper(hex.EncodeToString(h[:5]))
}

// TicketRepository is the repository a finding's ticket is grouped under.
func TicketRepository(f *Finding) string {
	if repo := sla.Repository(f.Image()); repo != "" {
		return repo
	}
	return f.Digest()
}

// ticketGroup gathers the findings of one (repository, package) ticket.
// A fleet has one per repository and package, so the sets are lists
// (duplicates are dropped when the ticket is completed) rather than maps.
type ticketGroup struct {
	t         *Ticket
	installed []string
	fixes     []string
	unfixed   []string
	kev       []string
	images    []*Image
	targets   []string
}

// newTicketGroup starts the ticket of repo's package with its first
// finding f.
func newTicketGroup(repo string, f *Finding) *ticketGroup {
	return &ticketGroup{t: &Ticket{
		ID: TicketID(repo, f.PkgName), Repository: repo, Package: f.PkgName,
		Severity: f.Severity, Deadline: f.Deadline,
	}}
}

// add folds f into the ticket: the worst severity, the earliest deadline,
// the installed versions and the upgrade targets.
func (g *ticketGroup) add(f *Finding) {
	t := g.t
	if sla.SeverityRank(f.Severity) < sla.SeverityRank(t.Severity) {
		t.Severity = f.Severity
	}
	if f.Deadline.Before(t.Deadline) {
		t.Deadline = f.Deadline
	}
	t.Breached = t.Breached || f.Breached
	if f.Exploit.InKEV() {
		g.kev = appendNew(g.kev, f.ID)
	}
	if f.PkgVersion != "" {
		g.installed = appendNew(g.installed, f.PkgVersion)
	}
	if target := fixTarget(f.PkgVersion, f.FixedVersion); target != "" {
		g.fixes = appendNew(g.fixes, f.ID)
		g.targets = appendNew(g.targets, target)
	} else {
		g.unfixed = appendNew(g.unfixed, f.ID)
	}
	if n := len(g.images); n == 0 || g.images[n-1] != f.Img {
		g.images = append(g.images, f.Img)
	}
}

// appendNew appends s unless it is the last element (the rest of the
// duplicates are dropped by sortedSet).
func appendNew(list []string, s string) []string {
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

// ticket completes the ticket: the highest upgrade target, the fixed and
// unfixed vulnerabilities, the images and workloads, the summary line.
func (g *ticketGroup) ticket(where *places) Ticket {
	t := g.t
	t.Installed = sortedVersions(sortedSet(g.installed))
	for _, v := range g.targets {
		if t.FixedVersion == "" || CompareVersions(v, t.FixedVersion) > 0 {
			t.FixedVersion = v
		}
	}
	t.Fixes = nonNil(sortedSet(g.fixes))
	// Fixed in one image, so the upgrade covers it.
	t.Unfixed = nonNil(slices.DeleteFunc(sortedSet(g.unfixed), func(id string) bool {
		_, fixed := slices.BinarySearch(t.Fixes, id)
		return fixed
	}))
	t.KEVVulnerabilities = nonNil(sortedSet(g.kev))
	t.KEV = len(t.KEVVulnerabilities) > 0
	p := where.of(g.images)
	t.Images, t.Platforms, t.Workloads, t.OwnerInferred = p.images, p.platforms, p.workloads, p.inferred
	t.Summary = ticketSummary(t)
	return *t
}

// place is where a set of images runs, as tickets list it.
type place struct{ images, platforms, workloads, inferred []string }

// places shares the lists of tickets that cover the same images: a
// repository's packages mostly do, and its workloads can number thousands.
// The lists are clipped, so appending to one copies it.
type places struct {
	index map[*Image]uint32
	byKey map[string]*place
	key   []byte
}

func newPlaces() *places { return &places{index: map[*Image]uint32{}, byKey: map[string]*place{}} }

// of returns the place of images (in the order a ticket group met them).
func (ps *places) of(images []*Image) *place {
	ps.key = ps.key[:0]
	for _, img := range images {
		i, ok := ps.index[img]
		if !ok {
			i = uint32(len(ps.index))
			ps.index[img] = i
		}
		ps.key = binary.LittleEndian.AppendUint32(ps.key, i)
	}
	if p, ok := ps.byKey[string(ps.key)]; ok {
		return p
	}
	var digests, platforms, workloads, inferred []string
	for _, img := range images {
		digests = append(digests, img.Key.Digest)
		platforms = append(platforms, img.Platform)
		workloads = append(workloads, img.Workloads...)
		inferred = append(inferred, img.OwnerInferred...)
	}
	p := &place{images: clipped(digests), platforms: clipped(platforms), workloads: clipped(workloads), inferred: clipped(inferred)}
	ps.byKey[string(ps.key)] = p
	return p
}

// clipped is the sorted set of list, never nil, without spare capacity.
func clipped(list []string) []string { return slices.Clip(nonNil(sortedSet(list))) }

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
