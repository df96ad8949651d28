package tickets

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Jira keeps issues in one Jira project through its REST API v2 (Jira
// Data Center and Cloud).
type Jira struct {
	base    *url.URL
	project string
	// auth is the Authorization header: Bearer <PAT>, or Basic for a
	// Cloud user and API token.
	auth string
	hc   *http.Client
}

// NewJira returns the tracker for project at baseURL.
func NewJira(baseURL, project, user, token string, hc *http.Client) (*Jira, error) {
	u, err := url.Parse(strings.TrimSuffix(baseURL, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("--jira-url: %w", err)
	}
	auth := "Bearer " + token
	if user != "" {
		req := &http.Request{Header: http.Header{}}
		req.SetBasicAuth(user, token)
		auth = req.Header.Get("Authorization")
	}
	return &Jira{base: u, project: project, auth: auth, hc: hc}, nil
}

// Name implements Tracker.
func (j *Jira) Name() string { return "jira" }

// do sends one request; out receives the JSON answer. A 404 is returned
// as errJiraNotFound.
func (j *Jira) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	p, query, _ := strings.Cut(path, "?")
	u := j.base.JoinPath(p)
	u.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", j.auth)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := j.hc.Do(req)
	if err != nil {
		return &RetryableError{Err: fmt.Errorf("jira %s %s: %w", method, path, err)}
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return errJiraNotFound
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest:
		return fmt.Errorf("jira %s %s: %s: %.200s", method, path, resp.Status, data)
	case resp.StatusCode >= 300:
		return &RetryableError{Err: fmt.Errorf("jira %s %s: %s: %.200s", method, path, resp.Status, data)}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

var errJiraNotFound = &RetryableError{Err: fmt.Errorf("jira: issue not found")}

// Create implements Tracker: a Task in the project, labelled with the
// ticket ID.
func (j *Jira) Create(ctx context.Context, is Issue) (string, error) {
	fields := map[string]any{"project": map[string]string{"key": j.project}, "summary": is.Title,
		"description": is.Body, "issuetype": map[string]string{"name": "Task"}, "labels": is.Labels}
	var out struct {
		Key string `json:"key"`
	}
	if err := j.do(ctx, http.MethodPost, "rest/api/2/issue", map[string]any{"fields": fields}, &out); err != nil {
		return "", err
	}
	return out.Key, nil
}

// Update implements Tracker.
func (j *Jira) Update(ctx context.Context, ref string, is Issue) error {
	return j.do(ctx, http.MethodPut, "rest/api/2/issue/"+ref, map[string]any{"fields": map[string]string{"summary": is.Title, "description": is.Body}}, nil)
}

// State implements Tracker: an issue whose status is in the "done"
// category is closed.
func (j *Jira) State(ctx context.Context, ref string) (Remote, error) {
	var out struct {
		Fields struct {
			Status struct {
				StatusCategory struct {
					Key string `json:"key"`
				} `json:"statusCategory"`
			} `json:"status"`
		} `json:"fields"`
	}
	err := j.do(ctx, http.MethodGet, "rest/api/2/issue/"+ref+"?fields=status", nil, &out)
	if err == errJiraNotFound {
		return RemoteGone, nil
	}
	if err != nil {
		return 0, err
	}
	if out.Fields.Status.StatusCategory.Key == "done" {
		return RemoteClosed, nil
	}
	return RemoteOpen, nil
}

// Reopen implements Tracker: a transition out of the "done" category.
func (j *Jira) Reopen(ctx context.Context, ref, comment string) error {
	return j.transition(ctx, ref, comment, func(cat string) bool { return cat != "done" })
}

// Close implements Tracker: a transition into the "done" category.
func (j *Jira) Close(ctx context.Context, ref, comment string) error {
	return j.transition(ctx, ref, comment, func(cat string) bool { return cat == "done" })
}

func (j *Jira) transition(ctx context.Context, ref, comment string, want func(string) bool) error {
	var out struct {
		Transitions []struct {
			ID string `json:"id"`
			To struct {
				StatusCategory struct {
					Key string `json:"key"`
				} `json:"statusCategory"`
			} `json:"to"`
		} `json:"transitions"`
	}
	if err := j.do(ctx, http.MethodGet, "rest/api/2/issue/"+ref+"/transitions", nil, &out); err != nil {
		return err
	}
	id := ""
	for _, t := range out.Transitions {
		if want(t.To.StatusCategory.Key) {
			id = t.ID
			break
		}
	}
	if id == "" {
		return fmt.Errorf("jira %s: no workflow transition available to change its status", ref)
	}
	if err := j.do(ctx, http.MethodPost, "rest/api/2/issue/"+ref+"/comment", map[string]string{"body": comment}, nil); err != nil {
		return err
	}
	return j.do(ctx, http.MethodPost, "rest/api/2/issue/"+ref+"/transitions", map[string]any{"transition": map[string]string{"id": id}}, nil)
}
