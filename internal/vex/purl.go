package vex

import (
	"strings"

	"github.com/package-url/packageurl-go"
)

func isOCI(p string) bool { return strings.HasPrefix(strings.ToLower(p), "pkg:oci/") }

// PURLMatches reports whether the package URL constraint (from a
// statement) names the package target: type, namespace and name equal
// (case-insensitively), the constraint's version (if any) equal to the
// target's, and each qualifier of the constraint equal to the target's
// when the target has it (a finding from an older result may lack the
// architecture). Invalid PURLs match nothing.
func PURLMatches(constraint, target string) bool {
	if constraint == "" || target == "" {
		return false
	}
	c, err := packageurl.FromString(constraint)
	if err != nil {
		return false
	}
	t, err := packageurl.FromString(target)
	if err != nil {
		return false
	}
	switch {
	case !strings.EqualFold(c.Type, t.Type), !strings.EqualFold(c.Namespace, t.Namespace), !strings.EqualFold(c.Name, t.Name):
		return false
	case c.Version != "" && c.Version != t.Version:
		return false
	case c.Subpath != "" && c.Subpath != t.Subpath:
		return false
	}
	tq := t.Qualifiers.Map()
	for k, v := range c.Qualifiers.Map() {
		if tv, ok := tq[k]; ok && tv != v {
			return false
		}
	}
	return true
}

// ImageMatches reports whether an OCI package URL names the image with
// these repositories, digest and architecture: the digest (the PURL's
// version) when given, else any digest; the repository_url qualifier when
// given, else the last path element of a repository; the arch qualifier
// when given.
func ImageMatches(product string, repos []string, digest, arch string) bool {
	p, err := packageurl.FromString(product)
	if err != nil || !strings.EqualFold(p.Type, packageurl.TypeOCI) {
		return false
	}
	if p.Version != "" && !strings.EqualFold(p.Version, digest) {
		return false
	}
	q := p.Qualifiers.Map()
	if a, ok := q["arch"]; ok && arch != "" && a != arch {
		return false
	}
	want := ""
	if u, ok := q["repository_url"]; ok {
		want = NormalizeRepository(u)
	}
	for _, r := range repos {
		r = NormalizeRepository(r)
		if want != "" {
			if r == want {
				return true
			}
			continue
		}
		if strings.EqualFold(r[strings.LastIndexByte(r, '/')+1:], p.Name) {
			return true
		}
	}
	return false
}

// NormalizeRepository makes repository names comparable: lower case,
// without scheme, and Docker Hub's index.docker.io and registry-1 aliases
// as docker.io.
func NormalizeRepository(r string) string {
	r = strings.ToLower(strings.TrimSpace(r))
	r = strings.TrimPrefix(strings.TrimPrefix(r, "https://"), "http://")
	r = strings.TrimSuffix(r, "/")
	for _, alias := range []string{"index.docker.io/", "registry-1.docker.io/"} {
		if strings.HasPrefix(r, alias) {
			r = "docker.io/" + strings.TrimPrefix(r, alias)
		}
	}
	return r
}

// ImagePURL is the OCI package URL of an image, as Trivy writes it:
// pkg:oci/<last path element>@<digest>?repository_url=<repository>
// (Docker Hub as index.docker.io). An empty digest gives the
// repository-wide PURL.
func ImagePURL(repo, digest string) string {
	repo = NormalizeRepository(repo)
	name := repo[strings.LastIndexByte(repo, '/')+1:]
	url := repo
	if strings.HasPrefix(url, "docker.io/") {
		url = "index.docker.io/" + strings.TrimPrefix(url, "docker.io/")
	}
	return packageurl.NewPackageURL(packageurl.TypeOCI, "", name, digest,
		packageurl.Qualifiers{{Key: "repository_url", Value: url}}, "").ToString()
}
