package reporter

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetscan/fleetscan/internal/tickets"
	"github.com/fleetscan/fleetscan/internal/tickets/ticketstest"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// TestTicketLifecycleOverRuns: consecutive reporter runs, each at its own
// --now, against embedded NATS and a GitHub Issues server driven through
// go-github. A finding appears: its ticket's issue is created; a rerun
// creates no duplicate; the ticket changes (a second image): updated; the
// finding is fixed but the run is incomplete: left open; fixed on a complete
// run: closed; the finding comes back: the same issue is reopened; a rerun
// changes nothing.
func TestTicketLifecycleOverRuns(t *testing.T) {
	f := newFleet(t)
	gh := ticketstest.NewGitHub()
	srv := httptest.NewServer(gh)
	defer srv.Close()
	t.Setenv("GITHUB_TOKEN", "ghp_testtoken")
	wall := time.Now().UTC().Add(-time.Hour)
	openssl := vuln{"CVE-2025-0001", "HIGH", "openssl", "3.0.1", "3.0.2"}
	frontend := func(k contract.ImageKey, image string) container {
		return container{ns: "web", kind: "Deployment", name: "frontend", image: image, key: k}
	}
	batch := container{ns: "jobs", kind: "CronJob", name: "batch", image: "docker.io/library/busybox:1.36", key: key('d')}
	steps := []struct {
		name string
		now  string
		// dispatch stores a new run first; rerun reports again on the
		// previous one.
		prod []container
		// broken are images whose scan failed (the report is incomplete).
		broken   []contract.ImageKey
		scans    map[contract.ImageKey][]vuln
		wantExit int
		want     tickets.Result
		wantReqs []string
		state    string
	}{
		{name: "the finding appears: created", now: "2025-03-10T06:00:00Z",
			prod: []container{frontend(key('a'), "docker.io/library/nginx:1.25")}, scans: map[contract.ImageKey][]vuln{key('a'): {openssl}, key('d'): nil},
			want: tickets.Result{Created: 1}, wantReqs: []string{"POST "}, state: "open"},
		{name: "rerun: no duplicate", now: "2025-03-10T06:00:00Z",
			want: tickets.Result{Unchanged: 1}, wantReqs: []string{"GET /1"}, state: "open"},
		{name: "a second image of the repository: updated", now: "2025-03-11T06:00:00Z",
			prod:  []container{frontend(key('a'), "docker.io/library/nginx:1.25"), {ns: "web", kind: "Deployment", name: "admin", image: "docker.io/library/nginx:1.26", key: key('b')}},
			scans: map[contract.ImageKey][]vuln{key('a'): {openssl}, key('b'): {openssl}, key('d'): nil},
			want:  tickets.Result{Updated: 1}, wantReqs: []string{"GET /1", "PATCH /1"}, state: "open"},
		{name: "fixed, but an image failed to scan: left open", now: "2025-03-12T06:00:00Z",
			prod:   []container{frontend(key('c'), "docker.io/library/nginx:1.27"), {ns: "web", kind: "Deployment", name: "cache", image: "docker.io/library/redis:7", key: key('e')}},
			broken: []contract.ImageKey{key('e')}, scans: map[contract.ImageKey][]vuln{key('c'): nil, key('d'): nil},
			wantExit: ExitIncomplete, want: tickets.Result{Deferred: 1}, wantReqs: nil, state: "open"},
		{name: "fixed on a complete run: closed", now: "2025-03-13T06:00:00Z",
			prod: []container{frontend(key('c'), "docker.io/library/nginx:1.27")}, scans: map[contract.ImageKey][]vuln{key('c'): nil, key('d'): nil},
			want: tickets.Result{Closed: 1}, wantReqs: []string{"POST /1/comments", "PATCH /1"}, state: "closed"},
		{name: "the finding comes back: reopened", now: "2025-03-14T06:00:00Z",
			prod: []container{frontend(key('a'), "docker.io/library/nginx:1.25")}, scans: map[contract.ImageKey][]vuln{key('a'): {openssl}, key('d'): nil},
			want: tickets.Result{Reopened: 1}, wantReqs: []string{"GET /1", "POST /1/comments", "PATCH /1", "PATCH /1"}, state: "open"},
		{name: "rerun after the reopening: nothing new", now: "2025-03-14T06:00:00Z",
			want: tickets.Result{Unchanged: 1}, wantReqs: []string{"GET /1"}, state: "open"},
	}
	for i, st := range steps {
		if st.prod != nil {
			created := wall.Add(time.Duration(i) * time.Minute)
			run, cycle := "run-"+string(rune('1'+i)), "c"+string(rune('1'+i))
			f.dispatch(run, cycle, created, map[string][]container{"prod": st.prod, "staging": {batch}}, nil)
			for k, vs := range st.scans {
				f.scanned(k, cycle, created.Add(10*time.Second), vs...)
			}
			for _, k := range st.broken {
				f.failed(k, cycle, created.Add(10*time.Second), contract.FailureUnauthorized, "pull docker.io/library/redis:7: 401")
			}
		}
		cfg := f.config(st.now)
		cfg.Tickets.GitHubRepo, cfg.Tickets.GitHubAPIURL = "acme/platform", srv.URL+"/api/v3/"
		d := f.deps(nil)
		d.Tickets = f.env.Res.Tickets
		o, err := Run(f.ctx, cfg, d)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if o.ExitCode() != st.wantExit {
			t.Fatalf("%s: exit %d, want %d (%v)", st.name, o.ExitCode(), st.wantExit, o.Incomplete())
		}
		if len(o.Tickets) != 1 || o.Tickets[0] != st.want {
			t.Fatalf("%s: ticket sync %v, want %s", st.name, o.Tickets, st.want)
		}
		if got := gh.Take(); !slices.Equal(got, st.wantReqs) {
			t.Fatalf("%s: GitHub requests %q, want %q", st.name, got, st.wantReqs)
		}
		gh.Lock()
		n, one := len(gh.Issues), gh.Issues[1]
		state, labels := one.State, strings.Join(one.Labels, ",")
		gh.Unlock()
		if n != 1 || state != st.state {
			t.Fatalf("%s: %d issues, issue 1 %s; want 1, %s", st.name, n, state, st.state)
		}
		if !strings.HasPrefix(labels, "fleetscan,FS-") {
			t.Fatalf("%s: issue labels %q, want fleetscan and the ticket ID", st.name, labels)
		}
	}
	gh.Lock()
	defer gh.Unlock()
	if c := gh.Issues[1].Comments; len(c) != 2 || !strings.Contains(c[0], "closing") || !strings.Contains(c[1], "is back in the report") {
		t.Fatalf("issue comments %q: want the closing and the reopening", c)
	}
}
