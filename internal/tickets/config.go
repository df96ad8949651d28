package tickets

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/metrics"
	"github.com/fleetscan/fleetscan/internal/throttle"
)

// TokenEnv is read for the GitHub token when --github-token-file is not
// given.
const TokenEnv = "GITHUB_TOKEN"

// Config selects the tracker the reporter keeps issues in.
type Config struct {
	// GitHubRepo is "owner/name"; empty disables GitHub.
	GitHubRepo string
	// GitHubAPIURL is the API root for GitHub Enterprise.
	GitHubAPIURL string
	// GitHubTokenFile holds the token (else $GITHUB_TOKEN).
	GitHubTokenFile string
	// JiraURL is the Jira base URL; empty disables Jira.
	JiraURL string
	// JiraProject is the project key issues are created in.
	JiraProject string
	// JiraUser makes the token a Cloud API token (basic auth); empty: a
	// Data Center personal access token (bearer).
	JiraUser string
	// JiraTokenFile holds the Jira token.
	JiraTokenFile string
	// Timeout bounds one sync.
	Timeout time.Duration
}

// Defaults returns the documented defaults.
func Defaults() Config { return Config{Timeout: 10 * time.Minute} }

// RegisterFlags binds the ticket flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.GitHubRepo, "github-repo", c.GitHubRepo, "keep one GitHub issue per ticket in this repository (owner/name): created, updated, closed when fixed (complete reports only), reopened when a finding reopens")
	fs.StringVar(&c.GitHubAPIURL, "github-api-url", c.GitHubAPIURL, "GitHub API root for GitHub Enterprise Server, e.g. https://github.example.com/api/v3/ (default: api.github.com)")
	fs.StringVar(&c.GitHubTokenFile, "github-token-file", c.GitHubTokenFile, "file holding the GitHub token (issues: read and write); default: $"+TokenEnv)
	fs.StringVar(&c.JiraURL, "jira-url", c.JiraURL, "keep one Jira issue per ticket (REST API v2) on this Jira, e.g. https://jira.example.com")
	fs.StringVar(&c.JiraProject, "jira-project", c.JiraProject, "Jira project key the issues are created in (as Tasks)")
	fs.StringVar(&c.JiraUser, "jira-user", c.JiraUser, "Jira Cloud user (email) for basic auth with an API token; empty: the token is a Data Center personal access token (bearer)")
	fs.StringVar(&c.JiraTokenFile, "jira-token-file", c.JiraTokenFile, "file holding the Jira token (required with --jira-url)")
	fs.DurationVar(&c.Timeout, "tickets-timeout", c.Timeout, "give up a ticket sync after this long (the next run catches up)")
}

// Enabled reports whether a tracker is configured.
func (c Config) Enabled() bool { return c.GitHubRepo != "" || c.JiraURL != "" }

// Validate checks the flags and that the tokens can be read.
func (c Config) Validate() error {
	errs := []error{c.validateJira()}
	if c.GitHubRepo == "" {
		if c.GitHubAPIURL != "" || c.GitHubTokenFile != "" {
			errs = append(errs, errors.New("--github-api-url and --github-token-file need --github-repo"))
		}
		return errors.Join(errs...)
	}
	if o, n, ok := strings.Cut(c.GitHubRepo, "/"); !ok || o == "" || n == "" || strings.ContainsAny(n, "/ ") {
		errs = append(errs, fmt.Errorf("--github-repo %q: want owner/name", c.GitHubRepo))
	}
	if c.GitHubAPIURL != "" {
		if err := metrics.CheckHTTPURL(c.GitHubAPIURL); err != nil {
			errs = append(errs, fmt.Errorf("--github-api-url %w", err))
		}
	}
	if _, err := c.token(); err != nil {
		errs = append(errs, err)
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--tickets-timeout %s: must be positive", c.Timeout))
	}
	return errors.Join(errs...)
}

// token reads the GitHub token: --github-token-file, else $GITHUB_TOKEN.
func (c Config) token() (string, error) {
	if c.GitHubTokenFile == "" {
		if t := strings.TrimSpace(os.Getenv(TokenEnv)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("--github-repo needs a token: --github-token-file or $%s", TokenEnv)
	}
	data, err := os.ReadFile(c.GitHubTokenFile)
	if err != nil {
		return "", fmt.Errorf("--github-token-file: %w", err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("--github-token-file %s: empty", c.GitHubTokenFile)
	}
	return t, nil
}

// validateJira checks the Jira flags.
func (c Config) validateJira() error {
	if c.JiraURL == "" {
		if c.JiraProject != "" || c.JiraTokenFile != "" || c.JiraUser != "" {
			return errors.New("--jira-project, --jira-user and --jira-token-file need --jira-url")
		}
		return nil
	}
	var errs []error
	if err := metrics.CheckHTTPURL(c.JiraURL); err != nil {
		errs = append(errs, fmt.Errorf("--jira-url %w", err))
	}
	if strings.TrimSpace(c.JiraProject) == "" {
		errs = append(errs, errors.New("--jira-url needs --jira-project"))
	}
	if _, err := c.jiraToken(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c Config) jiraToken() (string, error) {
	if c.JiraTokenFile == "" {
		return "", errors.New("--jira-url needs --jira-token-file")
	}
	data, err := os.ReadFile(c.JiraTokenFile)
	if err != nil {
		return "", fmt.Errorf("--jira-token-file: %w", err)
	}
	t := strings.TrimSpace(string(data))
	if t == "" {
		return "", fmt.Errorf("--jira-token-file %s: empty", c.JiraTokenFile)
	}
	return t, nil
}

// Trackers builds the configured trackers over hc's transport, rate limits
// honoured (throttle).
func (c Config) Trackers(hc *http.Client) ([]Tracker, error) {
	base := http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		base = hc.Transport
	}
	client := &http.Client{Transport: throttle.New(base)}
	var out []Tracker
	if c.GitHubRepo != "" {
		tok, err := c.token()
		if err != nil {
			return nil, err
		}
		g, err := NewGitHub(c.GitHubRepo, c.GitHubAPIURL, tok, client)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	if c.JiraURL != "" {
		tok, err := c.jiraToken()
		if err != nil {
			return nil, err
		}
		j, err := NewJira(c.JiraURL, c.JiraProject, c.JiraUser, tok, client)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}
