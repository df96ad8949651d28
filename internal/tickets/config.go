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
	fs.DurationVar(&c.Timeout, "tickets-timeout", c.Timeout, "give up a ticket sync after this long (the next run catches up)")
}

// Enabled reports whether a tracker is configured.
func (c Config) Enabled() bool { return c.GitHubRepo != "" }

// Validate checks the flags and that the token can be read.
func (c Config) Validate() error {
	if !c.Enabled() {
		if c.GitHubAPIURL != "" || c.GitHubTokenFile != "" {
			return errors.New("--github-api-url and --github-token-file need --github-repo")
		}
		return nil
	}
	var errs []error
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

// Tracker builds the configured tracker over hc (rate limits honoured).
func (c Config) Tracker(hc *http.Client) (Tracker, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	base := http.DefaultTransport
	if hc != nil && hc.Transport != nil {
		base = hc.Transport
	}
	return NewGitHub(c.GitHubRepo, c.GitHubAPIURL, tok, &http.Client{Transport: throttle.New(base)})
}
