package dispatcher

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/inventory"
)

// CycleLayout formats the default cycle: the UTC date.
const CycleLayout = "2006-01-02"

// Config is a dispatcher run's configuration.
type Config struct {
	Sources inventory.Config
	// Cycle groups runs whose jobs deduplicate against each other (default
	// the UTC date).
	Cycle string
	// RunID identifies this run (default generated, sortable by time).
	RunID string
	// DryRun publishes and stores nothing and prints the plan instead.
	DryRun bool
	// ResolveTags resolves spec tags against their registries for
	// containers whose status has no manifest digest.
	ResolveTags bool
	// RegistryConfig is a Docker config JSON with registry credentials.
	RegistryConfig string
	// InsecureRegistries are hosts reached over plain HTTP.
	InsecureRegistries []string
	// RegistryTimeout bounds each tag lookup.
	RegistryTimeout time.Duration
	// ClusterConcurrency bounds clusters enumerated at once.
	ClusterConcurrency int
	// Rescan publishes a job for every key, asking workers to scan each in
	// full, instead of reusing stored results.
	Rescan bool
}

// Defaults returns the default configuration.
func Defaults() Config {
	return Config{
		Sources:            inventory.Defaults(),
		ResolveTags:        true,
		RegistryTimeout:    30 * time.Second,
		ClusterConcurrency: 2,
	}
}

// RegisterFlags binds the dispatcher's flags (sources included).
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	c.Sources.RegisterFlags(fs)
	fs.StringVar(&c.Cycle, "cycle", c.Cycle, "scan cycle: dispatchers of one cycle publish each image once (default the UTC date, 2006-01-02)")
	fs.StringVar(&c.RunID, "run-id", c.RunID, "run id (default generated, sortable: 20261127T060000Z-<6 hex>)")
	fs.BoolVar(&c.DryRun, "dry-run", c.DryRun, "publish and store nothing: print the plan as JSON on stdout and a summary per cluster on stderr")
	fs.BoolVar(&c.ResolveTags, "resolve-tags", c.ResolveTags, "resolve the spec tag against its registry (HEAD) when a container status has no manifest digest")
	fs.StringVar(&c.RegistryConfig, "registry-config", c.RegistryConfig, "Docker config JSON with registry credentials for --resolve-tags (default $DOCKER_CONFIG or ~/.docker/config.json)")
	fs.StringArrayVar(&c.InsecureRegistries, "insecure-registry", c.InsecureRegistries, "registry host[:port] reached over plain HTTP (repeatable)")
	fs.DurationVar(&c.RegistryTimeout, "registry-timeout", c.RegistryTimeout, "timeout of one registry lookup")
	fs.IntVar(&c.ClusterConcurrency, "cluster-concurrency", c.ClusterConcurrency, "clusters enumerated at the same time (each streams its inventory to the store a chunk at a time: memory grows with this, not with cluster size)")
	fs.BoolVar(&c.Rescan, "rescan", c.Rescan, "scan every image again in full, from its registry: do not skip images whose stored result has the workers' scanner and DB")
}

// Validate checks the configuration.
func (c Config) Validate() error {
	errs := []error{c.Sources.Validate()}
	if c.Cycle != "" && strings.ContainsFunc(c.Cycle, isSpaceOrControl) {
		errs = append(errs, fmt.Errorf("--cycle %q: no spaces or control characters", c.Cycle))
	}
	if c.RunID != "" && strings.ContainsFunc(c.RunID, func(r rune) bool { return isSpaceOrControl(r) || r == '/' }) {
		errs = append(errs, fmt.Errorf("--run-id %q: no spaces, slashes or control characters", c.RunID))
	}
	if c.ClusterConcurrency < 1 {
		errs = append(errs, fmt.Errorf("--cluster-concurrency %d: want at least 1", c.ClusterConcurrency))
	}
	if c.RegistryTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--registry-timeout %s: want a positive duration", c.RegistryTimeout))
	}
	if (c.RegistryConfig != "" || len(c.InsecureRegistries) > 0) && !c.ResolveTags {
		errs = append(errs, errors.New("--registry-config and --insecure-registry only apply with --resolve-tags"))
	}
	return errors.Join(errs...)
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// Complete fills the generated defaults: the cycle and the run id.
func (c *Config) Complete(now time.Time) {
	if c.Cycle == "" {
		c.Cycle = now.UTC().Format(CycleLayout)
	}
	if c.RunID == "" {
		c.RunID = NewRunID(now)
	}
}

// NewRunID returns a run id that sorts by start time:
// 20261127T060000Z-1a2b3c.
func NewRunID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Resolver returns the tag resolver the configuration asks for, nil when
// --resolve-tags is off.
func (c Config) Resolver() (inventory.TagResolver, error) {
	if !c.ResolveTags {
		return nil, nil
	}
	r, err := inventory.NewRegistryResolver(inventory.RegistryOptions{
		ConfigFile: c.RegistryConfig, Insecure: c.InsecureRegistries, Timeout: c.RegistryTimeout,
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}
