package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fleetscan/fleetscan/internal/cli"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/store"
)

// TestMain lets a test start this package's test binary as a dispatcher
// process: with $DISPATCHER_TEST_MAIN set it runs main() instead of tests.
func TestMain(m *testing.M) {
	if os.Getenv("DISPATCHER_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

var (
	pods  = filepath.Join("..", "..", "internal", "inventory", "testdata", "pods.json")
	nodes = filepath.Join("..", "..", "internal", "inventory", "testdata", "nodes.json")
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli.Run(t.Context(), command, cli.Env{Args: args, Stdout: &out, Stderr: &errb}, run)
	return code, out.String(), errb.String()
}

// malformed is an inventory file that is not kubectl's JSON.
func malformed(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "malformed.json")
	if err := os.WriteFile(path, []byte(`{"kind":"List","items":[]} trailing garbage`), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExitCodes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"help", []string{"--help"}, cli.ExitOK, "Exit status:"},
		{"unknown flag", []string{"--bogus"}, cli.ExitUsage, "unknown flag: --bogus"},
		{"positional", []string{"extra"}, cli.ExitUsage, "unexpected arguments"},
		{"in-cluster without a name", []string{"--in-cluster"}, cli.ExitUsage, "--in-cluster needs --cluster-name"},
		{"bad nats url", []string{"--inventory-file", pods, "--nats-url", "http://x"}, cli.ExitUsage, "--nats-url"},
		{"bad log level", []string{"--dry-run", "--inventory-file", pods, "--log-level", "loud"}, cli.ExitUsage, "--log-level"},
		// A missing file is bad input, reported before any work; a file
		// that cannot be read as pods fails its cluster.
		{"missing inventory file", []string{"--dry-run", "--log-format", "json", "--inventory-file", "gone=" + missing},
			cli.ExitUsage, "--inventory-file " + missing + ": "},
		{"no cluster enumerated", []string{"--dry-run", "--log-format", "json", "--inventory-file", "bad=" + malformed(t)},
			cli.ExitFailed, "no cluster could be enumerated"},
		{"nats unreachable", []string{"--log-format", "json", "--inventory-file", pods, "--resolve-tags=false", "--nats-url", "nats://127.0.0.1:1", "--nats-timeout", "200ms"},
			cli.ExitFailed, "connect to NATS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runMain(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("exit %d, want %d; stderr does not contain %q:\n%s", code, tt.wantCode, tt.wantErr, stderr)
			}
		})
	}
	_, _, help := runMain(t, "--help")
	for _, want := range []string{"RBAC", "replicasets  get, list", "$FLEETSCAN_INVENTORY_FILE", "--dry-run"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestDryRun(t *testing.T) {
	code, stdout, stderr := runMain(t, "--dry-run", "--resolve-tags=false", "--log-format", "json", "--cycle", "2026-11-27",
		"--inventory-file", "prod="+pods, "--nodes-file", nodes)
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var plan struct {
		Jobs []struct {
			Digest, Platform string
			References       []string
			Workloads        []struct{ Cluster, Namespace, Kind, Name, Container string }
		}
		Unresolved []struct{ Cluster, Pod, Container, Reason string }
	}
	if err := json.Unmarshal([]byte(stdout), &plan); err != nil {
		t.Fatalf("stdout is not the JSON plan: %v\n%s", err, stdout)
	}
	if len(plan.Jobs) != 6 || len(plan.Unresolved) != 4 || plan.Jobs[0].Workloads[0].Cluster != "prod" {
		t.Fatalf("plan: %d jobs, %d unresolved", len(plan.Jobs), len(plan.Unresolved))
	}
	if !strings.Contains(stderr, "cluster prod: 10 pods, 12 containers, 6 unique digests, 4 unresolved") {
		t.Fatalf("summary missing from stderr:\n%s", stderr)
	}
}

func TestPublishes(t *testing.T) {
	env := natstest.Start(t)
	t.Setenv("FLEETSCAN_RUN_ID", "run-from-env")
	code, stdout, stderr := runMain(t, "--nats-url", env.Server.URL(), "--log-format", "json", "--resolve-tags=false",
		"--cycle", "c1", "--inventory-file", "prod="+pods, "--inventory-file", "broken="+malformed(t))
	if code != cli.ExitOK || stdout != "" {
		t.Fatalf("exit %d stdout %q:\n%s", code, stdout, stderr)
	}
	m, err := store.New(env.JS, env.Res).Manifest(t.Context(), "run-from-env")
	if err != nil {
		t.Fatal(err)
	}
	// Without a nodes file every pod is linux/amd64: the nginx and busybox
	// digests collapse, leaving 5 keys.
	if m.Cycle != "c1" || m.Published != 5 || len(m.Clusters) != 2 || m.Clusters[0].Name != "broken" || m.Clusters[0].OK {
		t.Fatalf("manifest %+v", m)
	}
}

// TestTwoProcessesSameCycle runs two dispatcher processes at once, each
// enumerating a cluster that runs the same images, with the same cycle: the
// jobs stream stores each job once.
func TestTwoProcessesSameCycle(t *testing.T) {
	env := natstest.Start(t)
	var (
		wg   sync.WaitGroup
		outs [2]bytes.Buffer
		errs [2]error
	)
	for i, cluster := range []string{"prod", "staging"} {
		cmd := exec.Command(os.Args[0], "--nats-url", env.Server.URL(), "--log-format", "json", "--resolve-tags=false",
			"--cycle", "2026-11-27", "--run-id", "run-"+cluster, "--inventory-file", cluster+"="+pods, "--nodes-file", nodes)
		cmd.Env = append(os.Environ(), "DISPATCHER_TEST_MAIN=1")
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cmd.Wait()
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("dispatcher %d: %v\n%s", i, errs[i], outs[i].String())
		}
	}
	info, err := env.Res.Jobs.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(env.JS, env.Res)
	published, duplicates := 0, 0
	for _, run := range []string{"run-prod", "run-staging"} {
		m, err := st.Manifest(t.Context(), run)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Expected) != 6 {
			t.Fatalf("%s expects %d keys, want 6", run, len(m.Expected))
		}
		published, duplicates = published+m.Published, duplicates+m.Duplicates
	}
	if info.State.Msgs != 6 || published != 6 || duplicates != 6 {
		t.Fatalf("stream holds %d jobs; published %d, duplicates %d: want 6, 6, 6", info.State.Msgs, published, duplicates)
	}
}
