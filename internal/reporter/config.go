package reporter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/metrics"
	"github.com/fleetscan/fleetscan/internal/notify"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/s3upload"
	"github.com/fleetscan/fleetscan/internal/sbom"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/tickets"
	"github.com/fleetscan/fleetscan/internal/vex"
)

// Config holds the reporter's settings. NATS, topology and logging have
// their own configs; the caller connects and passes the handles in Deps.
type Config struct {
	// Wait waits for missing results up to this long (0: report at once).
	Wait time.Duration
	// PollInterval is how often progress is logged while waiting (results
	// are watched as they are stored), and the delay between polls if the
	// watch fails.
	PollInterval time.Duration
	// MaxAge bounds the age of a cluster's inventory in the fleet view.
	MaxAge time.Duration
	// RunID restricts the report to one dispatcher run.
	RunID string
	// Now evaluates SLAs (and records first-seen dates) as of this time:
	// RFC 3339 or a date. Empty means the wall clock.
	Now string
	// SLA overrides base days: "CRITICAL=3,HIGH=14".
	SLA string
	// SLAConfig is a policy YAML file (base days and overrides).
	SLAConfig string
	// Severities reported and gated (Trivy's names).
	Severities []string
	// IgnoreUnfixed drops findings without a fix (Trivy's meaning).
	IgnoreUnfixed bool
	// AcceptFile is a risk acceptances YAML file.
	AcceptFile string
	// OutDir receives the report files; it is always written.
	OutDir string
	// Formats to write: csv, json, html, md, tickets.
	Formats []string
	// Record updates the first-seen clocks (false: evaluate only).
	Record bool
	// FirstSeenRetention prunes the first-seen records of findings
	// resolved longer ago, and of clusters gone (unobserved) for longer.
	FirstSeenRetention time.Duration
	// S3 uploads the files when S3.URL is set.
	S3 s3upload.Config
	// Metrics is where the report's Prometheus metrics go.
	Metrics metrics.Config
	// Tickets is the issue tracker kept in sync with the tickets.
	Tickets tickets.Config
	// Notify sends each owner a digest.
	Notify notify.Config
	// SBOM lists the SBOM formats written per image (--sbom cyclonedx,spdx).
	SBOM []string
	// VEX lists VEX documents or directories of them (--vex, repeatable):
	// OpenVEX, CycloneDX VEX or CSAF VEX.
	VEX []string
	// VEXRepoDir holds the VEX repositories the updater fetched
	// (--vex-repo); the all-in-one sets it, the reporter reads it.
	VEXRepoDir string
	// VEXRepos, when set, are the only repositories read from VEXRepoDir
	// (the all-in-one's --vex-repo); empty reads every one there.
	VEXRepos []string
	// VEXOut writes the acceptances' VEX decisions as one OpenVEX document.
	VEXOut string
	// MaxEnrichmentAge is the age past which an exploit feed (KEV, EPSS)
	// is stale: the report says so and is incomplete (exit status bit 2).
	MaxEnrichmentAge time.Duration
}

// Secrets are the secret values the configuration reads from files and
// the environment rather than from flags (the trackers' tokens): the
// command adds them to its output redactor right after parsing.
func (c Config) Secrets() []string { return c.Tickets.Secrets() }

// SecretFlags are the reporter's flags whose values are secrets (webhook
// URLs carry tokens): output redacts them.
var SecretFlags = []string{"notify-webhook", "notify-slack-webhook"}

// Defaults returns the documented defaults.
func Defaults() Config {
	formats := make([]string, len(report.Formats))
	for i, f := range report.Formats {
		formats[i] = string(f)
	}
	return Config{
		PollInterval: 2 * time.Second,
		MaxAge:       36 * time.Hour,
		Severities:   append([]string{}, sla.Severities...),
		OutDir:       "./fleetscan-report",
		Formats:      formats,
		Record:       true,

		FirstSeenRetention: sla.DefaultRetention,
		S3:                 s3upload.Defaults(),
		Metrics:            metrics.Defaults(),
		Tickets:            tickets.Defaults(),

		MaxEnrichmentAge: feeds.DefaultMaxAge,
	}
}

