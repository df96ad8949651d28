package scan

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/fleetscan/fleetscan/internal/deadport"
	"github.com/fleetscan/fleetscan/internal/fixture"
	"github.com/fleetscan/fleetscan/internal/fixture/fixturetest"
	"github.com/fleetscan/fleetscan/internal/vex"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// curlVEX is an OpenVEX document declaring curl's CVE not exploitable in
// the image repository@digest.
func curlVEX(author string, p fixture.Pushed) []byte {
	return fixture.OpenVEX(author, fixture.VEXStatement{Vulnerability: "CVE-2023-38545",
		Product: vex.ImagePURL(p.Repository, p.Digest), Subcomponent: "pkg:apk/alpine/curl",
		Status: "not_affected", Justification: "vulnerable_code_not_in_execute_path"})
}

// vexEnvelope is doc as cosign attests it: a DSSE envelope around an
// in-toto statement about p.
func vexEnvelope(doc []byte, p fixture.Pushed) []byte {
	return fixture.DSSEEnvelope(fixture.InTotoStatement(fixture.OpenVEXPredicateType, doc, p.Repository, p.Digest))
}

func sbomEnvelope(p fixture.Pushed) []byte {
	return fixture.DSSEEnvelope(fixture.InTotoStatement("https://cyclonedx.org/bom", []byte(`{"bomFormat":"CycloneDX"}`), p.Repository, p.Digest))
}

// observe sends the scanner's warnings to an observer.
func (e *env) observe() *observer.ObservedLogs {
	core, logs := observer.New(zap.WarnLevel)
	e.scanner.log = zap.New(core)
	return logs
}

func pushReferrer(t *testing.T, p fixture.Pushed, r fixture.Referrer) string {
	t.Helper()
	d, err := fixture.PushReferrer(t.Context(), p.Repository, p.Digest, r)
	if err != nil {
		t.Fatal(err)
	}
	return p.Repository + "@" + d
}

func pushAttTag(t *testing.T, p fixture.Pushed, envelopes ...[]byte) string {
	t.Helper()
	if _, err := fixture.PushAttestationTag(t.Context(), p.Repository, p.Digest, envelopes...); err != nil {
		t.Fatal(err)
	}
	return p.Repository + ":" + strings.Replace(p.Digest, ":", "-", 1) + ".att"
}

// TestVEXAttestations attaches OpenVEX attestations to the fixture images
// in each way publishers do, on a registry with the OCI 1.1 Referrers API
// and on one without (the client keeps the referrers tag), and discovers
// them as Trivy's `--vex oci` would.
func TestVEXAttestations(t *testing.T) {
	for _, api := range []struct {
		name string
		opts []fixture.RegistryOption
	}{
		{"referrers API", []fixture.RegistryOption{fixture.WithReferrersAPI()}},
		{"referrers tag schema", nil},
	} {
		t.Run(api.name, func(t *testing.T) {
			e := newEnv(t, TrivyConfig{}, api.opts...)
			logs := e.observe()
			curl, debian, python, agent := e.pushed["alpine-curl"], e.pushed["debian-12"], e.pushed["python-app"], e.pushed["go-agent"]
			announced := map[string]string{vex.PredicateTypeAnnotation: fixture.OpenVEXPredicateType}
			want := map[string][]string{curl.Digest: {
				pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.DSSEEnvelopeType, LayerType: fixture.DSSEEnvelopeType,
					Content: vexEnvelope(curlVEX("dsse", curl), curl), Annotations: announced}),
				pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.OpenVEXArtifactType, LayerType: fixture.OpenVEXArtifactType,
					Content: curlVEX("plain", curl)}),
			}}
			// Announced as an SBOM: never read. A bundle that does not decode:
			// skipped with a warning naming it.
			pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.InTotoType, LayerType: fixture.InTotoType,
				Content: sbomEnvelope(curl), Annotations: map[string]string{vex.PredicateTypeAnnotation: "https://cyclonedx.org/bom"}})
			broken := pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.SigstoreBundleType, LayerType: fixture.SigstoreBundleType,
				Content: []byte(`{"dsseEnvelope": {"payloadType": "application/vnd.in-toto+json", "payload": "%%%"}}`), Annotations: announced})
			// Attached to another digest: not curl's.
			want[debian.Digest] = []string{pushReferrer(t, debian, fixture.Referrer{ArtifactType: fixture.OpenVEXArtifactType,
				LayerType: fixture.OpenVEXArtifactType, Content: curlVEX("debian", debian)})}
			// Legacy cosign tag: an SBOM, the VEX and a broken envelope.
			att := pushAttTag(t, python, sbomEnvelope(python), vexEnvelope(curlVEX("legacy", python), python), []byte(`{"payloadType":`))
			want[python.Digest] = []string{att}
			// Both ways: the referrer wins, as in Trivy.
			want[agent.Digest] = []string{pushReferrer(t, agent, fixture.Referrer{ArtifactType: fixture.InTotoType, LayerType: fixture.InTotoType,
				Content: vexEnvelope(curlVEX("referrer", agent), agent)})}
			pushAttTag(t, agent, vexEnvelope(curlVEX("legacy", agent), agent))
			want[e.pushed["static-site"].Digest] = nil

			for _, p := range e.pushed {
				w, ok := want[p.Digest]
				if !ok {
					continue
				}
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				got, err := e.scanner.VEXAttestations(ctx, p.Repository+":"+p.Spec.Tags[0], p.Digest)
				cancel()
				if err != nil {
					t.Fatalf("%s: %v", p.Spec.Name, err)
				}
				checkAttestations(t, p, got, w)
			}
			warned := logs.FilterMessage("VEX attestation skipped").All()
			var named []string
			for _, w := range warned {
				named = append(named, fmt.Sprint(w.ContextMap()["attestation"]))
			}
			if slices.Sort(named); !slices.Equal(named, slices.Sorted(slices.Values([]string{broken, att}))) {
				t.Errorf("warnings %+v, want one naming %s and one naming %s", warned, broken, att)
			}
		})
	}
}

