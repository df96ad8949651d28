package worker

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/internal/flagenv"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no cache dir", func(c *Config) { c.DB.CacheDir = "" }, "--cache-dir"},
		{"zero concurrency", func(c *Config) { c.Concurrency = 0 }, "--concurrency 0"},
		{"zero scan timeout", func(c *Config) { c.ScanTimeout = 0 }, "--scan-timeout"},
		{"negative grace", func(c *Config) { c.GracePeriod = -time.Second }, "--grace-period"},
		{"retry max below base", func(c *Config) { c.RetryDelay, c.RetryMaxDelay = time.Minute, time.Second }, "--retry-max-delay"},
		{"URL as insecure registry", func(c *Config) { c.DB.Registry.InsecureRegistries = []string{"http://r.example.com/v2"} }, "--insecure-registry"},
		{"missing registry config", func(c *Config) { c.DB.Registry.DockerConfig = "/nonexistent/config.json" }, "--registry-config"},
		{"no worker name", func(c *Config) { c.WorkerName = "" }, "--worker-name"},
		{"bad max DB age", func(c *Config) { c.DB.MaxDBAge = 0 }, "--max-db-age"},
		{"unknown layer cache", func(c *Config) { c.LayerCache = "redis" }, "--layer-cache \"redis\""},
		{"local layer cache", func(c *Config) { c.LayerCache = LayerCacheLocal }, ""},
		{"sub-second lease", func(c *Config) { c.LayerLeaseTTL = 500 * time.Millisecond }, "--layer-lease-ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			c.WorkerName = "w"
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tc.wantErr)
			}
		})
	}
}

func TestConfigFlagsAndEnvironment(t *testing.T) {
	c := DefaultConfig()
	fs := pflag.NewFlagSet("worker", pflag.ContinueOnError)
	c.RegisterFlags(fs)
	flagenv.Annotate(fs)
	t.Setenv("FLEETSCAN_SCAN_TIMEOUT", "2m")
	t.Setenv("FLEETSCAN_INSECURE_REGISTRY", "a:5000,b")
	t.Setenv("FLEETSCAN_CONCURRENCY", "9")
	if err := fs.Parse([]string{"--concurrency", "3", "--cache-dir", "/pvc", "--listen", "", "--worker-name", "w-1"}); err != nil {
		t.Fatal(err)
	}
	if err := flagenv.Apply(fs, nil); err != nil {
		t.Fatal(err)
	}
	if c.Concurrency != 3 || c.ScanTimeout != 2*time.Minute || c.DB.CacheDir != "/pvc" || c.Listen != "" || c.WorkerName != "w-1" {
		t.Errorf("config = %+v", c)
	}
	if strings.Join(c.DB.Registry.InsecureRegistries, ",") != "a:5000,b" {
		t.Errorf("insecure registries = %v", c.DB.Registry.InsecureRegistries)
	}
	for _, name := range []string{"cache-dir", "max-db-age", "concurrency", "scan-timeout", "grace-period", "scratch-dir",
		"registry-config", "insecure-registry", "listen", "worker-name"} {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s missing", name)
		}
	}
	d := DefaultConfig()
	if d.DB.MaxDBAge != 72*time.Hour || d.ScanTimeout != 10*time.Minute || d.GracePeriod != 30*time.Second || d.Listen != ":8080" {
		t.Errorf("defaults = %+v", d)
	}
}

func TestDefaultConcurrency(t *testing.T) {
	n := DefaultConcurrency()
	if n < 1 || n > runtime.GOMAXPROCS(0) {
		t.Errorf("DefaultConcurrency = %d, want 1..%d", n, runtime.GOMAXPROCS(0))
	}
	if gib := int(memoryLimit() >> 30); gib >= 1 && n > gib {
		t.Errorf("DefaultConcurrency = %d above memory %d GiB", n, gib)
	}
}
