package sla

// idKey is an Identity as two indexes into an identities table: its
// repository, and its vulnerability, package and path. A fleet of a million
// findings has hundreds of thousands of identities; keyed by the 64-byte
// Identity, the clock's maps held hundreds of megabytes.
type idKey struct{ repo, rest uint32 }

// idRest is the part of an Identity other than the repository: shared by
// every repository whose images carry the same package.
type idRest struct{ vuln, pkg, path string }

// identities interns identities into idKeys (not safe for concurrent
// inserts).
type identities struct {
	repoIndex map[string]uint32
	repos     []string
	restIndex map[idRest]uint32
	rests     []idRest
}

func newIdentities() *identities {
	return &identities{repoIndex: map[string]uint32{}, restIndex: map[idRest]uint32{}}
}

// key interns id.
func (t *identities) key(id Identity) idKey {
	r, ok := t.repoIndex[id.Repository]
	if !ok {
		r = uint32(len(t.repos))
		t.repoIndex[id.Repository] = r
		t.repos = append(t.repos, id.Repository)
	}
	rest := idRest{id.VulnerabilityID, id.PkgName, id.PkgPath}
	x, ok := t.restIndex[rest]
	if !ok {
		x = uint32(len(t.rests))
		t.restIndex[rest] = x
		t.rests = append(t.rests, rest)
	}
	return idKey{r, x}
}

// find is id's key when id was interned.
func (t *identities) find(id Identity) (idKey, bool) {
	r, ok := t.repoIndex[id.Repository]
	if !ok {
		return idKey{}, false
	}
	x, ok := t.restIndex[idRest{id.VulnerabilityID, id.PkgName, id.PkgPath}]
	return idKey{r, x}, ok
}

// identity is the Identity of k, with the interned strings.
func (t *identities) identity(k idKey) Identity {
	rest := t.rests[k.rest]
	return Identity{Repository: t.repos[k.repo], VulnerabilityID: rest.vuln, PkgName: rest.pkg, PkgPath: rest.path}
}

// severityOf is the severity of a SeverityRank.
func severityOf(rank uint8) string { return Severities[min(int(rank), len(Severities)-1)] }
