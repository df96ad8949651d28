package metrics

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/redact"
)

// FileName is the metrics file's name in the output directory (and in S3).
const FileName = "metrics.prom"

// DefaultJob is the Pushgateway job the reporter pushes under.
const DefaultJob = "fleetscan_reporter"

// Config is where the report's metrics go.
type Config struct {
	// File overrides <out-dir>/metrics.prom.
	File string
	// PushgatewayURL pushes the metrics there when set.
	PushgatewayURL string
	// Job is the Pushgateway job name.
	Job string
	// PerCVE adds series per vulnerability ID (high cardinality; opt-in).
	PerCVE bool
	// Timeout bounds the push.
	Timeout time.Duration
}

// Defaults returns the documented defaults.
func Defaults() Config { return Config{Job: DefaultJob, Timeout: 30 * time.Second} }

// RegisterFlags binds the metrics flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.File, "metrics-file", c.File, "write the report's Prometheus metrics (text exposition) here instead of <out-dir>/"+FileName+" (uploaded with the report)")
	fs.StringVar(&c.PushgatewayURL, "pushgateway-url", c.PushgatewayURL, "also push the report's metrics to this Prometheus Pushgateway (http(s)://[user:password@]host:port)")
	fs.StringVar(&c.Job, "pushgateway-job", c.Job, "Pushgateway job name the metrics are grouped under")
	fs.BoolVar(&c.PerCVE, "metrics-per-cve", c.PerCVE, "also export fleetscan_vulnerability_findings per vulnerability ID (one series per CVE, severity and status: high cardinality)")
	fs.DurationVar(&c.Timeout, "pushgateway-timeout", c.Timeout, "give up a Pushgateway push after this long")
}

// Validate checks the flags and that the metrics file's directory exists.
func (c Config) Validate() error {
	var errs []error
	if c.File != "" {
		dir := filepath.Dir(c.File)
		if st, err := os.Stat(dir); err != nil {
			errs = append(errs, fmt.Errorf("--metrics-file %s: %w", c.File, err))
		} else if !st.IsDir() {
			errs = append(errs, fmt.Errorf("--metrics-file %s: %s is not a directory", c.File, dir))
		}
		if st, err := os.Stat(c.File); err == nil && st.IsDir() {
			errs = append(errs, fmt.Errorf("--metrics-file %s: is a directory", c.File))
		}
	}
	if c.PushgatewayURL != "" {
		if err := CheckHTTPURL(c.PushgatewayURL); err != nil {
			errs = append(errs, fmt.Errorf("--pushgateway-url %w", err))
		}
		if strings.TrimSpace(c.Job) == "" || strings.Contains(c.Job, "/") {
			errs = append(errs, fmt.Errorf("--pushgateway-job %q: must be a non-empty name without '/'", c.Job))
		}
		if c.Timeout <= 0 {
			errs = append(errs, fmt.Errorf("--pushgateway-timeout %s: must be positive", c.Timeout))
		}
	}
	return errors.Join(errs...)
}

// Path is the metrics file for an output directory.
func (c Config) Path(outDir string) string {
	if c.File != "" {
		return c.File
	}
	return filepath.Join(outDir, FileName)
}

// CheckHTTPURL checks that raw is an absolute http(s) URL with a host. The
// error quotes it redacted.
func CheckHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: not a URL", redact.URL(raw))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%s: scheme must be http or https", redact.URL(raw))
	}
	if u.Host == "" {
		return fmt.Errorf("%s: no host", redact.URL(raw))
	}
	return nil
}
