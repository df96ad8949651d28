package worker

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// countingFinder counts the attestation lookups per digest.
type countingFinder struct {
	next scan.AttestationFinder
	mu   sync.Mutex
	n    map[string]int
}

func (f *countingFinder) VEXAttestations(ctx context.Context, ref, digest string) ([]contract.VEXAttestation, error) {
	f.mu.Lock()
	if f.n == nil {
		f.n = map[string]int{}
	}
	f.n[digest]++
	f.mu.Unlock()
	return f.next.VEXAttestations(ctx, ref, digest)
}

func (f *countingFinder) calls(digest string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n[digest]
}

// attestVEX attaches doc to p as cosign would: a DSSE envelope, as an OCI
// referrer (referrer true) or on the legacy .att tag. It returns the
// attestation's reference.
func attestVEX(t *testing.T, p fixture.Pushed, doc []byte, referrer bool) string {
	t.Helper()
	env := fixture.DSSEEnvelope(fixture.InTotoStatement(fixture.OpenVEXPredicateType, doc, p.Repository, p.Digest))
	if !referrer {
		if _, err := fixture.PushAttestationTag(t.Context(), p.Repository, p.Digest, env); err != nil {
			t.Fatal(err)
		}
		return p.Repository + ":" + strings.Replace(p.Digest, ":", "-", 1) + ".att"
	}
	d, err := fixture.PushReferrer(t.Context(), p.Repository, p.Digest, fixture.Referrer{
		ArtifactType: fixture.DSSEEnvelopeType, LayerType: fixture.DSSEEnvelopeType, Content: env,
		Annotations: map[string]string{vex.PredicateTypeAnnotation: fixture.OpenVEXPredicateType}})
	if err != nil {
		t.Fatal(err)
	}
	return p.Repository + "@" + d
}

