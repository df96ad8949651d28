package tickets

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/tickets/ticketstest"
)

var asOf = time.Date(2025, 3, 10, 6, 0, 0, 0, time.UTC)

func ticket(pkg, fixed string, images ...string) report.Ticket {
	repo := "docker.io/library/nginx"
	return report.Ticket{ID: report.TicketID(repo, pkg), Repository: repo, Package: pkg, Installed: []string{"1.0"},
		FixedVersion: fixed, Summary: pkg + " 1.0 → " + fixed, Fixes: []string{"CVE-2025-0001"}, Severity: "HIGH",
		Deadline: asOf.AddDate(0, 0, 30), Images: images, Workloads: []string{"prod/web/Deployment/frontend"}}
}

// reopenedFinding is a finding of pkg that came back after it was fixed.
func reopenedFinding(pkg string) report.Finding {
	return report.Finding{Vuln: &report.Vuln{ID: "CVE-2025-0001", PkgName: pkg},
		Img: &report.Image{Reference: "docker.io/library/nginx:1.25"}, Change: sla.ChangeReopened, Status: sla.StatusOpen}
}

func TestSyncSequence(t *testing.T) {
	env := natstest.Start(t)
	gh := ticketstest.NewGitHub()
	srv := httptest.NewServer(gh)
	defer srv.Close()
	tr, err := NewGitHub("acme/platform", srv.URL+"/api/v3/", "ghp_s3cret", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	s := &Syncer{KV: env.Res.Tickets, Tracker: tr, Log: zaptest.NewLogger(t)}
	openssl, zlib := ticket("openssl", "3.1.4", "sha256:a"), ticket("zlib", "1.3.1", "sha256:a")
	steps := []struct {
		name    string
		report  *report.Report
		want    []string
		result  string
		failing bool
		wantErr bool
		byHand  func()
	}{
		{name: "new tickets are created", report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib)},
			want: []string{"POST ", "POST "}, result: "2 created"},
		{name: "rerun creates no duplicates", report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib)},
			want: []string{"GET /1", "GET /2"}, result: "2 unchanged"},
		{name: "a changed ticket is updated", report: &report.Report{Complete: true, Tickets: report.TicketsOf(ticket("openssl", "3.1.5", "sha256:a", "sha256:b"), zlib)},
			want: []string{"GET /1", "PATCH /1", "GET /2"}, result: "1 updated"},
		{name: "an incomplete report closes nothing", report: &report.Report{Complete: false, Tickets: report.TicketsOf(zlib)},
			want: []string{"GET /2"}, result: "1 left open"},
		{name: "fixed in a complete report: closed", report: &report.Report{Complete: true, AsOf: asOf, Tickets: report.TicketsOf(zlib)},
			want: []string{"GET /2", "POST /1/comments", "PATCH /1"}, result: "1 closed"},
		{name: "the finding reopens: reopened", report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib),
			Findings: report.RowsOf(reopenedFinding("openssl"))},
			want: []string{"GET /1", "POST /1/comments", "PATCH /1", "PATCH /1", "GET /2"}, result: "1 reopened"},
		{name: "closed by hand: left alone", byHand: func() { gh.Issues[2].State = "closed" },
			report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib)},
			want:   []string{"GET /1", "GET /2"}, result: "1 closed by hand"},
		{name: "closed by hand stays closed", report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib)},
			want: []string{"GET /1"}, result: "2 unchanged"},
		{name: "deleted by hand, then the finding reopens: a new issue", byHand: func() { delete(gh.Issues, 2) },
			report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib), Findings: report.RowsOf(reopenedFinding("zlib"))},
			want:   []string{"GET /1", "GET /2", "POST "}, result: "1 created"},
		{name: "a failing tracker loses nothing", failing: true, wantErr: true,
			report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib, ticket("curl", "8.6.0", "sha256:c"))},
			result: "3 failed"},
		{name: "the next run catches up", report: &report.Report{Complete: true, Tickets: report.TicketsOf(openssl, zlib, ticket("curl", "8.6.0", "sha256:c"))},
			want: []string{"GET /1", "GET /3", "POST "}, result: "1 created"},
	}
	for _, st := range steps {
		if st.byHand != nil {
			gh.Lock()
			st.byHand()
			gh.Unlock()
		}
		gh.Lock()
		gh.Failing = st.failing
		gh.Unlock()
		res, err := s.Sync(t.Context(), st.report)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: err %v", st.name, err)
		}
		if err != nil && strings.Contains(err.Error(), "ghp_s3cret") {
			t.Fatalf("%s: the error leaks the token: %v", st.name, err)
		}
		got := gh.Take()
		if !st.failing && strings.Join(got, ",") != strings.Join(st.want, ",") {
			t.Fatalf("%s: requests %q, want %q", st.name, got, st.want)
		}
		if !strings.Contains(res.String(), st.result) {
			t.Fatalf("%s: result %s, want %q", st.name, res, st.result)
		}
	}
	gh.Lock()
	defer gh.Unlock()
	if len(gh.Issues) != 3 {
		t.Fatalf("issues %d, want 3 (openssl, the new zlib, curl)", len(gh.Issues))
	}
	one := gh.Issues[1]
	// Reopened and brought back to the report's ticket (3.1.4, one image).
	if one.State != "open" || one.Body != issueFor(openssl).Body || len(one.Comments) != 2 {
		t.Fatalf("issue 1: %+v", one)
	}
	if strings.Join(one.Labels, ",") != "fleetscan,"+openssl.ID || !strings.HasPrefix(one.Title, "["+openssl.ID+"]") {
		t.Fatalf("issue 1 labels %v title %q", one.Labels, one.Title)
	}
	for _, a := range gh.Auth {
		if a != "Bearer ghp_s3cret" {
			t.Fatalf("authorization %q", a)
		}
	}
}

// TestReopenedOnTheGateOnly: a reopened finding reopens its ticket only
// while it is on the gate (open or acceptance-expired); an accepted one or
// one a VEX not_affected/fixed statement covers has no ticket to reopen.
func TestReopenedOnTheGateOnly(t *testing.T) {
	for _, tc := range []struct {
		status sla.Status
		want   bool
	}{
		{sla.StatusOpen, true}, {sla.StatusAcceptanceExpired, true}, {sla.StatusAccepted, false},
		{sla.StatusNotAffected, false}, {sla.StatusFixed, false},
	} {
		f := reopenedFinding("openssl")
		f.Status = tc.status
		got := reopenedTickets(&report.Report{Findings: report.RowsOf(f)})
		if got[report.TicketID("docker.io/library/nginx", "openssl")] != tc.want {
			t.Errorf("%s: reopened %v, want %v", tc.status, got, tc.want)
		}
	}
}