// RegisterFlags binds the reporter's flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.Wait, "wait", c.Wait, "wait up to this long for missing scan results, printing progress (0: report what is there)")
	fs.DurationVar(&c.MaxAge, "max-age", c.MaxAge, "fleet view: use each cluster's latest inventory if collected within this age")
	fs.StringVar(&c.RunID, "run", c.RunID, "report on one dispatcher run instead of the fleet view")
	fs.StringVar(&c.Now, "now", c.Now, "evaluate SLAs and record first-seen dates as of this time (RFC 3339 or YYYY-MM-DD; default: now)")
	fs.StringVar(&c.SLA, "sla", c.SLA, "days to remediate per severity, e.g. CRITICAL=3,HIGH=14 (default CRITICAL=7,HIGH=30,MEDIUM=90,LOW=180,UNKNOWN=365)")
	fs.StringVar(&c.SLAConfig, "sla-config", c.SLAConfig, "SLA policy YAML: base days and overrides by cluster/namespace glob (--sla wins over its base days)")
	fs.StringSliceVar(&c.Severities, "severity", c.Severities, "severities to report and gate, as Trivy names them")
	fs.BoolVar(&c.IgnoreUnfixed, "ignore-unfixed", c.IgnoreUnfixed, "leave out vulnerabilities without a fixed version (as Trivy does)")
	fs.StringVar(&c.AcceptFile, "accept-file", c.AcceptFile, "risk acceptances YAML (vulnerability, repository glob, optional package, expires, reason)")
	fs.StringVar(&c.OutDir, "out-dir", c.OutDir, "directory the report files are written to (always)")
	fs.StringSliceVar(&c.Formats, "format", c.Formats, "report formats: csv, json, html, md, tickets")
	fs.BoolVar(&c.Record, "record", c.Record, "record first-seen dates and resolutions in JetStream (--record=false evaluates only)")
	c.RegisterRetentionFlag(fs)
	c.S3.RegisterFlags(fs)
	c.RegisterSBOMFlags(fs)
	c.RegisterVEXFlags(fs)
	fs.StringVar(&c.VEXRepoDir, "vex-repo-dir", c.VEXRepoDir, "directory of VEX repositories fetched by `worker db-update --vex-repo` (their statements are applied; empty: none)")
	fs.DurationVar(&c.MaxEnrichmentAge, "max-enrichment-age", c.MaxEnrichmentAge, "a KEV or EPSS feed older than this is reported stale and makes the report incomplete (exit status bit 2; EPSS by its score date, KEV since last confirmed at its source)")
	c.RegisterReachFlags(fs)
}

// RegisterVEXFlags binds --vex and --vex-out (the all-in-one registers
// them too).
func (c *Config) RegisterVEXFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&c.VEX, "vex", c.VEX, "VEX document (OpenVEX, CycloneDX VEX or CSAF VEX) or directory of *.json documents; repeatable. not_affected and fixed statements take matching findings off the gate; affected and under_investigation annotate them")
	fs.StringVar(&c.VEXOut, "vex-out", c.VEXOut, "also write the acceptances' VEX decisions (vex_status) as one OpenVEX document to this file")
}

// RegisterReachFlags binds the flags that deliver the report beyond its
// files: metrics, ticket sync and owner digests (the all-in-one registers them too).
func (c *Config) RegisterReachFlags(fs *pflag.FlagSet) {
	c.Metrics.RegisterFlags(fs)
	c.Tickets.RegisterFlags(fs)
	c.Notify.RegisterFlags(fs)
}

// RegisterRetentionFlag binds --first-seen-retention (the all-in-one
// registers it too).
func (c *Config) RegisterRetentionFlag(fs *pflag.FlagSet) {
	fs.DurationVar(&c.FirstSeenRetention, "first-seen-retention", c.FirstSeenRetention, "prune the first-seen records of findings resolved longer ago than this, and of clusters not observed for longer (9600h: 400 days; a pruned finding that comes back is new again)")
}

// RegisterSBOMFlags binds --sbom (the all-in-one registers it too).
func (c *Config) RegisterSBOMFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&c.SBOM, "sbom", c.SBOM, "also write one SBOM per image digest to <out-dir>/sbom (uploaded with the report), built from the cached layer analyses: cyclonedx (CycloneDX 1.6 JSON) and/or spdx (SPDX 2.3 JSON)")
}

