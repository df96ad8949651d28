package report

import (
	"iter"

	"github.com/fleetscan/fleetscan/internal/sla"
)

// identitySet is the set of SLA identities a report's rows show, each with
// its first row's severity. A fleet has hundreds of thousands of them, so
// an identity is kept as two indexes — its repository and its
// (vulnerability, package, path) — 8 bytes instead of four strings.
type identitySet struct {
	repos   []string
	repoIdx map[string]uint32
	pkgs    []vulnPkg
	pkgIdx  map[vulnPkg]uint32
	// byVuln caches each shared Vuln's pkgs index.
	byVuln map[*Vuln]uint32
	sevs   []string
	sevIdx map[string]uint32
	ids    map[identityKey]uint8
}

// vulnPkg is an identity without its repository.
type vulnPkg struct{ id, pkg, path string }

type identityKey struct{ repo, pkg uint32 }

func newIdentitySet() *identitySet {
	return &identitySet{repoIdx: map[string]uint32{}, pkgIdx: map[vulnPkg]uint32{}, byVuln: map[*Vuln]uint32{},
		sevIdx: map[string]uint32{}, ids: map[identityKey]uint8{}}
}

// add records identity(repo, v) with v's severity, unless already present.
func (s *identitySet) add(repo string, v *Vuln) {
	k := identityKey{repo: intern(&s.repos, s.repoIdx, repo), pkg: s.vulnPkg(v)}
	if _, dup := s.ids[k]; !dup {
		s.ids[k] = uint8(intern(&s.sevs, s.sevIdx, v.Severity))
	}
}

func (s *identitySet) vulnPkg(v *Vuln) uint32 {
	if i, ok := s.byVuln[v]; ok {
		return i
	}
	i := intern(&s.pkgs, s.pkgIdx, vulnPkg{id: v.ID, pkg: v.PkgName, path: v.PkgPath})
	s.byVuln[v] = i
	return i
}

// all yields each identity and its severity.
func (s *identitySet) all() iter.Seq2[sla.Identity, string] {
	return func(yield func(sla.Identity, string) bool) {
		for k, sev := range s.ids {
			p := s.pkgs[k.pkg]
			id := sla.Identity{Repository: s.repos[k.repo], VulnerabilityID: p.id, PkgName: p.pkg, PkgPath: p.path}
			if !yield(id, s.sevs[sev]) {
				return
			}
		}
	}
}

// intern is v's index in *list, appending it when new.
func intern[T comparable](list *[]T, idx map[T]uint32, v T) uint32 {
	if i, ok := idx[v]; ok {
		return i
	}
	i := uint32(len(*list))
	*list = append(*list, v)
	idx[v] = i
	return i
}
