package report

import (
	"cmp"
	"slices"
	"sort"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Fleet merges inventory entries by image key: which references, clusters,
// namespaces and workloads run each digest.
type Fleet struct {
	keys map[contract.ImageKey]*usage
}

type usage struct {
	refs     map[string]int
	clusters map[string]bool
	ns       map[string]bool
	// workloads: name → owner inferred (only when every entry says so).
	workloads map[string]bool
	scopes    map[sla.Scope]bool
}

// NewFleet returns an empty fleet.
func NewFleet() *Fleet { return &Fleet{keys: map[contract.ImageKey]*usage{}} }

// WorkloadName renders "cluster/namespace/Kind/name".
func WorkloadName(cluster string, e contract.InventoryEntry) string {
	kind, name := e.Workload.Kind, e.Workload.Name
	if kind == "" {
		kind, name = "Pod", e.Pod
	}
	return cluster + "/" + e.Namespace + "/" + kind + "/" + name
}

// Add records that cluster runs the entry's image. Unresolved entries are
// ignored (report them as not scanned).
func (f *Fleet) Add(cluster string, e contract.InventoryEntry) {
	key, ok := e.Key()
	if !ok {
		return
	}
	u := f.keys[key]
	if u == nil {
		u = &usage{refs: map[string]int{}, clusters: map[string]bool{}, ns: map[string]bool{},
			workloads: map[string]bool{}, scopes: map[sla.Scope]bool{}}
		f.keys[key] = u
	}
	if e.Image != "" {
		u.refs[e.Image]++
	}
	u.clusters[cluster] = true
	u.ns[e.Namespace] = true
	name := WorkloadName(cluster, e)
	inferred, seen := u.workloads[name]
	u.workloads[name] = e.Workload.Inferred && (!seen || inferred)
	u.scopes[sla.Scope{Cluster: cluster, Namespace: e.Namespace}] = true
}

// Keys lists every image key added, sorted.
func (f *Fleet) Keys() []contract.ImageKey {
	out := make([]contract.ImageKey, 0, len(f.keys))
	for k := range f.keys {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b contract.ImageKey) int {
		return cmp.Or(cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Platform.String(), b.Platform.String()))
	})
	return out
}

// Len is the number of image keys.
func (f *Fleet) Len() int { return len(f.keys) }

// Image returns the usage of key as an Image without findings. fallbackRef
// (the reference a worker pulled) is used when no inventory names the key.
func (f *Fleet) Image(key contract.ImageKey, fallbackRef string) *Image {
	img := &Image{Key: key, Platform: key.Platform.String()}
	u := f.keys[key]
	if u == nil {
		img.Reference = fallbackRef
		if fallbackRef != "" {
			img.Repositories = []string{sla.Repository(fallbackRef)}
		}
		return img
	}
	img.Reference = mostCommon(u.refs)
	if img.Reference == "" {
		img.Reference = fallbackRef
	}
	repos := map[string]bool{}
	for r := range u.refs {
		repos[sla.Repository(r)] = true
	}
	if len(repos) == 0 && fallbackRef != "" {
		repos[sla.Repository(fallbackRef)] = true
	}
	img.Repositories = sortedKeys(repos)
	img.Clusters = sortedKeys(u.clusters)
	img.Namespaces = sortedKeys(u.ns)
	img.Workloads = sortedKeys(u.workloads)
	for _, w := range img.Workloads {
		if u.workloads[w] {
			img.OwnerInferred = append(img.OwnerInferred, w)
		}
	}
	for s := range u.scopes {
		img.Scopes = append(img.Scopes, s)
	}
	slices.SortFunc(img.Scopes, func(a, b sla.Scope) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace))
	})
	return img
}

// Workloads returns the workloads running key (nil when unknown).
func (f *Fleet) Workloads(key contract.ImageKey) []string {
	if u := f.keys[key]; u != nil {
		return sortedKeys(u.workloads)
	}
	return nil
}

// Reference returns the most common reference running key.
func (f *Fleet) Reference(key contract.ImageKey) string {
	if u := f.keys[key]; u != nil {
		return mostCommon(u.refs)
	}
	return ""
}

// mostCommon returns the key with the highest count, the smallest on ties.
func mostCommon(m map[string]int) string {
	best, n := "", 0
	for k, c := range m {
		if c > n || (c == n && k < best) {
			best, n = k, c
		}
	}
	return best
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Interner shares repeated strings (titles, versions, package names) and
// whole findings across images: the same vulnerability in the same package
// version is one Vuln however many images carry it. The zero value is
// ready to use.
type Interner struct {
	strs  map[string]string
	vulns map[Vuln]*Vuln
}

// Intern returns the shared copy of s.
func (in *Interner) Intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in.strs[s]; ok {
		return v
	}
	if in.strs == nil {
		in.strs = map[string]string{}
	}
	in.strs[s] = s
	return s
}

// vuln returns the shared copy of v.
func (in *Interner) vuln(v Vuln) *Vuln {
	if p, ok := in.vulns[v]; ok {
		return p
	}
	if in.vulns == nil {
		in.vulns = map[Vuln]*Vuln{}
	}
	p := new(Vuln) // a copy only when new: v itself stays on the stack
	*p = v
	in.vulns[v] = p
	return p
}

// Compact converts a result's findings to Vulns. in may be nil.
func Compact(findings []contract.Finding, in *Interner) []*Vuln {
	return compact(findings, nil, in)
}

// CompactResult converts a result's findings to Vulns, with package URLs
// computed from the result's OS where the worker did not record them.
func CompactResult(res contract.ScanResult, in *Interner) []*Vuln {
	return compact(res.Findings, res.OS, in)
}

func compact(findings []contract.Finding, os *contract.OSInfo, in *Interner) []*Vuln {
	if in == nil {
		in = &Interner{}
	}
	out := make([]*Vuln, 0, len(findings))
	for _, f := range findings {
		v := Vuln{
			ID:           in.Intern(f.VulnerabilityID),
			PkgName:      in.Intern(f.PkgName),
			PkgVersion:   in.Intern(f.PkgVersion),
			PkgPath:      in.Intern(f.PkgPath),
			PkgType:      in.Intern(f.PkgType),
			PURL:         in.Intern(f.PURL(os)),
			FixedVersion: in.Intern(f.FixedVersion),
			FixStatus:    in.Intern(f.Status),
			Severity:     sla.NormalizeSeverity(f.Severity),
			Title:        in.Intern(f.Title),
			PrimaryURL:   in.Intern(f.PrimaryURL),
		}
		if f.CVSS != nil {
			v.CVSS, v.HasCVSS = f.CVSS.Score, true
		}
		if f.PublishedDate != nil {
			v.Published = f.PublishedDate.UTC()
		}
		out = append(out, in.vuln(v))
	}
	return out
}
