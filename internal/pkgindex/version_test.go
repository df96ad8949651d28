package pkgindex

import "testing"

func TestConstraint(t *testing.T) {
	tests := []struct {
		constraint, typ, version string
		want                     bool
	}{
		{"<2.17.1", "jar", "2.14.1", true},
		{"<2.17.1", "jar", "2.17.1", false},
		{"<2.17.1", "jar", "2.17.1-rc1", true}, // Maven: a release candidate precedes the release
		{">=1.2, <1.3", "npm", "1.2.9", true},
		{">=1.2, <1.3", "npm", "1.3.0", false},
		{"<1.0 || >=2.0", "npm", "2.1.0", true},
		{"<1.0 || >=2.0", "npm", "1.5.0", false},
		{"4.17.20", "node-pkg", "4.17.20", true},
		{"=4.17.20", "node-pkg", "4.17.21", false},
		{"!=4.17.20", "node-pkg", "4.17.21", true},
		{"<4.17.21", "node-pkg", "4.17.20", true},
		// apk: -rN releases order numerically, not as strings.
		{"<3.1.0-r10", "alpine", "3.1.0-r4", true},
		{"<3.1.4-r5", "alpine", "3.1.4-r1", true},
		{">1.2.4-r0", "alpine", "1.2.4_git20230717-r4", true},
		// dpkg: epochs and tildes.
		{"<1:1.2.13.dfsg-2", "debian", "1:1.2.13.dfsg-1", true},
		{"<1.2.13", "debian", "1:1.2.13.dfsg-1", false},
		{"<3.0.11-1~deb12u2", "debian", "3.0.9-1", true},
		{">=3.0.11", "debian", "3.0.11~rc1", false},
		// rpm
		{"<1.1.1k-5.el8", "redhat", "1.1.1k-4.el8", true},
		// PEP 440: release candidates and normalised forms.
		{"<2.31.0", "python-pkg", "2.28.1", true},
		{">=2.0", "python-pkg", "2.0rc1", false},
		{"==1.0", "python-pkg", "1.0.0", true},
		// Go modules carry a v prefix.
		{"<0.17.0", "gobinary", "v0.14.0", true},
		{"<v0.17.0", "gobinary", "v0.23.0", false},
		// RubyGems
		{"<7.0.8", "gemspec", "7.0.4.1", true},
		// An unparsable version only equals itself.
		{"=not a version", "npm", "not a version", false}, // the space makes it a bad clause: see TestParseConstraintRejects
		{"=nightly", "npm", "nightly", true},
		{"<nightly", "npm", "nightly", false},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.constraint)
		if err != nil {
			if tt.want {
				t.Errorf("ParseConstraint(%q): %v", tt.constraint, err)
			}
			continue
		}
		if got := c.Match(tt.typ, tt.version); got != tt.want {
			t.Errorf("%q.Match(%s, %q) = %v, want %v", tt.constraint, tt.typ, tt.version, got, tt.want)
		}
	}
}

func TestParseConstraintRejects(t *testing.T) {
	for _, s := range []string{"", " ", "<", "<1,", ">=1 <2", "~>1.0", "1.0 || ", "=not a version"} {
		if c, err := ParseConstraint(s); err == nil {
			t.Errorf("ParseConstraint(%q) = %v, want an error", s, c)
		}
	}
}
