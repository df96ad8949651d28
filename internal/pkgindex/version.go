package pkgindex

import (
	"errors"
	"fmt"
	"strings"

	gem "github.com/aquasecurity/go-gem-version"
	pep440 "github.com/aquasecurity/go-pep440-version"
	"github.com/aquasecurity/go-version/pkg/semver"
	"github.com/aquasecurity/go-version/pkg/version"
	apkver "github.com/knqyf263/go-apk-version"
	deb "github.com/knqyf263/go-deb-version"
	rpm "github.com/knqyf263/go-rpm-version"
	mvn "github.com/masahiro331/go-mvn-version"
)

// Constraint is a version constraint such as "<2.17.1", ">=1.2, <1.3" or
// "<1.0 || >=2.0": clauses joined by "," all hold, alternatives joined by
// "||" any. A bare version means "=". Versions are compared the way their
// ecosystem orders them (apk, dpkg, rpm, semver for npm, Go and Cargo,
// PEP 440 for Python, Maven, RubyGems), each as Trivy compares them.
type Constraint struct {
	text string
	any  [][]clause
}

type clause struct {
	op  string // = != < <= > >=
	ver string
}

// ParseConstraint parses a --version constraint.
func ParseConstraint(s string) (*Constraint, error) {
	c := &Constraint{text: strings.TrimSpace(s)}
	if c.text == "" {
		return nil, errors.New("empty constraint")
	}
	for _, alt := range strings.Split(c.text, "||") {
		var all []clause
		for _, part := range strings.Split(alt, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				return nil, fmt.Errorf("constraint %q: empty clause", s)
			}
			op := ""
			for _, o := range []string{">=", "<=", "!=", "==", "=", ">", "<"} {
				if strings.HasPrefix(part, o) {
					op = o
					break
				}
			}
			ver := strings.TrimSpace(part[len(op):])
			if op == "" || op == "==" {
				op = "="
			}
			if ver == "" || strings.ContainsAny(ver, " <>=!") {
				return nil, fmt.Errorf("constraint %q: clause %q: want an operator (=, !=, <, <=, >, >=) and a version", s, part)
			}
			all = append(all, clause{op: op, ver: ver})
		}
		c.any = append(c.any, all)
	}
	return c, nil
}

// String is the constraint as given.
func (c *Constraint) String() string { return c.text }

// Match reports whether version v of a package of type typ (Trivy's
// package type: alpine, debian, npm, python-pkg, ...) satisfies the
// constraint. A version the ecosystem cannot parse matches only "=" of the
// same string.
func (c *Constraint) Match(typ, v string) bool {
	cmp := comparer(typ)
	for _, all := range c.any {
		ok := true
		for _, cl := range all {
			if !cl.holds(cmp, v) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (cl clause) holds(cmp compareFunc, v string) bool {
	n, err := cmp(v, cl.ver)
	if err != nil {
		switch cl.op {
		case "=":
			return v == cl.ver
		case "!=":
			return v != cl.ver
		}
		return false
	}
	switch cl.op {
	case "=":
		return n == 0
	case "!=":
		return n != 0
	case "<":
		return n < 0
	case "<=":
		return n <= 0
	case ">":
		return n > 0
	case ">=":
		return n >= 0
	}
	return false
}

type compareFunc func(a, b string) (int, error)

// comparer picks the version order of a package type.
func comparer(typ string) compareFunc {
	switch typ {
	case "alpine", "wolfi", "chainguard", "apk":
		return compareAPK
	case "debian", "ubuntu", "dpkg":
		return compareDeb
	case "redhat", "centos", "rocky", "alma", "amazon", "oracle", "fedora", "photon", "suse", "opensuse",
		"opensuse.leap", "opensuse.tumbleweed", "sles", "slem", "cbl-mariner", "azurelinux", "rpm", "echo", "coreos":
		return compareRPM
	case "python-pkg", "pip", "pipenv", "poetry", "uv", "conda-pkg", "conda-environment", "pypi":
		return comparePEP440
	case "gemspec", "bundler", "gem":
		return compareGem
	case "jar", "pom", "gradle", "sbt", "maven":
		return compareMaven
	case "node-pkg", "npm", "yarn", "pnpm", "bun", "gobinary", "gomod", "golang", "cargo", "rust-binary",
		"composer", "composer-vendor", "nuget", "dotnet-core", "packages-props", "swift", "cocoapods", "pub", "hex", "conan":
		return compareSemver
	}
	return compareGeneric
}

func compareAPK(a, b string) (int, error) {
	va, err := apkver.NewVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := apkver.NewVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

func compareDeb(a, b string) (int, error) {
	va, err := deb.NewVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := deb.NewVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

func compareRPM(a, b string) (int, error) {
	va, vb := rpm.NewVersion(a), rpm.NewVersion(b)
	return va.Compare(vb), nil
}

func comparePEP440(a, b string) (int, error) {
	va, err := pep440.Parse(a)
	if err != nil {
		return 0, err
	}
	vb, err := pep440.Parse(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

func compareGem(a, b string) (int, error) {
	va, err := gem.NewVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := gem.NewVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

func compareMaven(a, b string) (int, error) {
	va, err := mvn.NewVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := mvn.NewVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

func compareSemver(a, b string) (int, error) {
	va, err := semver.Parse(a)
	if err != nil {
		return compareGeneric(a, b)
	}
	vb, err := semver.Parse(b)
	if err != nil {
		return compareGeneric(a, b)
	}
	return va.Compare(vb), nil
}

func compareGeneric(a, b string) (int, error) {
	va, err := version.Parse(strings.TrimPrefix(a, "v"))
	if err != nil {
		return 0, err
	}
	vb, err := version.Parse(strings.TrimPrefix(b, "v"))
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}
