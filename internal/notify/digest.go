// Package notify sends each owner a digest of the report: new unaccepted
// SLA breaches, deadlines within 7 days, expired risk acceptances and
// coverage gaps. A workload's owner is its namespace's --owner-label label,
// else its annotation of that key (both recorded by the dispatcher in the
// cluster's inventory), else the first matching rule of an owners file
// (cluster and namespace globs), else "unowned". Endpoints are a generic
// JSON webhook, a Slack incoming webhook (Block Kit), or per-owner routes
// from a notify config. Deliveries are
// retried on rate limits (internal/throttle); the endpoints' URLs, which
// carry tokens, never appear in a message or log.
package notify

import (
	"path"
	"slices"
	"strings"
	"time"

	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// DueWithin is how far ahead a deadline is "due soon".
const DueWithin = 7 * 24 * time.Hour

// Unowned is the owner of what no owners rule matches.
const Unowned = "unowned"

// Item is one finding in a digest.
type Item struct {
	Vulnerability string    `json:"vulnerability"`
	Severity      string    `json:"severity"`
	Package       string    `json:"package"`
	Image         string    `json:"image"`
	Deadline      time.Time `json:"deadline"`
	Workloads     []string  `json:"workloads"`
}

// Gap is an image or cluster the report could not cover.
type Gap struct {
	What   string `json:"what"`
	Reason string `json:"reason"`
}

// Digest is what one owner is told.
type Digest struct {
	Owner              string    `json:"owner"`
	AsOf               time.Time `json:"asOf"`
	Complete           bool      `json:"complete"`
	NewBreaches        []Item    `json:"newBreaches"`
	DueSoon            []Item    `json:"dueSoon"`
	ExpiredAcceptances []Item    `json:"expiredAcceptances"`
	CoverageGaps       []Gap     `json:"coverageGaps"`
}

// Empty reports whether the digest has nothing to say.
func (d *Digest) Empty() bool {
	return len(d.NewBreaches)+len(d.DueSoon)+len(d.ExpiredAcceptances)+len(d.CoverageGaps) == 0
}

// Rule gives an owner the workloads of matching clusters and namespaces
// (path globs; empty matches all).
type Rule struct {
	Owner      string   `json:"owner"`
	Clusters   []string `json:"clusters,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}

// Owners maps places to owners: the first matching rule wins.
type Owners []Rule

func globs(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// Namespaces are the recorded labels and annotations of namespaces, by
// cluster then namespace name (from the clusters' inventories).
type Namespaces map[string]map[string]contract.Namespace

// Add records the namespaces a cluster's inventory recorded.
func (n Namespaces) Add(cluster string, namespaces []contract.Namespace) {
	if len(namespaces) == 0 {
		return
	}
	byName := n[cluster]
	if byName == nil {
		byName = map[string]contract.Namespace{}
		n[cluster] = byName
	}
	for _, ns := range namespaces {
		byName[ns.Name] = ns
	}
}

// Resolver names owners: from namespace metadata by Label, else by Owners.
type Resolver struct {
	// Label is the label (else annotation) key of a namespace naming its
	// owner; empty uses Owners only.
	Label      string
	Namespaces Namespaces
	Owners     Owners
}

// Of is the owner of a cluster's namespace: the namespace's Label label,
// else its Label annotation, else the owners rules' (else Unowned). A
// namespace without the key, or whose metadata was not recorded (an older
// inventory, a refused namespace list), falls back to the rules.
func (r Resolver) Of(cluster, namespace string) string {
	if r.Label != "" {
		ns := r.Namespaces[cluster][namespace]
		if v := strings.TrimSpace(ns.Labels[r.Label]); v != "" {
			return v
		}
		if v := strings.TrimSpace(ns.Annotations[r.Label]); v != "" {
			return v
		}
	}
	return r.Owners.Of(cluster, namespace)
}

// Of is the owner of a cluster's namespace by the rules.
func (o Owners) Of(cluster, namespace string) string {
	for _, r := range o {
		if globs(r.Clusters, cluster) && globs(r.Namespaces, namespace) {
			return r.Owner
		}
	}
	return Unowned
}

// workloadOwners are the owners of "cluster/namespace/Kind/name" workloads.
func (o Resolver) workloadOwners(workloads []string) []string {
	var out []string
	for _, w := range workloads {
		parts := strings.SplitN(w, "/", 3)
		if len(parts) < 2 {
			continue
		}
		if owner := o.Of(parts[0], parts[1]); !slices.Contains(out, owner) {
			out = append(out, owner)
		}
	}
	return out
}

// Digests builds one digest per owner of the owners rules (see DigestsBy).
func Digests(r *report.Report, owners Owners) []*Digest {
	return DigestsBy(r, Resolver{Owners: owners})
}

// DigestsBy builds one digest per owner with something to say, in owner
// order. A finding is new when it is new or reopened in this report, or
// its deadline passed within the day before the report.
func DigestsBy(r *report.Report, owners Resolver) []*Digest {
	byOwner := map[string]*Digest{}
	get := func(owner string) *Digest {
		d := byOwner[owner]
		if d == nil {
			d = &Digest{Owner: owner, AsOf: r.AsOf, Complete: r.Complete, NewBreaches: []Item{}, DueSoon: []Item{},
				ExpiredAcceptances: []Item{}, CoverageGaps: []Gap{}}
			byOwner[owner] = d
		}
		return d
	}
	for f := range r.Findings.All() {
		for _, owner := range owners.workloadOwners(f.Workloads()) {
			addFinding(get(owner), r.AsOf, f, owners)
		}
	}
	addGaps(r, owners, get)
	var out []*Digest
	for _, d := range byOwner {
		if !d.Empty() {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Digest) int { return strings.Compare(a.Owner, b.Owner) })
	return out
}

// addFinding files f under the digest's sections; the workloads listed are
// the owner's own.
func addFinding(d *Digest, asOf time.Time, f *report.Finding, owners Resolver) {
	var mine []string
	for _, w := range f.Workloads() {
		if slices.Contains(owners.workloadOwners([]string{w}), d.Owner) {
			mine = append(mine, w)
		}
	}
	it := Item{Vulnerability: f.ID, Severity: f.Severity, Package: f.PkgName, Image: f.Image(), Deadline: f.Deadline, Workloads: mine}
	switch {
	case f.Status == sla.StatusAcceptanceExpired:
		d.ExpiredAcceptances = append(d.ExpiredAcceptances, it)
	case f.Status == sla.StatusAccepted, f.Status == sla.StatusNotAffected, f.Status == sla.StatusFixed:
		// Off the gate: an acceptance or a VEX statement covers it.
	case f.Breached && (f.Change == sla.ChangeNew || f.Change == sla.ChangeReopened || asOf.Sub(f.Deadline) <= 24*time.Hour):
		d.NewBreaches = append(d.NewBreaches, it)
	case !f.Breached && f.Deadline.Sub(asOf) <= DueWithin:
		d.DueSoon = append(d.DueSoon, it)
	}
}

// addGaps gives failed and unscanned images to their workloads' owners and
// unreachable clusters to the owners of their namespaces: every rule's
// owner matching the cluster (an unreachable cluster has no inventory, so
// no namespace labels).
func addGaps(r *report.Report, owners Resolver, get func(string) *Digest) {
	for _, f := range r.Failures {
		for _, o := range owners.workloadOwners(f.Workloads) {
			get(o).CoverageGaps = append(get(o).CoverageGaps, Gap{What: f.Image, Reason: "scan failed: " + string(f.Class)})
		}
	}
	for _, n := range r.NotScanned {
		for _, o := range owners.workloadOwners(n.Workloads) {
			get(o).CoverageGaps = append(get(o).CoverageGaps, Gap{What: n.Image, Reason: "not scanned: " + n.Reason})
		}
	}
	for _, c := range r.Clusters {
		if c.Status != report.ClusterUnreachable {
			continue
		}
		seen := map[string]bool{}
		for _, rule := range owners.Owners {
			if globs(rule.Clusters, c.Name) && !seen[rule.Owner] {
				seen[rule.Owner] = true
				get(rule.Owner).CoverageGaps = append(get(rule.Owner).CoverageGaps, Gap{What: "cluster " + c.Name, Reason: "unreachable"})
			}
		}
	}
}
