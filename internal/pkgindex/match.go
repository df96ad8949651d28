package pkgindex

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/package-url/packageurl-go"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Matcher selects units.
type Matcher func(*Unit) bool

var pep503 = regexp.MustCompile(`[-_.]+`)

// normName folds a package name the way its ecosystem compares names:
// case-insensitively, and for Python with runs of "-", "_" and "." alike
// (PEP 503).
func normName(typ, name string) string {
	n := strings.ToLower(name)
	switch typ {
	case "python-pkg", "pip", "pipenv", "poetry", "uv", "conda-pkg":
		n = pep503.ReplaceAllString(n, "-")
	}
	return n
}

// NameMatcher matches units named name: the package name (folded as its
// ecosystem compares names), the source package an OS package was built
// from (so "openssl" finds libssl3 and libcrypto3), or the artifact id of
// a Maven "group:artifact" name (so "log4j-core" finds
// org.apache.logging.log4j:log4j-core). c, when not nil, must hold for the
// unit's version.
func NameMatcher(name string, c *Constraint) Matcher {
	want := strings.ToLower(strings.TrimSpace(name))
	wantPy := pep503.ReplaceAllString(want, "-")
	return func(u *Unit) bool {
		ok := false
		switch n := normName(u.Type, u.Name); {
		case n == want || n == wantPy:
			ok = true
		case u.Class == contract.ClassOSPackages && u.SrcName != "" && strings.ToLower(u.SrcName) == want:
			ok = true
		default:
			if _, artifact, found := strings.Cut(u.Name, ":"); found && strings.ToLower(artifact) == want {
				ok = true
			}
		}
		return ok && (c == nil || c.Match(u.Type, u.Version))
	}
}

// PURLQuery is a parsed --purl.
type PURLQuery struct {
	p packageurl.PackageURL
}

// ParsePURL parses a package URL query: type and name are required; a
// version, namespace and qualifiers narrow the match when given.
func ParsePURL(s string) (*PURLQuery, error) {
	p, err := packageurl.FromString(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	if p.Type == "" || p.Name == "" {
		return nil, fmt.Errorf("%q: a package URL needs a type and a name (pkg:type/namespace/name@version)", s)
	}
	return &PURLQuery{p: p}, nil
}

// HasVersion reports whether the query names a version.
func (q *PURLQuery) HasVersion() bool { return q.p.Version != "" }

// Matcher matches units whose package URL has the query's type, name and
// namespace (any namespace when the query gives none), its version when it has one (else c's constraint, when not
// nil), and every qualifier it gives.
func (q *PURLQuery) Matcher(c *Constraint) Matcher {
	prefix := "pkg:" + q.p.Type + "/"
	return func(u *Unit) bool {
		if !strings.HasPrefix(u.PURL, prefix) {
			return false
		}
		got, err := packageurl.FromString(u.PURL)
		if err != nil {
			return false
		}
		// Without a namespace the query matches the name in any namespace
		// (pkg:apk/musl finds pkg:apk/alpine/musl).
		if q.p.Namespace != "" && !strings.EqualFold(got.Namespace, q.p.Namespace) {
			return false
		}
		if !strings.EqualFold(got.Name, q.p.Name) {
			return false
		}
		if q.p.Version != "" && got.Version != q.p.Version {
			return false
		}
		if q.p.Version == "" && c != nil && !c.Match(u.Type, u.Version) {
			return false
		}
		have := got.Qualifiers.Map()
		for _, qual := range q.p.Qualifiers {
			if have[qual.Key] != qual.Value {
				return false
			}
		}
		return true
	}
}
