package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/goldentest"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/report/sample"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

const ownersYAML = `
owners:
  - owner: team-payments
    namespaces: ["payments"]
  - owner: team-web
    clusters: ["prod-*", "staging"]
    namespaces: ["web", "edge"]
  - owner: team-platform
    namespaces: ["monitoring", "cache", "jobs"]
`

// endpoint records what a webhook receiver gets; the first fail requests
// are answered with status (and Retry-After).
type endpoint struct {
	mu      sync.Mutex
	bodies  []string
	paths   []string
	times   []time.Time
	fail    int
	status  int
	retryIn string
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.times = append(e.times, time.Now())
	if e.fail > 0 {
		e.fail--
		if e.retryIn != "" {
			w.Header().Set("Retry-After", e.retryIn)
		}
		w.WriteHeader(e.status)
		return
	}
	e.bodies = append(e.bodies, string(b))
	e.paths = append(e.paths, r.URL.Path)
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDigests(t *testing.T) {
	ds := Digests(sample.Report(), Owners{{Owner: "team-payments", Namespaces: []string{"payments"}},
		{Owner: "team-web", Namespaces: []string{"web", "edge"}}, {Owner: "team-platform", Namespaces: []string{"monitoring", "cache", "jobs"}}})
	data, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	goldentest.Assert(t, "digests.json", append(data, '\n'))
	owners := []string{}
	for _, d := range ds {
		owners = append(owners, d.Owner)
	}
	if strings.Join(owners, ",") != "team-payments,team-platform,team-web" {
		t.Fatalf("owners %v", owners)
	}

	// A breached finding that reopened is a new breach for its owner only.
	r := sample.Report()
	rows := r.Findings.Slice()
	for i := range rows {
		if rows[i].ID == "CVE-2024-0001" {
			rows[i].Change = sla.ChangeReopened
		}
	}
	r.Findings = report.RowsOf(rows...)
	for _, d := range Digests(r, Owners{{Owner: "team-web", Namespaces: []string{"web", "edge"}}}) {
		got := []string{}
		for _, it := range d.NewBreaches {
			got = append(got, it.Vulnerability+" "+strings.Join(it.Workloads, ";"))
		}
		want := map[string]string{"team-web": "CVE-2024-0001 prod-eu/web/Deployment/frontend;staging/edge/DaemonSet/proxy;staging/web/Deployment/frontend", "unowned": ""}[d.Owner]
		if strings.Join(got, ",") != want {
			t.Errorf("%s new breaches %q, want %q", d.Owner, got, want)
		}
	}
}

// TestVEXNotInDigest: a finding a VEX statement says is not affected is
// neither a breach nor due soon for its owner.
func TestVEXNotInDigest(t *testing.T) {
	owners := Owners{{Owner: "team-payments", Namespaces: []string{"payments"}}}
	due := func(r *report.Report) []string {
		var got []string
		for _, d := range Digests(r, owners) {
			if d.Owner != "team-payments" {
				continue
			}
			for _, it := range append(d.DueSoon, d.NewBreaches...) {
				got = append(got, it.Vulnerability)
			}
		}
		return got
	}
	if got := due(sample.Report()); !slices.Contains(got, "CVE-2024-0005") {
		t.Fatalf("without VEX CVE-2024-0005 is due soon for team-payments: %v", got)
	}
	in := sample.Input()
	in.VEX = sample.NotAffected("CVE-2024-0005", "ghcr.io/acme/api")
	if got := due(report.Build(in)); slices.Contains(got, "CVE-2024-0005") {
		t.Errorf("VEX not_affected CVE-2024-0005 is in team-payments' digest: %v", got)
	}
}

// TestDeliver: the webhook gets each owner's digest as JSON and Slack as
// Block Kit (golden), routes send an owner's digest to its own endpoint.
func TestDeliver(t *testing.T) {
	hook, slack, route := &endpoint{}, &endpoint{}, &endpoint{}
	hs, ss, rs := httptest.NewServer(hook), httptest.NewServer(slack), httptest.NewServer(route)
	defer hs.Close()
	defer ss.Close()
	defer rs.Close()
	cfg := Config{OwnersFile: writeFile(t, "owners.yaml", ownersYAML), Webhook: hs.URL + "/hook/T0KEN1",
		SlackWebhook: ss.URL + "/services/T000/B000/XXXXSECRET",
		ConfigFile:   writeFile(t, "notify.yaml", "routes:\n  - owner: team-payments\n    webhook: "+rs.URL+"/payments/T0KEN2\n")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sent, err := Deliver(t.Context(), cfg, sample.Report(), nil, nil, zaptest.NewLogger(t))
	if err != nil || sent != 7 {
		t.Fatalf("sent %d, err %v; want 3 owners × 2 global endpoints + 1 route", sent, err)
	}
	goldentest.Assert(t, "webhook.json", []byte(strings.Join(hook.bodies, "\n")+"\n"))
	goldentest.Assert(t, "slack.json", []byte(strings.Join(slack.bodies, "\n")+"\n"))
	if len(route.bodies) != 1 || !strings.Contains(route.bodies[0], `"owner":"team-payments"`) || route.paths[0] != "/payments/T0KEN2" {
		t.Fatalf("route got %q", route.bodies)
	}
	for _, b := range slack.bodies {
		var m struct {
			Text   string           `json:"text"`
			Blocks []map[string]any `json:"blocks"`
		}
		if err := json.Unmarshal([]byte(b), &m); err != nil || m.Text == "" || len(m.Blocks) < 2 || m.Blocks[0]["type"] != "header" {
			t.Fatalf("not a Block Kit message: %s", b)
		}
	}
}

// handlerTransport serves requests in-process (the synctest clock only
// advances while every goroutine waits on it).
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	return rec.Result(), nil
}

// TestFailingEndpoint: Retry-After is honoured (bounded retries); an
// endpoint that keeps failing is an error naming it without its token, and
// the other endpoints still get their digests.
func TestFailingEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ep := &endpoint{fail: 1, status: http.StatusTooManyRequests, retryIn: "12"}
		cfg := Config{OwnersFile: writeFile(t, "owners.yaml", ownersYAML), Webhook: "https://hooks.example.com/hook/T0KEN1"}
		sent, err := Deliver(t.Context(), cfg, sample.Report(), nil, &http.Client{Transport: handlerTransport{ep}}, zaptest.NewLogger(t))
		if err != nil || sent != 3 {
			t.Fatalf("sent %d err %v", sent, err)
		}
		if gap := ep.times[1].Sub(ep.times[0]); gap != 12*time.Second {
			t.Fatalf("retried after %s, want Retry-After's 12s", gap)
		}

		down := &endpoint{fail: 100, status: http.StatusInternalServerError}
		sent, err = Deliver(t.Context(), cfg, sample.Report(), nil, &http.Client{Transport: handlerTransport{down}}, zaptest.NewLogger(t))
		if err == nil || sent != 0 {
			t.Fatalf("sent %d err %v; want a failure", sent, err)
		}
		if strings.Contains(err.Error(), "T0KEN1") || !strings.Contains(err.Error(), "https://hooks.example.com/…") {
			t.Fatalf("error leaks the token or hides the endpoint: %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"none", Config{}, ""},
		{"bad webhook", Config{Webhook: "ftp://x/T0KEN"}, "--notify-webhook"},
		{"owners without endpoint", Config{OwnersFile: writeFile(t, "o.yaml", ownersYAML)}, "--owners-file needs"},
		{"missing owners file", Config{Webhook: "https://h/x", OwnersFile: "/nonexistent/owners.yaml"}, "--owners-file"},
		{"bad owners field", Config{Webhook: "https://h/x", OwnersFile: writeFile(t, "o.yaml", "owners:\n  - ownr: x\n")}, "--owners-file"},
		{"owner label", Config{Webhook: "https://h/x", OwnerLabel: "example.com/owner"}, ""},
		{"owner label without prefix", Config{Webhook: "https://h/x", OwnerLabel: "team"}, ""},
		{"owner label with a space", Config{Webhook: "https://h/x", OwnerLabel: "team owner"}, `--owner-label "team owner": not a Kubernetes label or annotation key`},
		{"owner label with two slashes", Config{Webhook: "https://h/x", OwnerLabel: "a.com/b/c"}, "--owner-label"},
		{"owner label prefix only", Config{Webhook: "https://h/x", OwnerLabel: "example.com/"}, "--owner-label"},
		{"owner label over 63", Config{Webhook: "https://h/x", OwnerLabel: strings.Repeat("x", 64)}, "--owner-label"},
		{"owner label without endpoint", Config{OwnerLabel: "team"}, "--owner-label needs"},
		{"bad route URL", Config{ConfigFile: writeFile(t, "n.yaml", "routes:\n  - owner: a\n    slack: gopher://h/T0KEN\n")}, "--notify-config"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "T0KEN") {
				t.Fatalf("leaks: %v", err)
			}
		})
	}
}

