// Package harness runs fleetscan's integration-test infrastructure in Docker:
// images built FROM scratch out of static binaries (built once, reused by
// tag), a private network per test, containers that can be stopped, killed
// with SIGKILL and restarted on the same volume, their logs saved when a test
// fails, and explicit clean-up (testcontainers' reaper cannot be pulled here,
// so it is disabled).
//
// Where no Docker engine answers, New skips the test with a loud
// "SKIPPED: <test>: no Docker engine" line — or, with CI=true, fails it.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
)

// Label marks every container, network and volume the harness creates, so a
// crashed run's leftovers can be found: docker ps -a --filter label=<Label>.
const Label = "org.fleetscan.integration"

var (
	dockerOnce sync.Once
	dockerCli  *testcontainers.DockerClient
	dockerErr  error
)

// docker returns the shared Docker client, or why there is none.
func docker() (*testcontainers.DockerClient, error) {
	dockerOnce.Do(func() {
		if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
			// The reaper image cannot be pulled here; clean-up is explicit.
			_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
		}
		configureHostOverride()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		dockerCli, dockerErr = testcontainers.NewDockerClientWithOpts(ctx)
		if dockerErr == nil {
			_, dockerErr = dockerCli.Ping(ctx, client.PingOptions{})
		}
	})
	return dockerCli, dockerErr
}

// configureHostOverride tells testcontainers where published ports are when
// it would guess wrong. Inside a container (/.dockerenv) it assumes the
// daemon runs elsewhere and uses the default gateway; but when the daemon's
// own bridge (docker0) is in this network namespace, the daemon runs here and
// publishes ports on this host's loopback.
func configureHostOverride() {
	if _, ok := os.LookupEnv("TESTCONTAINERS_HOST_OVERRIDE"); ok {
		return
	}
	if dh := os.Getenv("DOCKER_HOST"); dh != "" && !strings.HasPrefix(dh, "unix://") {
		return
	}
	if _, err := net.InterfaceByName("docker0"); err == nil {
		_ = os.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	}
}

// RequireDocker skips t loudly when no Docker engine answers — and fails
// it when $CI is true: in CI a skipped integration test would turn the run
// green without testing anything.
func RequireDocker(t testing.TB) *testcontainers.DockerClient {
	t.Helper()
	cli, err := docker()
	return requireDocker(t, cli, err)
}

func requireDocker(t testing.TB, cli *testcontainers.DockerClient, err error) *testcontainers.DockerClient {
	t.Helper()
	if err != nil {
		if InCI() {
			t.Fatalf("no Docker engine (%v), and CI=true: the integration tests must run in CI, not be skipped", err)
		}
		// A line of its own on stdout, so `make test-integration` shows it
		// and prints its banner.
		fmt.Printf("SKIPPED: %s: no Docker engine (%v)\n", t.Name(), err)
		t.Skipf("SKIPPED: %s: no Docker engine: %v", t.Name(), err)
	}
	return cli
}

// InCI reports whether $CI says the tests run in CI (CI=true, as CI
// systems set it).
func InCI() bool {
	v := strings.ToLower(strings.TrimSpace(os.Getenv("CI")))
	return v == "true" || v == "1" || v == "yes"
}

// Env is one test's private infrastructure: a Docker network and the
// containers and volumes started on it, all removed when the test ends.
type Env struct {
	T      testing.TB
	Docker *testcontainers.DockerClient
	// Network is the private network; containers reach each other by their
	// Spec.Name.
	Network *testcontainers.DockerNetwork
	// ID is a random suffix shared by this Env's container names.
	ID string

	seq        atomic.Int64
	mu         sync.Mutex
	containers []*Container
	volumes    []string
	// retired holds the logs of containers replaced during the test.
	retired []retiredLog
}

type retiredLog struct{ name, logs string }

// retire keeps the logs of a container about to be removed.
func (e *Env) retire(ctx context.Context, c *Container) {
	logs, err := c.Logs(ctx)
	if err != nil {
		logs = err.Error()
	}
	e.mu.Lock()
	e.retired = append(e.retired, retiredLog{fmt.Sprintf("%s.replaced-%d", c.Name, len(e.retired)+1), logs})
	e.mu.Unlock()
}