// Validate checks the flags and that the named files exist. The YAML files
// are parsed by Run.
func (c Config) Validate() error {
	var errs []error
	if c.Wait < 0 {
		errs = append(errs, fmt.Errorf("--wait %s: must not be negative", c.Wait))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, errors.New("poll interval must be positive"))
	}
	if c.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--max-age %s: must be positive", c.MaxAge))
	}
	if c.MaxEnrichmentAge <= 0 {
		errs = append(errs, fmt.Errorf("--max-enrichment-age %s: must be positive", c.MaxEnrichmentAge))
	}
	if strings.TrimSpace(c.RunID) != c.RunID {
		errs = append(errs, fmt.Errorf("--run %q: surrounding spaces", c.RunID))
	}
	if c.Now != "" {
		if _, err := sla.ParseTime(c.Now); err != nil {
			errs = append(errs, fmt.Errorf("--now %w", err))
		}
	}
	if c.SLA != "" {
		if _, err := sla.ParseDays(c.SLA); err != nil {
			errs = append(errs, fmt.Errorf("--sla %w", err))
		}
	}
	if _, err := sla.ParseSeverities(c.Severities); err != nil {
		errs = append(errs, fmt.Errorf("--severity: %w", err))
	}
	if _, err := report.ParseFormats(c.Formats); err != nil {
		errs = append(errs, fmt.Errorf("--format: %w", err))
	}
	if strings.TrimSpace(c.OutDir) == "" {
		errs = append(errs, errors.New("--out-dir is required"))
	}
	for flag, path := range map[string]string{"--sla-config": c.SLAConfig, "--accept-file": c.AcceptFile} {
		if path == "" {
			continue
		}
		if st, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", flag, path, err))
		} else if st.IsDir() {
			errs = append(errs, fmt.Errorf("%s %s: is a directory", flag, path))
		}
	}
	if err := c.S3.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Metrics.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Tickets.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Notify.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := sbom.ParseFormats(c.SBOM); err != nil {
		errs = append(errs, fmt.Errorf("--sbom: %w", err))
	}
	for _, p := range c.VEX {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("--vex %s: %w", p, err))
		}
	}
	if c.VEXOut != "" && c.AcceptFile == "" {
		errs = append(errs, fmt.Errorf("--vex-out %s: needs --accept-file (the decisions it exports)", c.VEXOut))
	} else if c.VEXOut != "" {
		if st, err := os.Stat(filepath.Dir(c.VEXOut)); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("--vex-out %s: directory %s does not exist", c.VEXOut, filepath.Dir(c.VEXOut)))
		}
	}
	return errors.Join(errs...)
}

// asOf returns the evaluation time: --now or the wall clock.
func (c Config) asOf(wall time.Time) time.Time {
	if c.Now == "" {
		return wall.UTC()
	}
	t, _ := sla.ParseTime(c.Now)
	return t
}

// policy loads the SLA policy: defaults, then --sla-config, then --sla.
func (c Config) policy() (sla.Policy, error) {
	p := sla.DefaultPolicy()
	if c.SLAConfig != "" {
		var err error
		if p, err = sla.LoadPolicy(c.SLAConfig); err != nil {
			return sla.Policy{}, err
		}
	}
	if c.SLA != "" {
		d, err := sla.ParseDays(c.SLA)
		if err != nil {
			return sla.Policy{}, fmt.Errorf("--sla %w", err)
		}
		p = p.WithDays(d)
	}
	return p, nil
}

// loadVEX reads --vex and the fetched VEX repositories into one set (nil
// when there is none).
func (c Config) loadVEX(log *zap.Logger) (*vex.Set, error) {
	set := vex.NewSet()
	if len(c.VEX) > 0 {
		s, err := vex.LoadPaths(c.VEX)
		if err != nil {
			return nil, fmt.Errorf("--vex: %w", err)
		}
		set.Merge(s)
	}
	if c.VEXRepoDir != "" {
		s, missing, err := vex.LoadRepositories(c.VEXRepoDir, c.VEXRepos...)
		if err != nil {
			return nil, fmt.Errorf("VEX repositories in %s: %w", c.VEXRepoDir, err)
		}
		for _, u := range missing {
			log.Warn("VEX repository never fetched; its statements are not applied", zap.String("url", u))
		}
		set.Merge(s)
	}
	if set.Len() == 0 {
		return nil, nil
	}
	log.Info("VEX statements loaded", zap.Int("statements", set.Len()), zap.Int("documents", len(set.Sources)))
	return set, nil
}