// TestOwnerLabel: with --owner-label, a workload's owner is its namespace's
// label of that key, else its annotation, else the owners file; the notify
// config routes each owner's digest to the owner's own endpoint, and each
// endpoint gets exactly one digest, its owner's, listing only the owner's
// workloads. A cluster whose inventory recorded no namespaces (an older
// dispatcher) keeps the owners file's owners.
func TestOwnerLabel(t *testing.T) {
	ns := Namespaces{}
	ns.Add("prod-eu", []contract.Namespace{
		// Label and annotation: the label wins.
		{Name: "web", Labels: map[string]string{"team": "web-by-label"}, Annotations: map[string]string{"team": "web-by-annotation"}},
		// Another key only: the owners file's team-payments.
		{Name: "payments", Labels: map[string]string{"tier": "gold"}},
	})
	ns.Add("staging", []contract.Namespace{
		{Name: "edge", Annotations: map[string]string{"team": "edge-by-annotation"}},
	})
	// staging/web has no recorded metadata: the owners file's team-web.

	owners := []string{"web-by-label", "edge-by-annotation", "team-web", "team-payments", "team-platform"}
	eps := map[string]*endpoint{}
	var routes strings.Builder
	routes.WriteString("routes:\n")
	for _, o := range owners {
		ep := &endpoint{}
		srv := httptest.NewServer(ep)
		t.Cleanup(srv.Close)
		eps[o] = ep
		routes.WriteString("  - owner: " + o + "\n    webhook: " + srv.URL + "/" + o + "\n")
	}
	cfg := Config{OwnersFile: writeFile(t, "owners.yaml", ownersYAML), OwnerLabel: "team",
		ConfigFile: writeFile(t, "notify.yaml", routes.String())}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sent, err := Deliver(t.Context(), cfg, sample.Report(), ns, nil, zaptest.NewLogger(t))
	if err != nil || sent != len(owners) {
		t.Fatalf("sent %d err %v; want one digest per owner (%d)", sent, err, len(owners))
	}
	// CVE-2024-0004 runs in prod-eu/web, staging/edge and staging/web.
	wantWorkloads := map[string]string{
		"web-by-label":       "prod-eu/web/Deployment/frontend",
		"edge-by-annotation": "staging/edge/DaemonSet/proxy",
		"team-web":           "staging/web/Deployment/frontend",
	}
	for _, o := range owners {
		ep := eps[o]
		if len(ep.bodies) != 1 {
			t.Errorf("%s's endpoint got %d digests, want exactly 1", o, len(ep.bodies))
			continue
		}
		var d Digest
		if err := json.Unmarshal([]byte(ep.bodies[0]), &d); err != nil {
			t.Fatal(err)
		}
		if d.Owner != o || ep.paths[0] != "/"+o {
			t.Errorf("%s's endpoint (%s) got %s's digest", o, ep.paths[0], d.Owner)
		}
		var got []string
		for _, it := range slices.Concat(d.NewBreaches, d.DueSoon, d.ExpiredAcceptances) {
			if it.Vulnerability == "CVE-2024-0004" {
				got = append(got, it.Workloads...)
			}
		}
		if strings.Join(got, ",") != wantWorkloads[o] {
			t.Errorf("%s: CVE-2024-0004 workloads %q, want %q", o, got, wantWorkloads[o])
		}
	}
}

