package harness

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go/wait"
)

// NATSImage builds (once) the nats-server image from .tools/bin/nats-server.
func (e *Env) NATSImage(ctx context.Context) string {
	e.T.Helper()
	bin := MustStaticBinary(e.T, "nats-server", "tools")
	ref, err := EnsureImage(ctx, e.Docker.Client, ImageSpec{
		Name:   "nats-server",
		Binary: bin,
		Dirs:   []string{"/data"},
		Expose: []string{"4222/tcp", "6222/tcp", "8222/tcp"},
	})
	if err != nil {
		e.T.Fatal(err)
	}
	return ref
}

// NATS is a single server or a cluster started by the harness. Each node
// keeps its JetStream file store on its own named volume, so a restarted
// node finds its streams again.
type NATS struct {
	Nodes []*Container
	// Volumes are the nodes' file-store volumes, by node index.
	Volumes []string
	// HostURLs reach the nodes from the test process; their ports are fixed
	// for the test's lifetime (they survive restarts).
	HostURLs []string
	// InternalURLs reach the nodes from containers on the network.
	InternalURLs []string

	env *Env
}

// StartNATS starts one JetStream server named "nats" with its file store on
// a volume.
func (e *Env) StartNATS(ctx context.Context) *NATS {
	e.T.Helper()
	img := e.NATSImage(ctx)
	vol := e.Volume(ctx, "nats")
	c := e.Start(ctx, Spec{
		Name:       "nats",
		Image:      img,
		Cmd:        []string{"--jetstream", "--store_dir", "/data", "--port", "4222", "--http_port", "8222", "--server_name", "nats"},
		FixedPorts: []string{"4222/tcp"},
		Ports:      []string{"8222/tcp"},
		Mounts:     []Mount{{Volume: vol, Target: "/data"}},
		Wait:       wait.ForHTTP("/healthz").WithPort("8222/tcp").WithStartupTimeout(30 * time.Second),
	})
	n := &NATS{Nodes: []*Container{c}, Volumes: []string{vol}, env: e}
	n.HostURLs = []string{"nats://" + c.HostAddr(ctx, "4222/tcp")}
	n.InternalURLs = []string{"nats://nats:4222"}
	return n
}

// StartNATSCluster starts a JetStream cluster of size nodes named nats-1 ...
// nats-N, routed to each other, and waits until JetStream has a meta leader.
func (e *Env) StartNATSCluster(ctx context.Context, size int) *NATS {
	e.T.Helper()
	img := e.NATSImage(ctx)
	var routes []string
	for i := 1; i <= size; i++ {
		routes = append(routes, fmt.Sprintf("nats://nats-%d:6222", i))
	}
	n := &NATS{env: e}
	for i := 1; i <= size; i++ {
		name := fmt.Sprintf("nats-%d", i)
		vol := e.Volume(ctx, name)
		c := e.Start(ctx, Spec{
			Name:  name,
			Image: img,
			Cmd: []string{"--jetstream", "--store_dir", "/data", "--port", "4222", "--http_port", "8222",
				"--server_name", name, "--cluster_name", "fleetscan", "--cluster", "nats://0.0.0.0:6222",
				"--routes", strings.Join(routes, ","), "--no_advertise"},
			FixedPorts: []string{"4222/tcp"},
			Ports:      []string{"8222/tcp"},
			Mounts:     []Mount{{Volume: vol, Target: "/data"}},
			// A node is only JetStream-healthy once a quorum is up, so the
			// per-node check is the server's start; WaitHealthy follows.
			Wait: wait.ForLog("Server is ready").WithStartupTimeout(30 * time.Second),
		})
		n.Nodes = append(n.Nodes, c)
		n.Volumes = append(n.Volumes, vol)
		n.HostURLs = append(n.HostURLs, "nats://"+c.HostAddr(ctx, "4222/tcp"))
		n.InternalURLs = append(n.InternalURLs, fmt.Sprintf("nats://%s:4222", name))
	}
	if err := n.WaitHealthy(ctx, 60*time.Second, n.Nodes...); err != nil {
		e.T.Fatal(err)
	}
	return n
}

// ReplaceNode removes node i and starts a new container on the same volume
// and host port, then waits until it is healthy.
func (n *NATS) ReplaceNode(ctx context.Context, i int) {
	n.env.T.Helper()
	n.Nodes[i] = n.env.Replace(ctx, n.Nodes[i])
	if err := n.WaitHealthy(ctx, 60*time.Second, n.Nodes[i]); err != nil {
		n.env.T.Fatal(err)
	}
}

// URL is the comma-separated list of host URLs (for the test process).
func (n *NATS) URL() string { return strings.Join(n.HostURLs, ",") }

// InternalURL is the comma-separated list of in-network URLs (for
// containers).
func (n *NATS) InternalURL() string { return strings.Join(n.InternalURLs, ",") }

// WaitHealthy polls each node's /healthz (JetStream included) until all
// answer 200 or timeout passes.
func (n *NATS) WaitHealthy(ctx context.Context, timeout time.Duration, nodes ...*Container) error {
	deadline := time.Now().Add(timeout)
	for _, c := range nodes {
		url := "http://" + c.HostAddr(ctx, "8222/tcp") + "/healthz"
		var last string
		for {
			status, body, err := httpGet(ctx, url)
			if err == nil && status == http.StatusOK {
				break
			}
			last = fmt.Sprintf("status %d %s %v", status, strings.TrimSpace(body), err)
			if time.Now().After(deadline) {
				return fmt.Errorf("NATS node %s not healthy after %s: %s", c.Name, timeout, last)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// Connect connects the test process to the server(s) with reconnects
// enabled, and closes the connection when the test ends.
func (n *NATS) Connect(ctx context.Context) (*nats.Conn, jetstream.JetStream) {
	t := n.env.T
	t.Helper()
	nc, err := nats.Connect(n.URL(),
		nats.Name("integration-test"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.RetryOnFailedConnect(false),
	)
	if err != nil {
		t.Fatalf("connect to NATS %s: %v", n.URL(), err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

func httpGet(ctx context.Context, url string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	m, _ := resp.Body.Read(buf)
	b.Write(buf[:m])
	return resp.StatusCode, b.String(), nil
}