// checkAttestations compares the sources found with want and checks every
// document is the OpenVEX predicate about p.
func checkAttestations(t *testing.T, p fixture.Pushed, got []contract.VEXAttestation, want []string) {
	t.Helper()
	var sources []string
	for _, a := range got {
		sources = append(sources, a.Source)
		stmts, err := vex.Parse(a.Document, a.Source)
		if err != nil || len(stmts) != 1 {
			t.Errorf("%s: document from %s: %d statements, %v", p.Spec.Name, a.Source, len(stmts), err)
			continue
		}
		if stmts[0].Status != vex.NotAffected || !strings.Contains(stmts[0].Targets[0].Product, p.Digest) {
			t.Errorf("%s: statement %+v, want not_affected for %s", p.Spec.Name, stmts[0], p.Digest)
		}
	}
	slices.Sort(sources)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(sources, want) {
		t.Errorf("%s: attestations from %q, want %q", p.Spec.Name, sources, want)
	}
}

// TestVEXAttestationsFailures: a registry that fails the discovery makes it
// return an error — scrubbed of credentials, and within the caller's
// deadline — never a partial answer; credentials from the keyring are used.
func TestVEXAttestationsFailures(t *testing.T) {
	const user, password = "puller", "pa55-w0rd-that-must-not-leak"
	var authOn atomic.Bool
	auth := basicAuth(user, password)
	gate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if authOn.Load() {
				auth(next).ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newEnv(t, TrivyConfig{}, fixture.WithMiddleware(gate))
	curl, python := e.pushed["alpine-curl"], e.pushed["python-app"]
	src := pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.OpenVEXArtifactType, LayerType: fixture.OpenVEXArtifactType,
		Content: curlVEX("vendor", curl)})
	att := pushAttTag(t, python, vexEnvelope(curlVEX("legacy", python), python))
	attTag := att[strings.LastIndex(att, ":")+1:]
	keyring := func(pw string) *Keyring {
		k, err := ParseKeyring(fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, e.reg.Host, base64.StdEncoding.EncodeToString([]byte(user+":"+pw))))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	authOn.Store(true)
	e.reopenScanner(t, TrivyConfig{Keyring: keyring(password)})

	cases := []struct {
		name    string
		pushed  fixture.Pushed
		ref     string
		fault   *fixture.Fault
		keyring *Keyring
		timeout time.Duration
		want    []string // nil: an error
	}{
		{name: "with credentials", pushed: curl, want: []string{src}},
		{name: "legacy tag with credentials", pushed: python, want: []string{att}},
		{name: "wrong password", pushed: curl, keyring: keyring(password + "-wrong")},
		{name: "referrers denied", pushed: curl, fault: &fixture.Fault{Kind: fixture.FaultForbidden, Referrers: true}},
		{name: "referrers tag denied", pushed: curl, fault: &fixture.Fault{Kind: fixture.FaultForbidden, Reference: strings.Replace(curl.Digest, ":", "-", 1)}},
		{name: "attestation tag denied", pushed: python, fault: &fixture.Fault{Kind: fixture.FaultForbidden, Reference: attTag}},
		{name: "registry hangs", pushed: curl, fault: &fixture.Fault{Kind: fixture.FaultHang}, timeout: 2 * time.Second},
		{name: "registry unreachable", pushed: curl, ref: deadport.Addr(t) + "/fixtures/curl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.reg.ClearFaults()
			if tc.fault != nil {
				e.reg.InjectFault(*tc.fault)
			}
			if tc.keyring != nil {
				e.reopenScanner(t, TrivyConfig{Keyring: tc.keyring})
				defer e.reopenScanner(t, TrivyConfig{Keyring: keyring(password)})
			}
			ref := cmp.Or(tc.ref, tc.pushed.Repository)
			ctx, cancel := context.WithTimeout(t.Context(), cmp.Or(tc.timeout, time.Minute))
			defer cancel()
			start := time.Now()
			got, err := e.scanner.VEXAttestations(ctx, ref, tc.pushed.Digest)
			if tc.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				checkAttestations(t, tc.pushed, got, tc.want)
				return
			}
			if err == nil || got != nil {
				t.Fatalf("got %d attestations, err %v; want an error and nothing", len(got), err)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error leaks the password: %v", err)
			}
			if tc.timeout > 0 && time.Since(start) > tc.timeout+5*time.Second {
				t.Errorf("a hanging registry held the discovery %s past its deadline", time.Since(start)-tc.timeout)
			}
		})
	}
}