// New creates the test's network and registers clean-up: when the test
// failed, every container's log is written under ArtifactsDir and its tail
// logged; then containers, volumes and the network are removed.
func New(t testing.TB) *Env {
	t.Helper()
	cli := RequireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nw, err := network.New(ctx, network.WithLabels(map[string]string{Label: t.Name()}))
	if err != nil {
		t.Fatalf("create docker network: %v", err)
	}
	e := &Env{T: t, Docker: cli, Network: nw, ID: randomID()}
	t.Cleanup(e.cleanup)
	return e
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ArtifactsDir is where logs of failed tests are written (git-ignored).
func ArtifactsDir() string {
	if d := os.Getenv("FLEETSCAN_IT_ARTIFACTS"); d != "" {
		return d
	}
	return filepath.Join(ModuleDir(), ".artifacts")
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

func (e *Env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.mu.Lock()
	containers := append([]*Container(nil), e.containers...)
	volumes := append([]string(nil), e.volumes...)
	retired := append([]retiredLog(nil), e.retired...)
	e.mu.Unlock()

	if e.T.Failed() {
		dir := filepath.Join(ArtifactsDir(), unsafeName.ReplaceAllString(e.T.Name(), "_"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			e.T.Logf("artifacts: %v", err)
		}
		for _, r := range retired {
			path := filepath.Join(dir, r.name+".log")
			if err := os.WriteFile(path, []byte(r.logs), 0o644); err != nil {
				e.T.Logf("write %s: %v", path, err)
			}
		}
		for _, c := range containers {
			logs, err := c.Logs(ctx)
			if err != nil {
				e.T.Logf("logs of %s: %v", c.Name, err)
				continue
			}
			path := filepath.Join(dir, c.Name+".log")
			if err := os.WriteFile(path, []byte(logs), 0o644); err != nil {
				e.T.Logf("write %s: %v", path, err)
			}
			e.T.Logf("---- last lines of %s (full log: %s) ----\n%s", c.Name, path, tail(logs, 40))
		}
	}
	var errs []error
	for i := len(containers) - 1; i >= 0; i-- {
		if err := containers[i].Terminate(ctx, testcontainers.StopTimeout(5*time.Second)); err != nil {
			errs = append(errs, fmt.Errorf("terminate %s: %w", containers[i].Name, err))
		}
	}
	for _, v := range volumes {
		if _, err := e.Docker.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v, err))
		}
	}
	if err := e.Network.Remove(ctx); err != nil {
		errs = append(errs, fmt.Errorf("remove network: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		e.T.Errorf("clean-up: %v", err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Volume creates a named Docker volume removed when the test ends. The same
// volume can be mounted by a container and, after that one is gone, by its
// replacement.
func (e *Env) Volume(ctx context.Context, name string) string {
	e.T.Helper()
	full := "fsit-" + name + "-" + e.ID
	if _, err := e.Docker.VolumeCreate(ctx, client.VolumeCreateOptions{Name: full, Labels: map[string]string{Label: e.T.Name()}}); err != nil {
		e.T.Fatalf("create volume %s: %v", full, err)
	}
	e.mu.Lock()
	e.volumes = append(e.volumes, full)
	e.mu.Unlock()
	return full
}

// TempDir returns a host directory that containers running as any user can
// read and write (bind mounts keep host permissions).
func (e *Env) TempDir() string {
	e.T.Helper()
	dir := e.T.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		e.T.Fatal(err)
	}
	return dir
}

func (e *Env) logger() tclog.Logger { return quietLogger{} }

// quietLogger drops testcontainers' progress chatter; the harness reports
// what matters itself.
type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// MakeReadable makes everything under dir readable (and directories
// traversable) by any user, for bind mounts into containers that run
// unprivileged.
func MakeReadable(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := info.Mode().Perm() | 0o444
		if d.IsDir() {
			mode |= 0o111
		}
		return os.Chmod(path, mode)
	})
}
