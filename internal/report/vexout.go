package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// VEXDecisions lists the VEX decisions of the acceptances that carry a
// vex_status and are in force at asOf. An acceptance that needs no fleet
// (no scope, an exact repository, no package or a package PURL) is exported
// for its whole repository; the others are exported as applied in r: for
// the repositories (glob) or digests (scoped) of the rows they accepted,
// with those rows' packages as subcomponents. r may be nil; skipped names
// the acceptances that could not be exported and why.
func VEXDecisions(acc *sla.Acceptances, r *Report, asOf time.Time) (out []vex.Decision, skipped []string) {
	if acc == nil {
		return nil, nil
	}
	for i := range acc.Items {
		a := &acc.Items[i]
		if a.VEXStatus == "" || !a.Active(asOf) {
			continue
		}
		base := vex.Decision{Vulnerability: a.Vulnerability, Status: vex.Status(a.VEXStatus),
			Justification: a.VEXJustification, Impact: a.Reason}
		if standalone(a) {
			base.Repository = a.Repository
			if a.Package != "" {
				base.PURL = vex.BasePURL(a.Package)
			}
			out = append(out, base)
			continue
		}
		ds := appliedDecisions(a, base, r)
		if len(ds) == 0 {
			skipped = append(skipped, fmt.Sprintf("%s in %s: %s", a.Vulnerability, a.Repository, whyNotStandalone(a, r)))
		}
		out = append(out, ds...)
	}
	return out, skipped
}

// standalone reports whether a can be exported without knowing the fleet.
func standalone(a *sla.Acceptance) bool {
	return !a.Scoped() && !strings.ContainsAny(a.Repository, "*?") && (a.Package == "" || strings.HasPrefix(a.Package, "pkg:"))
}

func whyNotStandalone(a *sla.Acceptance, r *Report) string {
	if r != nil {
		return "it accepted no finding in this report"
	}
	switch {
	case a.Scoped():
		return "scoped to clusters, namespaces or workloads: export it with the reporter (--vex-out), which knows the digests in scope"
	case strings.ContainsAny(a.Repository, "*?"):
		return "repository is a glob: export it with the reporter (--vex-out), which knows the repositories it matches"
	}
	return "package is a name, not a PURL: export it with the reporter (--vex-out), which knows the package URLs"
}

// appliedDecisions are a's decisions for the rows it accepted in r.
func appliedDecisions(a *sla.Acceptance, base vex.Decision, r *Report) []vex.Decision {
	if r == nil {
		return nil
	}
	seen := map[vex.Decision]bool{}
	var out []vex.Decision
	for f := range r.Findings.All() {
		if f.Acceptance != a || f.Status != sla.StatusAccepted {
			continue
		}
		d := base
		switch {
		case strings.HasPrefix(a.Package, "pkg:"):
			d.PURL = vex.BasePURL(a.Package)
		case a.Package != "":
			if d.PURL = vex.BasePURL(f.PURL); d.PURL == "" {
				continue // no PURL: Trivy could not match it either
			}
		}
		if a.Scoped() {
			d.Digest = f.Img.Key.Digest
		}
		for _, repo := range f.Img.Repositories {
			if !sla.Glob(a.Repository, repo) {
				continue
			}
			d.Repository = repo
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}