// TestWorkerVEXOCI: with --vex-oci the worker stores the VEX attestations
// attached to each digest with its result, looking them up once per digest
// (not per platform); a failed lookup fails nothing, records nothing and
// leaves the result unclaimed for reuse; a result is reused with its
// attestations by a worker with --vex-oci, and by no worker without.
func TestWorkerVEXOCI(t *testing.T) {
	e := newEnv(t, nil)
	curl, node, debian, site := e.pushed["alpine-curl"], e.pushed["node-app"], e.pushed["debian-12"], e.pushed["static-site"]
	curlAtt := attestVEX(t, curl, fixture.OpenVEX("Fixture Vendor", fixture.VEXStatement{Vulnerability: "CVE-2023-38545",
		Product: vex.ImagePURL(curl.Repository, curl.Digest), Subcomponent: "pkg:apk/alpine/curl", Status: "not_affected"}), true)
	nodeAtt := attestVEX(t, node, fixture.OpenVEX("Node Team", fixture.VEXStatement{Vulnerability: "CVE-2021-23337",
		Product: vex.ImagePURL(node.Repository, node.Digest), Subcomponent: "pkg:npm/lodash", Status: "not_affected"}), false)
	// debian's referrers cannot be read (the registry has no Referrers
	// API, and its referrers tag is denied).
	e.reg.InjectFault(fixture.Fault{Kind: fixture.FaultForbidden, Reference: strings.Replace(debian.Digest, ":", "-", 1)})

	core, warnings := observer.New(zap.WarnLevel)
	finder := &countingFinder{next: e.engine}
	cfg := e.config(t)
	cfg.VEXOCI = true
	_, err := New(cfg, Deps{Conn: e.nats.Conn, Resources: e.nats.Res, Store: e.store, Scanner: &slowScanner{Scanner: e.engine}})
	if err == nil || !strings.Contains(err.Error(), "--vex-oci") {
		t.Fatalf("New with --vex-oci and a scanner without attestations: %v, want an error naming --vex-oci", err)
	}
	r := e.startWith(t, cfg, Deps{Scanner: e.engine, Attestations: finder, Log: zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))})
	var jobs []contract.ScanJob
	for _, p := range []fixture.Pushed{curl, node, debian, site} {
		for _, pl := range p.Spec.Platforms {
			jobs = append(jobs, contract.NewScanJob("run-c1", "c1", p.Key(pl), p.Ref(), nil, time.Now()))
		}
	}
	e.publish(t, jobs...)
	want := map[string]string{curl.Digest: curlAtt, node.Digest: nodeAtt, debian.Digest: "", site.Digest: ""}
	for _, j := range jobs {
		res := e.waitResult(t, j.ImageKey, time.Minute, nil)
		checkVEXResult(t, res, want[j.Digest], j.Digest != debian.Digest)
	}
	if n := finder.calls(node.Digest); n != 1 {
		t.Errorf("node-app (%d platforms): %d attestation lookups, want 1", len(node.Spec.Platforms), n)
	}
	if w := warnings.FilterMessageSnippet("VEX attestation lookup failed").All(); len(w) != 1 || w[0].ContextMap()["digest"] != debian.Digest {
		t.Errorf("warnings %+v, want one about %s", w, debian.Digest)
	}

	// Next cycle: curl's result is reused with its attestation; debian's,
	// whose lookup failed, is scanned again and looked up.
	e.reg.ClearFaults()
	next := []contract.ScanJob{e.job(t, "alpine-curl", "c2"), e.job(t, "debian-12", "c2")}
	e.publish(t, next...)
	c2 := func(r contract.ScanResult) bool { return r.Cycle == "c2" }
	if res := e.waitResult(t, next[0].ImageKey, time.Minute, c2); !res.Reused {
		t.Errorf("curl, next cycle: not reused")
	} else {
		checkVEXResult(t, res, curlAtt, true)
	}
	if res := e.waitResult(t, next[1].ImageKey, time.Minute, c2); res.Reused {
		t.Errorf("debian, next cycle: reused the result whose lookup failed")
	} else {
		checkVEXResult(t, res, "", true)
	}

	// A worker without --vex-oci does not reuse a result with attestations.
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	e.start(t, e.config(t), nil)
	plain := e.job(t, "alpine-curl", "c3")
	e.publish(t, plain)
	res := e.waitResult(t, plain.ImageKey, time.Minute, func(r contract.ScanResult) bool { return r.Cycle == "c3" })
	if res.Reused || len(res.VEXAttestations) != 0 || strings.Contains(res.Scanner.Options, VEXOCIOption) {
		t.Errorf("without --vex-oci: reused=%v, %d attestations, options %q; want a new scan without attestations",
			res.Reused, len(res.VEXAttestations), res.Scanner.Options)
	}
}

// checkVEXResult checks a scanned result carries the attestation from
// source (none when empty) and claims the lookup ran when looked is true.
func checkVEXResult(t *testing.T, res contract.ScanResult, source string, looked bool) {
	t.Helper()
	if res.Status != contract.StatusScanned {
		t.Fatalf("%s: status %s (%+v): a lookup must never fail the scan", res.Digest, res.Status, res.Failure)
	}
	if got := strings.HasSuffix(res.Scanner.Options, ";"+VEXOCIOption); got != looked {
		t.Errorf("%s %s: options %q, want %s: %v", res.Digest, res.Platform, res.Scanner.Options, VEXOCIOption, looked)
	}
	var sources []string
	for _, a := range res.VEXAttestations {
		sources = append(sources, a.Source)
		if stmts, err := vex.Parse(a.Document, a.Source); err != nil || len(stmts) != 1 || !strings.Contains(stmts[0].Targets[0].Product, res.Digest) {
			t.Errorf("%s: stored document from %s: %+v, %v", res.Digest, a.Source, stmts, err)
		}
	}
	if want := []string{source}; source == "" && len(sources) != 0 || source != "" && strings.Join(sources, ",") != want[0] {
		t.Errorf("%s %s: attestations from %q, want %q", res.Digest, res.Platform, sources, source)
	}
}