// TestResolver: label over annotation over owners file, per cluster; blank
// values and unrecorded namespaces fall back.
func TestResolver(t *testing.T) {
	ns := Namespaces{}
	ns.Add("a", []contract.Namespace{
		{Name: "both", Labels: map[string]string{"o": "label"}, Annotations: map[string]string{"o": "annotation"}},
		{Name: "annotation", Annotations: map[string]string{"o": "annotation"}},
		{Name: "blank", Labels: map[string]string{"o": ""}, Annotations: map[string]string{"o": " "}},
	})
	file := Owners{{Owner: "file-a", Clusters: []string{"a"}}}
	for _, tt := range []struct {
		label, cluster, namespace, want string
	}{
		{"o", "a", "both", "label"},
		{"o", "a", "annotation", "annotation"},
		{"o", "a", "blank", "file-a"},
		{"o", "a", "unrecorded", "file-a"},
		{"o", "b", "both", Unowned},
		{"other", "a", "both", "file-a"},
		{"", "a", "both", "file-a"},
	} {
		if got := (Resolver{Label: tt.label, Namespaces: ns, Owners: file}).Of(tt.cluster, tt.namespace); got != tt.want {
			t.Errorf("label %q %s/%s: owner %q, want %q", tt.label, tt.cluster, tt.namespace, got, tt.want)
		}
	}
}
