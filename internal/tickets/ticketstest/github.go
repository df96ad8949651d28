// Package ticketstest is a GitHub Issues server for tests of the ticket
// sync: it keeps issues in memory and answers go-github's requests as
// GitHub's REST API does.
package ticketstest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// GitHub serves the Issues REST API as GitHub does for the repository
// acme/platform under /api/v3/ (GitHub Enterprise's API path: point
// --github-api-url at the server's URL + "/api/v3/"), and records every
// request. Lock it to read or change its fields while it serves.
type GitHub struct {
	sync.Mutex
	// Issues are the repository's issues by number.
	Issues map[int]*Issue
	// Failing answers every request 429 with an hour's Retry-After.
	Failing bool
	// Auth are the Authorization headers received, in order.
	Auth     []string
	next     int
	requests []string
}

// Issue is one issue as the fake keeps it.
type Issue struct {
	Number   int      `json:"number"`
	Title    string   `json:"title"`
	Body     string   `json:"body"`
	State    string   `json:"state"`
	Labels   []string `json:"-"`
	Comments []string `json:"-"`
}

// NewGitHub returns a repository without issues.
func NewGitHub() *GitHub { return &GitHub{Issues: map[int]*Issue{}, next: 1} }

// ServeHTTP implements http.Handler.
func (g *GitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.Lock()
	defer g.Unlock()
	path := strings.TrimPrefix(r.URL.Path, "/api/v3/repos/acme/platform/issues")
	g.requests = append(g.requests, r.Method+" "+path)
	g.Auth = append(g.Auth, r.Header.Get("Authorization"))
	if g.Failing {
		w.Header().Set("Retry-After", "3600") // longer than the transport waits
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	var req struct {
		Title  *string   `json:"title"`
		Body   *string   `json:"body"`
		State  *string   `json:"state"`
		Labels *[]string `json:"labels"`
	}
	_ = json.NewDecoder(r.Body).Decode(&req)
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case r.Method == http.MethodPost && path == "":
		is := &Issue{Number: g.next, Title: *req.Title, Body: *req.Body, State: "open", Labels: *req.Labels}
		g.Issues[g.next] = is
		g.next++
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(is)
		return
	case len(parts) >= 1:
		n, _ := strconv.Atoi(parts[0])
		is := g.Issues[n]
		if is == nil {
			http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
			return
		}
		switch {
		case r.Method == http.MethodGet && len(parts) == 1:
		case r.Method == http.MethodPatch && len(parts) == 1:
			if req.Title != nil {
				is.Title, is.Body = *req.Title, *req.Body
			}
			if req.State != nil {
				is.State = *req.State
			}
		case r.Method == http.MethodPost && len(parts) == 2 && parts[1] == "comments":
			is.Comments = append(is.Comments, *req.Body)
			w.WriteHeader(http.StatusCreated)
			_, _ = fmt.Fprint(w, `{"id":1}`)
			return
		default:
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(is)
	}
}

// Take returns the requests received since the last Take, as "METHOD
// path" with the path relative to the repository's issues ("POST ",
// "GET /1", "PATCH /1", "POST /1/comments").
func (g *GitHub) Take() []string {
	g.Lock()
	defer g.Unlock()
	r := g.requests
	g.requests = nil
	return r
}
