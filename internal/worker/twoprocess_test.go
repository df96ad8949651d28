package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
)

// childEnv carries a child worker's settings.
const childEnv = "FLEETSCAN_WORKER_TEST_CHILD"

type childConfig struct {
	NATSURL, CacheDir, ScratchDir, Name string
}

// TestMain lets a test run this binary as a second worker process: with
// $FLEETSCAN_WORKER_TEST_CHILD set it runs one worker, with its own engine
// (Trivy's DB handle is per process), until its stdin closes.
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		if err := runChild(spec); err != nil {
			fmt.Println("child worker:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

func runChild(spec string) error {
	var c childConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	log := zap.NewNop()
	nc := natsconn.Defaults("child-" + c.Name)
	nc.URLs = c.NATSURL
	s, err := natsconn.Open(ctx, nc, topology.Defaults(), log)
	if err != nil {
		return err
	}
	defer s.Close()
	cfg := DefaultConfig()
	cfg.DB.CacheDir, cfg.ScratchDir, cfg.WorkerName, cfg.Listen = c.CacheDir, c.ScratchDir, c.Name, ""
	cfg.Concurrency, cfg.LayerLeaseTTL, cfg.DBCheckInterval = 4, 2*time.Second, time.Hour
	eng, err := OpenEngine(ctx, cfg, log, WithResources(s.Res))
	if err != nil {
		return err
	}
	defer eng.Close()
	st := store.New(s.JS, s.Res)
	st.Worker = c.Name
	w, err := New(cfg, Deps{Conn: s.Conn, Resources: s.Res, Store: st, Scanner: eng, Log: log})
	if err != nil {
		return err
	}
	fmt.Println("started")
	return w.Run(ctx)
}

// startChild runs a worker named name in another process.
func (e *env) startChild(t *testing.T, name string) {
	t.Helper()
	spec, _ := json.Marshal(childConfig{NATSURL: e.nats.Server.URL(), CacheDir: e.cacheDir, ScratchDir: t.TempDir(), Name: name})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child worker %s: %v", name, err)
			}
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			t.Errorf("child worker %s did not stop", name)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "started" {
		t.Fatalf("child worker %s said %q, %v", name, line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
}

// TestTwoEnginesFetchEachSharedLayerOnce: two worker processes, each with
// its own engine and layer-cache client, meet only through the JetStream
// leases — and still download every layer of the fleet exactly once.
func TestTwoEnginesFetchEachSharedLayerOnce(t *testing.T) {
	e := newEnv(t, nil)
	f := newFleet(t, 300*time.Millisecond)
	cfg := e.config(t)
	cfg.WorkerName = "in-process"
	e.start(t, cfg, nil)
	e.startChild(t, "other-process")
	results := e.runCycle(t, f, "c1")
	checkFindings(t, f, results, 1)

	_, blobs := f.log.snapshot()
	for d := range f.layers {
		if blobs[d] != 1 {
			t.Errorf("layer %s fetched %d times, want exactly once", d, blobs[d])
		}
	}
	workers := map[string]int{}
	for _, r := range results {
		workers[r.Worker]++
	}
	if workers["in-process"] == 0 || workers["other-process"] == 0 {
		t.Errorf("results by worker %v: want both processes to have scanned", workers)
	}
	t.Logf("%d images, %d unique layers, scanned by %v", len(results), len(f.layers), workers)
}
