package worker

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/trivydb"
)

// Config configures a worker. DefaultConfig gives production values.
type Config struct {
	// DB locates the shared vulnerability DB: --cache-dir (holding db/ and
	// java-db/, only read), --max-db-age (refused at start when older;
	// the worker turns unready when its DB ages past it), --db-open-timeout;
	// and the registry access shared with the scanner: --registry-config
	// (Docker config JSON with credentials) and --insecure-registry.
	DB trivydb.Config
	// Concurrency is the number of scans in flight in this process.
	Concurrency int
	// ScanTimeout bounds one image's scan (all its mirrors included).
	ScanTimeout time.Duration
	// GracePeriod is how long in-flight scans may finish after shutdown
	// starts; what cannot finish is handed back to the queue. It must stay
	// below the pod's terminationGracePeriodSeconds.
	GracePeriod time.Duration
	// RetryDelay and RetryMaxDelay bound the backoff before a retryable
	// failure (rate limited, timeout, registry error) is tried again.
	RetryDelay    time.Duration
	RetryMaxDelay time.Duration
	// UnreachableBudget bounds how long a job whose registry cannot be
	// reached (refused connection, unknown host) is retried.
	UnreachableBudget time.Duration
	// DBCheckInterval is how often an idle worker looks for a newer DB
	// (it also looks before every job).
	DBCheckInterval time.Duration
	// ScratchDir is where the private layer-analysis cache is created.
	ScratchDir string
	// Listen is the address of /metrics, /healthz and /readyz; empty
	// disables the HTTP server.
	Listen string
	// WorkerName is stamped on results and log lines.
	WorkerName string
	// LayerCache is where layer analyses are kept: LayerCacheJetStream
	// (shared by every worker of the fleet, the default) or
	// LayerCacheLocal (private to the process, under ScratchDir).
	LayerCache string
	// LayerLeaseTTL is how long a worker may hold a layer it analyses
	// before another takes it over (shared cache only).
	LayerLeaseTTL time.Duration
	// Rescan scans every job in full, ignoring stored results and
	// recorded analyses.
	Rescan bool
	// VEXOCI discovers the OpenVEX attestations attached to each scanned
	// digest in its registry (OCI referrers, then the cosign ".att" tag)
	// and stores them with the result, where the reporter applies them.
	VEXOCI bool
}

// Layer cache kinds (--layer-cache).
const (
	LayerCacheJetStream = "jetstream"
	LayerCacheLocal     = "local"
)

// DefaultConfig returns production defaults.
func DefaultConfig() Config {
	host, _ := os.Hostname()
	return Config{
		DB:              trivydb.Defaults(),
		Concurrency:     DefaultConcurrency(),
		ScanTimeout:     10 * time.Minute,
		GracePeriod:     30 * time.Second,
		RetryDelay:      10 * time.Second,
		RetryMaxDelay:   5 * time.Minute,
		DBCheckInterval: time.Minute,

		UnreachableBudget: queue.DefaultUnreachableBudget,
		ScratchDir:        os.TempDir(),
		Listen:            ":8080",
		WorkerName:        host,
		LayerCache:        LayerCacheJetStream,
		LayerLeaseTTL:     layercache.DefaultLeaseTTL,
	}
}

// RegisterFlags binds the configuration to flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	c.DB.RegisterFlags(fs)
	c.DB.Registry.RegisterFlags(fs)
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "scans in flight in this process (default: min(CPUs, memory in GiB))")
	fs.DurationVar(&c.ScanTimeout, "scan-timeout", c.ScanTimeout, "give up on one image's scan after this long")
	fs.DurationVar(&c.GracePeriod, "grace-period", c.GracePeriod, "on shutdown, let in-flight scans finish this long before handing them back (keep below terminationGracePeriodSeconds)")
	fs.DurationVar(&c.RetryDelay, "retry-delay", c.RetryDelay, "delay before the first retry of a retryable failure (doubles per attempt)")
	fs.DurationVar(&c.RetryMaxDelay, "retry-max-delay", c.RetryMaxDelay, "longest delay between retries")
	c.RegisterRetryFlags(fs)
	fs.DurationVar(&c.DBCheckInterval, "db-check-interval", c.DBCheckInterval, "how often an idle worker looks for a newer vulnerability DB")
	fs.StringVar(&c.ScratchDir, "scratch-dir", c.ScratchDir, "writable directory for the private layer-analysis cache and temporary files")
	fs.StringVar(&c.Listen, "listen", c.Listen, "address for /metrics, /healthz and /readyz (empty disables)")
	fs.StringVar(&c.WorkerName, "worker-name", c.WorkerName, "name stamped on results and logs (default: host name)")
	c.RegisterIncrementalFlags(fs)
	c.RegisterVEXFlags(fs)
}

