package reporter

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/notify"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// withNamespaces rewrites a cluster's stored inventory with the namespace
// metadata a dispatcher records (none: as a dispatcher before schema 1.2
// wrote it).
func (f *fleetEnv) withNamespaces(cluster string, ns ...contract.Namespace) {
	f.t.Helper()
	inv, err := f.st.Inventory(f.ctx, cluster)
	if err != nil {
		f.t.Fatal(err)
	}
	inv.Namespaces = ns
	if err := f.st.PutInventory(f.ctx, inv); err != nil {
		f.t.Fatal(err)
	}
}

// digestInbox is one owner's webhook: it keeps every digest it gets.
type digestInbox struct {
	mu      sync.Mutex
	digests []notify.Digest
}

func (b *digestInbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var d notify.Digest
	data, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(data, &d); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.digests = append(b.digests, d)
}

// TestOwnerLabel: the reporter with --owner-label team routes each owner's
// digest by the namespace metadata the inventories recorded: the label
// team over the annotation team over the owners file; a cluster whose
// inventory predates namespace metadata (before schema 1.2) falls back to the
// owners file. Each owner's webhook gets exactly its digest, with only its
// workloads; the owners file's owner of a labelled namespace gets nothing.
func TestOwnerLabel(t *testing.T) {
	f := newFleet(t)
	wall := time.Now().UTC()
	f.dispatch("run-1", "c1", wall.Add(-time.Minute), map[string][]container{
		"prod": {
			{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')},
			{ns: "api", kind: "Deployment", name: "api", image: "ghcr.io/acme/api:2.0", key: key('b')},
		},
		"legacy": {{ns: "web", kind: "Deployment", name: "frontend", image: "docker.io/library/nginx:1.25", key: key('a')}},
	}, nil)
	f.withNamespaces("prod",
		contract.Namespace{Name: "web", Labels: map[string]string{"team": "web-by-label"}, Annotations: map[string]string{"team": "web-by-annotation"}},
		contract.Namespace{Name: "api", Annotations: map[string]string{"team": "api-by-annotation"}})
	f.withNamespaces("legacy")
	crit := vuln{"CVE-2025-0001", "CRITICAL", "openssl", "1", "2"}
	f.scanned(key('a'), "c1", wall, crit)
	f.scanned(key('b'), "c1", wall, crit)

	owners := []string{"web-by-label", "api-by-annotation", "team-legacy", "team-prod"}
	inbox := map[string]*digestInbox{}
	routes := "routes:\n"
	for _, o := range owners {
		inbox[o] = &digestInbox{}
		srv := httptest.NewServer(inbox[o])
		t.Cleanup(srv.Close)
		routes += "  - owner: " + o + "\n    webhook: " + srv.URL + "/" + o + "\n"
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := f.config("2025-03-10T06:00:00Z")
	cfg.Notify.OwnerLabel = "team"
	cfg.Notify.OwnersFile = write("owners.yaml", "owners:\n  - owner: team-legacy\n    clusters: [legacy]\n  - owner: team-prod\n    clusters: [prod]\n")
	cfg.Notify.ConfigFile = write("notify.yaml", routes)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	o := f.run(cfg)
	if o.ExitCode() != ExitOK || o.Notified != 3 {
		t.Fatalf("exit %d, %d digests delivered (%v); want 0 and 3", o.ExitCode(), o.Notified, o.Incomplete())
	}
	want := map[string]string{
		"web-by-label":      "prod/web/Deployment/frontend",
		"api-by-annotation": "prod/api/Deployment/api",
		"team-legacy":       "legacy/web/Deployment/frontend",
		"team-prod":         "",
	}
	for _, owner := range owners {
		b := inbox[owner]
		b.mu.Lock()
		got := b.digests
		b.mu.Unlock()
		if want[owner] == "" {
			if len(got) != 0 {
				t.Errorf("%s got %d digests; the label and annotation own its namespaces", owner, len(got))
			}
			continue
		}
		if len(got) != 1 || got[0].Owner != owner {
			t.Errorf("%s got %+v, want exactly its own digest", owner, got)
			continue
		}
		var workloads []string
		for _, it := range append(append(got[0].NewBreaches, got[0].DueSoon...), got[0].ExpiredAcceptances...) {
			workloads = append(workloads, it.Workloads...)
		}
		if strings.Join(workloads, ",") != want[owner] {
			t.Errorf("%s: workloads %q, want %q", owner, workloads, want[owner])
		}
	}
}
