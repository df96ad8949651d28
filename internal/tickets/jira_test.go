package tickets

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/report"
)

// fakeJira serves the parts of Jira's REST API v2 fleetscan uses, with a
// workflow of To Do (new) and Done (done), and records every request.
type fakeJira struct {
	mu       sync.Mutex
	issues   map[string]map[string]any // key -> fields (+ "status")
	requests []string
	auth     map[string]bool
}

func (j *fakeJira) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.auth[r.Header.Get("Authorization")] = true
	path := strings.TrimPrefix(r.URL.Path, "/jira/rest/api/2/issue")
	j.requests = append(j.requests, r.Method+" "+path)
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if r.Method == http.MethodPost && path == "" {
		f := body["fields"].(map[string]any)
		key := fmt.Sprintf("%s-%d", f["project"].(map[string]any)["key"], len(j.issues)+1)
		f["status"] = "new"
		j.issues[key] = f
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"id":"1000","key":%q}`, key)
		return
	}
	is := j.issues[parts[0]]
	if is == nil {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	switch {
	case r.Method == http.MethodGet && len(parts) == 1:
		fmt.Fprintf(w, `{"key":%q,"fields":{"status":{"name":"x","statusCategory":{"key":%q}}}}`, parts[0], is["status"])
	case r.Method == http.MethodPut && len(parts) == 1:
		for k, v := range body["fields"].(map[string]any) {
			is[k] = v
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet && parts[1] == "transitions":
		fmt.Fprint(w, `{"transitions":[{"id":"11","to":{"statusCategory":{"key":"new"}}},{"id":"31","to":{"statusCategory":{"key":"done"}}}]}`)
	case r.Method == http.MethodPost && parts[1] == "transitions":
		if body["transition"].(map[string]any)["id"] == "31" {
			is["status"] = "done"
		} else {
			is["status"] = "new"
		}
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && parts[1] == "comment":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"id":"1"}`)
	default:
		w.WriteHeader(http.StatusBadRequest)
	}
}

func (j *fakeJira) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	r := j.requests
	j.requests = nil
	return r
}

func TestJiraSequence(t *testing.T) {
	env := natstest.Start(t)
	fj := &fakeJira{issues: map[string]map[string]any{}, auth: map[string]bool{}}
	srv := httptest.NewServer(fj)
	defer srv.Close()
	tr, err := NewJira(srv.URL+"/jira", "SEC", "", "jira-pat-secret", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	s := &Syncer{KV: env.Res.Tickets, Tracker: tr, Log: zaptest.NewLogger(t)}
	openssl := ticket("openssl", "3.1.4", "sha256:a")
	steps := []struct {
		name   string
		report *report.Report
		want   []string
	}{
		{"create", &report.Report{Complete: true, Tickets: report.TicketsOf(openssl)}, []string{"POST "}},
		{"update", &report.Report{Complete: true, Tickets: report.TicketsOf(ticket("openssl", "3.1.5", "sha256:a"))}, []string{"GET /SEC-1", "PUT /SEC-1"}},
		{"close", &report.Report{Complete: true, AsOf: asOf}, []string{"GET /SEC-1/transitions", "POST /SEC-1/comment", "POST /SEC-1/transitions"}},
		{"reopen", &report.Report{Complete: true, Tickets: report.TicketsOf(openssl), Findings: report.RowsOf(reopenedFinding("openssl"))},
			[]string{"GET /SEC-1", "GET /SEC-1/transitions", "POST /SEC-1/comment", "POST /SEC-1/transitions", "PUT /SEC-1"}},
	}
	for _, st := range steps {
		if _, err := s.Sync(t.Context(), st.report); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := fj.take(); strings.Join(got, ",") != strings.Join(st.want, ",") {
			t.Fatalf("%s: requests %q, want %q", st.name, got, st.want)
		}
	}
	is := fj.issues["SEC-1"]
	if len(fj.issues) != 1 || is["status"] != "new" || is["description"] != issueFor(openssl).Body {
		t.Fatalf("issues: %v", fj.issues)
	}
	if labels := fmt.Sprint(is["labels"]); labels != "[fleetscan "+openssl.ID+"]" {
		t.Fatalf("labels %s", labels)
	}
	if len(fj.auth) != 1 || !fj.auth["Bearer jira-pat-secret"] {
		t.Fatalf("authorization headers %v", fj.auth)
	}
}