// RegisterVEXFlags binds --vex-oci, which the all-in-one shares.
func (c *Config) RegisterVEXFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&c.VEXOCI, "vex-oci", c.VEXOCI, "discover the OpenVEX attestations attached to each scanned image in its registry (OCI referrers, then the cosign sha256-<digest>.att tag), once per digest, and store them with the result; the reporter applies them to that digest's findings. A lookup that fails is logged and the result records none (the image is scanned again next run)")
}

// RegisterRetryFlags binds the retry flags the all-in-one shares.
func (c *Config) RegisterRetryFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&c.UnreachableBudget, "unreachable-budget", c.UnreachableBudget, "retry an image whose registry cannot be reached (connection refused, unknown host) for at most this long, then record it as failed (class unreachable)")
}

// RegisterIncrementalFlags binds the flags of incremental scanning: the
// layer cache, its leases and --rescan.
func (c *Config) RegisterIncrementalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.LayerCache, "layer-cache", c.LayerCache, "where layer analyses are kept: jetstream (shared by every worker; layers are downloaded once fleet-wide, DB updates rescan without the registry) or local (private to this process)")
	fs.DurationVar(&c.LayerLeaseTTL, "layer-lease-ttl", c.LayerLeaseTTL, "lease on a layer being analysed (shared layer cache): renewed every third of it while the analysis runs; a crashed worker's layer is taken over after it")
	fs.BoolVar(&c.Rescan, "rescan", c.Rescan, "scan every image again: do not reuse results from the same DB and scanner, and read every image from its registry (layer analyses still come from the layer cache)")
}

// Validate checks the configuration; errors name the flag at fault.
func (c Config) Validate() error {
	errs := []error{c.DB.Validate()}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("--concurrency %d: want at least 1", c.Concurrency))
	}
	if c.ScanTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--scan-timeout %s: must be positive", c.ScanTimeout))
	}
	if c.GracePeriod <= 0 {
		errs = append(errs, fmt.Errorf("--grace-period %s: must be positive", c.GracePeriod))
	}
	if c.RetryDelay <= 0 {
		errs = append(errs, fmt.Errorf("--retry-delay %s: must be positive", c.RetryDelay))
	}
	if c.RetryMaxDelay < c.RetryDelay {
		errs = append(errs, fmt.Errorf("--retry-max-delay %s: must be at least --retry-delay %s", c.RetryMaxDelay, c.RetryDelay))
	}
	if c.UnreachableBudget <= 0 {
		errs = append(errs, fmt.Errorf("--unreachable-budget %s: must be positive", c.UnreachableBudget))
	}
	if c.DBCheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("--db-check-interval %s: must be positive", c.DBCheckInterval))
	}
	if c.DB.Registry.DockerConfig != "" {
		if _, err := os.Stat(c.DB.Registry.DockerConfig); err != nil {
			errs = append(errs, fmt.Errorf("--registry-config: %w", err))
		}
	}
	for _, h := range c.DB.Registry.InsecureRegistries {
		if h == "" || strings.ContainsAny(h, "/ ") {
			errs = append(errs, fmt.Errorf("--insecure-registry %q: want host or host:port", h))
		}
	}
	switch c.LayerCache {
	case LayerCacheJetStream, LayerCacheLocal:
	default:
		errs = append(errs, fmt.Errorf("--layer-cache %q: want jetstream or local", c.LayerCache))
	}
	if c.LayerLeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("--layer-lease-ttl %s: want at least 1s", c.LayerLeaseTTL))
	}
	if c.WorkerName == "" {
		errs = append(errs, errors.New("--worker-name is required (no host name to default to)"))
	}
	return errors.Join(errs...)
}

// DefaultConcurrency is min(usable CPUs, memory in GiB), at least 1: a scan
// of a large image takes about a core and up to a GiB.
func DefaultConcurrency() int {
	n := runtime.GOMAXPROCS(0) // honours cgroup CPU limits
	if gib := int(memoryLimit() >> 30); gib > 0 && gib < n {
		n = gib
	}
	return max(n, 1)
}

// memoryLimit is the cgroup memory limit, else the machine's memory, else 0.
func memoryLimit() uint64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
		if err == nil && v > 0 && v < 1<<60 { // "max" or a huge v1 value mean unlimited
			return v
		}
	}
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
