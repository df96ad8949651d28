package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/fleetscan/fleetscan/test/integration/faultproxy"
)

// FaultProxy is a faultproxy container in front of a registry.
type FaultProxy struct {
	*Container
	// InternalHost is "faultproxy:5000": pull through it to get faults.
	InternalHost string
	control      string
}

// StartFaultProxy starts cmd/faultproxy as "faultproxy", forwarding to
// upstream (e.g. "http://registry:5000").
func (e *Env) StartFaultProxy(ctx context.Context, upstream string) *FaultProxy {
	e.T.Helper()
	bin, err := BuildModuleBinary("./cmd/faultproxy")
	if err != nil {
		e.T.Fatal(err)
	}
	img, err := EnsureImage(ctx, e.Docker.Client, ImageSpec{Name: "faultproxy", Binary: bin, Expose: []string{"5000/tcp", "5001/tcp"}})
	if err != nil {
		e.T.Fatal(err)
	}
	c := e.Start(ctx, Spec{
		Name:  "faultproxy",
		Image: img,
		Cmd:   []string{"--listen", ":5000", "--control", ":5001", "--upstream", upstream},
		Ports: []string{"5000/tcp", "5001/tcp"},
		Wait:  wait.ForHTTP("/healthz").WithPort("5001/tcp").WithStartupTimeout(30 * time.Second),
	})
	return &FaultProxy{Container: c, InternalHost: "faultproxy:5000", control: "http://" + c.HostAddr(ctx, "5001/tcp")}
}

// SetRules replaces the proxy's rules (and resets its statistics).
func (p *FaultProxy) SetRules(ctx context.Context, rules ...faultproxy.Rule) error {
	if rules == nil {
		rules = []faultproxy.Rule{}
	}
	body, err := json.Marshal(rules)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.control+"/rules", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("faultproxy rules: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		var msg bytes.Buffer
		_, _ = msg.ReadFrom(resp.Body)
		return fmt.Errorf("faultproxy rules: %s: %s", resp.Status, msg.String())
	}
	return nil
}

// Stats returns the proxy's statistics.
func (p *FaultProxy) Stats(ctx context.Context) (faultproxy.Stats, error) {
	var st faultproxy.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.control+"/stats", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("faultproxy stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("faultproxy stats: %w", err)
	}
	return st, nil
}
