package feeds

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// The public feeds, the updater's defaults.
const (
	DefaultKEVURL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
	// DefaultEPSSURL is FIRST's current-day file (the older host
	// epss.cyentia.com redirects here).
	DefaultEPSSURL = "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz"
)

// DefaultMaxAge is --max-enrichment-age's default.
const DefaultMaxAge = 7 * 24 * time.Hour

// Config configures the updater (and the age readers judge by).
type Config struct {
	// KEVURL and EPSSURL are the feeds' sources: http(s):// URLs, file://
	// URLs or plain paths (mirrors, air-gapped sites). Empty disables a
	// feed: --kev-url, --epss-url.
	KEVURL  string
	EPSSURL string
	// MaxAge is the age past which a stored copy is stale:
	// --max-enrichment-age.
	MaxAge time.Duration
	// Timeout bounds one fetch attempt, connection to last byte:
	// --feed-timeout.
	Timeout time.Duration
	// LocalOnly fetches only local sources (file:// URLs and paths); remote
	// feeds keep their stored copy. `fleetscan scan --skip-db-update` sets
	// it: explicitly given local sources are still read.
	LocalOnly bool
	// Attempts is how often a transient failure (a connection error, a
	// timeout, HTTP 429 or 5xx) is tried in all; RetryWait the first delay
	// between attempts (doubling, with jitter).
	Attempts  int
	RetryWait time.Duration
}

// Defaults returns the public feeds, a week's maximum age, a two-minute
// timeout and three attempts.
func Defaults() Config {
	return Config{
		KEVURL: DefaultKEVURL, EPSSURL: DefaultEPSSURL, MaxAge: DefaultMaxAge,
		Timeout: 2 * time.Minute, Attempts: 3, RetryWait: 2 * time.Second,
	}
}

// RegisterFlags binds the updater's flags: --kev-url, --epss-url,
// --feed-timeout and --max-enrichment-age.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.KEVURL, "kev-url", c.KEVURL, `CISA KEV catalogue (JSON) to fetch: http(s):// or file:// URL or a path; "" disables it`)
	fs.StringVar(&c.EPSSURL, "epss-url", c.EPSSURL, `FIRST EPSS scores (CSV, optionally gzipped) to fetch: http(s):// or file:// URL or a path; "" disables it`)
	fs.DurationVar(&c.Timeout, "feed-timeout", c.Timeout, "give up one fetch of a KEV or EPSS feed after this long (retried twice)")
	c.RegisterAgeFlag(fs)
}

// RegisterAgeFlag binds --max-enrichment-age alone (readers).
func (c *Config) RegisterAgeFlag(fs *pflag.FlagSet) {
	fs.DurationVar(&c.MaxAge, "max-enrichment-age", c.MaxAge, "a KEV or EPSS feed older than this is stale (EPSS by its score date, KEV since last confirmed at its source)")
}

// Validate checks the settings, and that local sources exist, naming the
// flag.
func (c Config) Validate() error {
	var errs []error
	for _, k := range Kinds {
		if _, err := parseSource(c.URL(k)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k.Flag(), err))
		}
	}
	if c.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--max-enrichment-age %s: must be positive", c.MaxAge))
	}
	if c.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--feed-timeout %s: must be positive", c.Timeout))
	}
	if c.Attempts < 1 {
		errs = append(errs, fmt.Errorf("feed fetch attempts %d: want at least 1", c.Attempts))
	}
	return errors.Join(errs...)
}

// URL returns the configured source of a feed.
func (c Config) URL(k Kind) string {
	if k == KEV {
		return c.KEVURL
	}
	return c.EPSSURL
}

// source is a parsed feed source.
type source struct {
	raw  string
	u    *url.URL // http(s); nil for local files
	path string   // local file
}

func (s source) disabled() bool { return s.raw == "" }
func (s source) local() bool    { return s.path != "" }

// String is the source for messages and metadata: credentials and the
// query (which may carry a token) redacted.
func (s source) String() string {
	switch {
	case s.u != nil:
		return redactURL(s.u)
	case s.path != "":
		return s.path
	}
	return ""
}

// parseSource accepts "", http(s):// and file:// URLs and plain paths;
// a local file must exist.
func parseSource(raw string) (source, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return source{}, nil
	}
	s := source{raw: raw}
	if !strings.Contains(raw, "://") {
		s.path = filepath.Clean(raw)
	} else {
		u, err := url.Parse(raw)
		if err != nil {
			return source{}, fmt.Errorf("%q is not a URL or path", redactRaw(raw))
		}
		switch u.Scheme {
		case "http", "https":
			if u.Host == "" {
				return source{}, fmt.Errorf("%s: no host", redactURL(u))
			}
			s.u = u
		case "file":
			if u.Host != "" && u.Host != "localhost" {
				return source{}, fmt.Errorf("%s: file URLs name a local path (file:///path)", redactURL(u))
			}
			if u.Path == "" {
				return source{}, fmt.Errorf("%s: no path", raw)
			}
			s.path = filepath.Clean(u.Path)
		default:
			return source{}, fmt.Errorf("%s: unsupported scheme %q (want https, http, file or a path)", redactURL(u), u.Scheme)
		}
	}
	if s.path != "" {
		st, err := os.Stat(s.path)
		if err != nil {
			return source{}, err
		}
		if st.IsDir() {
			return source{}, fmt.Errorf("%s: is a directory", s.path)
		}
	}
	return s, nil
}

func redactURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		c.RawQuery = "REDACTED"
	}
	return c.Redacted()
}

// redactRaw hides what could be credentials in an unparsable URL.
func redactRaw(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndexByte(raw[i+3:], '@'); j >= 0 {
			return raw[:i+3] + "REDACTED@" + raw[i+3+j+1:]
		}
	}
	return raw
}