// cliFinding is a finding of `trivy image --format json` with its PURL.
type cliFinding = fixturetest.PURLFinding

// TestVEXAttestationsLikeTrivyCLI: `trivy image --vex oci` and fleetscan's
// discovery read the same referrer attestation off the fixture registry
// and take the same findings off: curl's CVE in that digest, not the
// statement about another digest, not the same CVE in libcurl.
func TestVEXAttestationsLikeTrivyCLI(t *testing.T) {
	bin := fixturetest.RequireTrivyCLI(t)
	e := newEnv(t, TrivyConfig{}, fixture.WithReferrersAPI())
	curl := e.pushed["alpine-curl"]
	doc := fixture.OpenVEX("Curl Vendor",
		fixture.VEXStatement{Vulnerability: "CVE-2023-38545", Product: vex.ImagePURL(curl.Repository, curl.Digest),
			Subcomponent: "pkg:apk/alpine/curl", Status: "not_affected", Justification: "vulnerable_code_not_in_execute_path"},
		fixture.VEXStatement{Vulnerability: "CVE-2023-46218", Product: vex.ImagePURL(curl.Repository, "sha256:"+strings.Repeat("f", 64)),
			Subcomponent: "pkg:apk/alpine/curl", Status: "not_affected", Justification: "component_not_present"})
	pushReferrer(t, curl, fixture.Referrer{ArtifactType: fixture.DSSEEnvelopeType, LayerType: fixture.DSSEEnvelopeType,
		Content: vexEnvelope(doc, curl), Annotations: map[string]string{vex.PredicateTypeAnnotation: fixture.OpenVEXPredicateType}})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	without := fixturetest.CLIPURLFindings(t, ctx, bin, e.cacheDir, curl.Ref())
	with := fixturetest.CLIPURLFindings(t, ctx, bin, e.cacheDir, curl.Ref(), "--vex", "oci")
	var removed []cliFinding
	for _, f := range without {
		if !slices.Contains(with, f) {
			removed = append(removed, f)
		}
	}
	if len(removed) != 1 || removed[0].ID != "CVE-2023-38545" || removed[0].Pkg != "curl" {
		t.Fatalf("trivy --vex oci removed %+v, want only CVE-2023-38545 in curl (of %d findings)", removed, len(without))
	}

	atts, err := e.scanner.VEXAttestations(ctx, curl.Ref(), curl.Digest)
	if err != nil || len(atts) != 1 {
		t.Fatalf("discovery: %d attestations, %v", len(atts), err)
	}
	set := vex.NewSet()
	stmts, err := vex.Parse(atts[0].Document, atts[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	set.Add(stmts...)
	for _, f := range without {
		st := set.Decide(vex.Subject{Vulnerability: f.ID, PURL: f.PURL, Repositories: []string{curl.Repository}, Digest: curl.Digest, Arch: "amd64"})
		if suppressed := st != nil && st.Status.Suppresses(); suppressed != slices.Contains(removed, f) {
			t.Errorf("%s in %s: fleetscan suppresses %v, trivy removed %v", f.ID, f.Pkg, suppressed, slices.Contains(removed, f))
		}
	}
}
