package tickets

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/google/go-github/v62/github"
)

// GitHub keeps issues in one repository, through go-github.
type GitHub struct {
	client      *github.Client
	owner, repo string
}

// NewGitHub returns the tracker for repo ("owner/name"); apiURL is the API
// root (empty: api.github.com; GitHub Enterprise: https://host/api/v3/).
func NewGitHub(repo, apiURL, token string, hc *http.Client) (*GitHub, error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("--github-repo %q: want owner/name", repo)
	}
	c := github.NewClient(hc)
	if token != "" {
		c = c.WithAuthToken(token)
	}
	if apiURL != "" {
		u, err := url.Parse(strings.TrimSuffix(apiURL, "/") + "/")
		if err != nil {
			return nil, fmt.Errorf("--github-api-url: %w", err)
		}
		c.BaseURL = u
	}
	return &GitHub{client: c, owner: owner, repo: name}, nil
}

// Name implements Tracker.
func (g *GitHub) Name() string { return "github" }

// waiting lets go-github wait for the primary rate limit's reset instead
// of failing (the context's deadline bounds it).
func waiting(ctx context.Context) context.Context {
	return context.WithValue(ctx, github.SleepUntilPrimaryRateLimitResetWhenRateLimited, true)
}

// Create implements Tracker.
func (g *GitHub) Create(ctx context.Context, is Issue) (string, error) {
	labels := is.Labels
	iss, _, err := g.client.Issues.Create(waiting(ctx), g.owner, g.repo, &github.IssueRequest{Title: &is.Title, Body: &is.Body, Labels: &labels})
	if err != nil {
		return "", g.wrap("create issue for "+is.TicketID, err)
	}
	return strconv.Itoa(iss.GetNumber()), nil
}

// Update implements Tracker.
func (g *GitHub) Update(ctx context.Context, ref string, is Issue) error {
	n, err := strconv.Atoi(ref)
	if err != nil {
		return fmt.Errorf("github issue %q: %w", ref, err)
	}
	if _, _, err := g.client.Issues.Edit(waiting(ctx), g.owner, g.repo, n, &github.IssueRequest{Title: &is.Title, Body: &is.Body}); err != nil {
		return g.wrap("update issue #"+ref, err)
	}
	return nil
}

// State implements Tracker.
func (g *GitHub) State(ctx context.Context, ref string) (Remote, error) {
	n, err := strconv.Atoi(ref)
	if err != nil {
		return 0, fmt.Errorf("github issue %q: %w", ref, err)
	}
	iss, resp, err := g.client.Issues.Get(waiting(ctx), g.owner, g.repo, n)
	if resp != nil && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone) {
		return RemoteGone, nil
	}
	if err != nil {
		return 0, g.wrap("read issue #"+ref, err)
	}
	if iss.GetState() == "closed" {
		return RemoteClosed, nil
	}
	return RemoteOpen, nil
}

// Reopen implements Tracker.
func (g *GitHub) Reopen(ctx context.Context, ref, comment string) error {
	return g.setState(ctx, ref, "open", "reopened", comment)
}

// Close implements Tracker.
func (g *GitHub) Close(ctx context.Context, ref, comment string) error {
	return g.setState(ctx, ref, "closed", "completed", comment)
}

func (g *GitHub) setState(ctx context.Context, ref, state, reason, comment string) error {
	n, err := strconv.Atoi(ref)
	if err != nil {
		return fmt.Errorf("github issue %q: %w", ref, err)
	}
	if _, _, err := g.client.Issues.CreateComment(waiting(ctx), g.owner, g.repo, n, &github.IssueComment{Body: &comment}); err != nil {
		return g.wrap("comment on issue #"+ref, err)
	}
	if _, _, err := g.client.Issues.Edit(waiting(ctx), g.owner, g.repo, n, &github.IssueRequest{State: &state, StateReason: &reason}); err != nil {
		return g.wrap(state+" issue #"+ref, err)
	}
	return nil
}

// wrap names the repository; failures other than bad credentials or a
// missing repository are retryable on the next run.
func (g *GitHub) wrap(what string, err error) error {
	err = fmt.Errorf("github %s/%s: %s: %w", g.owner, g.repo, what, err)
	var er *github.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		switch er.Response.StatusCode {
		case http.StatusUnauthorized, http.StatusNotFound, http.StatusUnprocessableEntity:
			return err
		}
	}
	return &RetryableError{Err: err}
}
