package query

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/trivydb"
)

// Output formats of --format.
const (
	FormatTable = "table"
	FormatJSON  = "json"
)

// Config is `fleetscan query`'s configuration.
type Config struct {
	// StateDir is the all-in-one's state (its embedded NATS store), used
	// when NATS.URLs is empty.
	StateDir string
	// NATS reaches an external NATS when NATS.URLs is set.
	NATS natsconn.Config
	// DB is the vulnerability DB --cve detects with (--cache-dir, ...),
	// and where --db-update downloads from.
	DB trivydb.Config

	// Package, PURL and CVE are the question; exactly one is asked.
	Package string
	PURL    string
	CVE     string
	// Version constrains the version of --package (or of a --purl without
	// one): "<2.17.1", ">=1.2, <1.3", ...
	Version string
	// DBUpdate fetches the newest DB before a --cve query.
	DBUpdate bool
	// Format is table or json.
	Format string
	// MaxAge leaves out clusters whose latest inventory is older (as the
	// reporter's fleet view does).
	MaxAge time.Duration
	// Parallel bounds detection goroutines (default: CPUs).
	Parallel int
}

// Defaults returns the defaults; stateDir and cacheDir are the
// all-in-one's.
func Defaults(stateDir, cacheDir string) Config {
	c := Config{
		StateDir: stateDir,
		NATS:     natsconn.Defaults("fleetscan-query"),
		DB:       trivydb.Defaults(),
		Format:   FormatTable,
		MaxAge:   36 * time.Hour,
	}
	c.NATS.URLs = "" // the state dir unless --nats-url is given
	c.DB.CacheDir = cacheDir
	return c
}

// RegisterFlags binds every flag.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Package, "package", c.Package, "find the running images holding this package (name, source package name, or Maven artifact id)")
	fs.StringVar(&c.Version, "version", c.Version, "with --package or --purl: only versions matching this constraint, e.g. \"<2.17.1\" or \">=1.2, <1.3\" (compared as the package's ecosystem orders versions)")
	fs.StringVar(&c.PURL, "purl", c.PURL, "find the running images holding this package URL (pkg:type/namespace/name[@version]; without a namespace any namespace matches)")
	fs.StringVar(&c.CVE, "cve", c.CVE, "find the running images affected by this vulnerability (CVE, GHSA, ... id), detected now with the current DB over the stored package analyses")
	fs.BoolVar(&c.DBUpdate, "db-update", c.DBUpdate, "with --cve: download the newest vulnerability DB first")
	fs.StringVar(&c.Format, "format", c.Format, "output: table or json (a JSON array, one object per matching digest and package)")
	fs.DurationVar(&c.MaxAge, "max-age", c.MaxAge, "leave out clusters whose latest inventory is older than this")
	fs.StringVar(&c.StateDir, "state-dir", c.StateDir, "the all-in-one's state directory (fleetscan scan --state-dir), used unless --nats-url is given")
	c.NATS.RegisterFlags(fs)
	c.DB.RegisterFlags(fs)
	fs.StringArrayVar(&c.DB.DBRepositories, "db-repository", c.DB.DBRepositories, "with --db-update: OCI repository of the Trivy DB, tried in order (repeatable)")
	c.DB.Registry.RegisterFlags(fs)
}

// Validate checks the flags; errors name the flag at fault.
func (c Config) Validate() error {
	var errs []error
	asked := 0
	for _, v := range []string{c.Package, c.PURL, c.CVE} {
		if strings.TrimSpace(v) != "" {
			asked++
		}
	}
	switch {
	case asked == 0:
		errs = append(errs, errors.New("--package, --purl or --cve: one is required"))
	case asked > 1:
		errs = append(errs, errors.New("--package, --purl and --cve: ask one at a time"))
	}
	if strings.ContainsAny(strings.TrimSpace(c.Package), " \t,") {
		errs = append(errs, fmt.Errorf("--package %q: one package name", c.Package))
	}
	if c.PURL != "" {
		q, err := pkgindex.ParsePURL(c.PURL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("--purl %q: %w", c.PURL, err))
		case q.HasVersion() && c.Version != "":
			errs = append(errs, fmt.Errorf("--version: --purl %q already names a version", c.PURL))
		}
	}
	if cve := strings.TrimSpace(c.CVE); c.CVE != "" && (cve == "" || strings.ContainsAny(cve, " \t,")) {
		errs = append(errs, fmt.Errorf("--cve %q: one vulnerability id, e.g. CVE-2024-3094", c.CVE))
	}
	if c.Version != "" {
		if c.Package == "" && c.PURL == "" {
			errs = append(errs, errors.New("--version needs --package or --purl"))
		} else if _, err := pkgindex.ParseConstraint(c.Version); err != nil {
			errs = append(errs, fmt.Errorf("--version: %w", err))
		}
	}
	if c.DBUpdate && c.CVE == "" {
		errs = append(errs, errors.New("--db-update only applies to --cve"))
	}
	switch c.Format {
	case FormatTable, FormatJSON:
	default:
		errs = append(errs, fmt.Errorf("--format %q: want table or json", c.Format))
	}
	if c.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--max-age %s: must be positive", c.MaxAge))
	}
	if c.NATS.URLs != "" {
		errs = append(errs, c.NATS.Validate())
	} else if strings.TrimSpace(c.StateDir) == "" {
		errs = append(errs, errors.New("--state-dir or --nats-url: one is required"))
	}
	if c.CVE != "" {
		if c.DBUpdate {
			errs = append(errs, c.DB.ValidateUpdate())
		} else {
			errs = append(errs, c.DB.Validate())
		}
	}
	return errors.Join(errs...)
}
