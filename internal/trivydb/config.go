// Package trivydb owns the lifecycle of the shared Trivy vulnerability DB:
// the reader side workers use (refuse a missing or stale DB, open it
// read-only with a timeout, report its version, notice and reopen a newer
// one between scans) and the updater (download with Trivy's own client from
// configurable OCI repositories into a staging directory, validate, then
// switch generations atomically so readers never see a half-written DB).
//
// On-disk layout under --cache-dir:
//
//	db            -> db-20250301T060000.000000000Z   (symlink, flipped by rename(2))
//	db-20250301T060000.000000000Z/{trivy.db,metadata.json}
//	db-20250228T060000.000000000Z/...                (previous generation, kept)
//	java-db       -> java-db-...                     (same scheme, when asked)
//
// Readers only ever open <cache-dir>/db, exactly what Trivy's --cache-dir
// expects, so a Trivy CLI pointed at the same directory works too. The
// symlink target is relative, so the directory can be mounted anywhere.
package trivydb

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/pflag"
)

// Default repositories, as Trivy's (mirror first).
var (
	DefaultDBRepositories     = []string{"mirror.gcr.io/aquasec/trivy-db:2", "ghcr.io/aquasecurity/trivy-db:2"}
	DefaultJavaDBRepositories = []string{"mirror.gcr.io/aquasec/trivy-java-db:1", "ghcr.io/aquasecurity/trivy-java-db:1"}
)

// Config configures both the reader and the updater.
type Config struct {
	// CacheDir holds db/ (and java-db/): --cache-dir.
	CacheDir string
	// MaxDBAge is the oldest DB (by its UpdatedAt) a reader accepts and the
	// age at which the updater downloads even before NextUpdate:
	// --max-db-age.
	MaxDBAge time.Duration
	// OpenTimeout bounds waiting for the DB file lock when opening:
	// --db-open-timeout.
	OpenTimeout time.Duration

	// DBRepositories are tried in order: --db-repository (repeatable).
	DBRepositories []string
	// JavaDBRepositories are tried in order: --java-db-repository.
	JavaDBRepositories []string
	// DownloadJavaDB also updates the Java DB (needed to scan jars):
	// --download-java-db.
	DownloadJavaDB bool
	// KeepGenerations is how many DB generations stay on disk, the current
	// one included (>= 2, so a reader that opened the previous one keeps
	// valid files): --db-keep-generations.
	KeepGenerations int

	// Force makes the updater ask the repositories for a newer DB even
	// while the one in use is fresh (before its NextUpdate, downloaded
	// within the hour): `fleetscan query --db-update`, when an advisory
	// published an hour ago matters. A DB the repository still serves is
	// not switched.
	Force bool

	// Registry holds registry access options; its flags are registered
	// separately (Registry.RegisterFlags) because a worker shares them with
	// its image scanner.
	Registry RegistryOptions
}

// RegistryOptions says how to reach OCI registries.
type RegistryOptions struct {
	// InsecureRegistries are hosts ("host:port") reached over plain HTTP or
	// without TLS verification: --insecure-registry (repeatable).
	InsecureRegistries []string
	// DockerConfig is a Docker config JSON file (the usual mounted
	// dockerconfigjson secret) with registry credentials:
	// --registry-config.
	DockerConfig string
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		CacheDir:           "/var/lib/fleetscan/cache",
		MaxDBAge:           72 * time.Hour,
		OpenTimeout:        10 * time.Second,
		DBRepositories:     append([]string(nil), DefaultDBRepositories...),
		JavaDBRepositories: append([]string(nil), DefaultJavaDBRepositories...),
		KeepGenerations:    2,
	}
}

// RegisterFlags binds the reader flags: --cache-dir, --max-db-age,
// --db-open-timeout.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.CacheDir, "cache-dir", c.CacheDir, "directory holding the Trivy DB (db/) and Java DB (java-db/)")
	fs.DurationVar(&c.MaxDBAge, "max-db-age", c.MaxDBAge, "refuse (reader) or refresh (updater) a vulnerability DB older than this")
	fs.DurationVar(&c.OpenTimeout, "db-open-timeout", c.OpenTimeout, "how long to wait for the DB file lock when opening the DB")
}

// RegisterUpdateFlags binds the updater flags: --db-repository,
// --java-db-repository, --download-java-db, --db-keep-generations.
func (c *Config) RegisterUpdateFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&c.DBRepositories, "db-repository", c.DBRepositories, "OCI repository of the Trivy DB, tried in order (repeatable)")
	fs.StringArrayVar(&c.JavaDBRepositories, "java-db-repository", c.JavaDBRepositories, "OCI repository of the Trivy Java DB, tried in order (repeatable)")
	fs.BoolVar(&c.DownloadJavaDB, "download-java-db", c.DownloadJavaDB, "also download the Java DB (needed to scan jar files)")
	fs.IntVar(&c.KeepGenerations, "db-keep-generations", c.KeepGenerations, "DB generations kept on disk, the current one included (min 2)")
}

// RegisterFlags binds --insecure-registry and --registry-config.
func (r *RegistryOptions) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringArrayVar(&r.InsecureRegistries, "insecure-registry", r.InsecureRegistries, "registry host[:port] reached over plain HTTP / without TLS verification (repeatable)")
	fs.StringVar(&r.DockerConfig, "registry-config", r.DockerConfig, "Docker config JSON file with registry credentials (a mounted dockerconfigjson secret)")
}

// Insecure reports whether host is listed in InsecureRegistries.
func (r RegistryOptions) Insecure(host string) bool {
	for _, h := range r.InsecureRegistries {
		if h == host {
			return true
		}
	}
	return false
}

// Validate checks the reader settings.
func (c Config) Validate() error {
	var errs []error
	if c.CacheDir == "" {
		errs = append(errs, errors.New("--cache-dir: required"))
	}
	if c.MaxDBAge <= 0 {
		errs = append(errs, fmt.Errorf("--max-db-age: must be positive, got %s", c.MaxDBAge))
	}
	if c.OpenTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--db-open-timeout: must be positive, got %s", c.OpenTimeout))
	}
	return errors.Join(errs...)
}

// ValidateUpdate checks the reader and updater settings.
func (c Config) ValidateUpdate() error {
	errs := []error{c.Validate()}
	if len(c.DBRepositories) == 0 {
		errs = append(errs, errors.New("--db-repository: at least one repository is required"))
	}
	for _, r := range c.DBRepositories {
		if _, err := name.ParseReference(r); err != nil {
			errs = append(errs, fmt.Errorf("--db-repository %q: %w", r, err))
		}
	}
	if c.DownloadJavaDB && len(c.JavaDBRepositories) == 0 {
		errs = append(errs, errors.New("--java-db-repository: at least one repository is required with --download-java-db"))
	}
	for _, r := range c.JavaDBRepositories {
		if _, err := name.ParseReference(r); err != nil {
			errs = append(errs, fmt.Errorf("--java-db-repository %q: %w", r, err))
		}
	}
	if c.KeepGenerations < 2 {
		errs = append(errs, fmt.Errorf("--db-keep-generations: must be at least 2, got %d", c.KeepGenerations))
	}
	return errors.Join(errs...)
}

// DBDir is where readers open the Trivy DB: <cache-dir>/db.
func (c Config) DBDir() string { return filepath.Join(c.CacheDir, "db") }

// JavaDBDir is where Trivy opens the Java DB: <cache-dir>/java-db.
func (c Config) JavaDBDir() string { return filepath.Join(c.CacheDir, "java-db") }
