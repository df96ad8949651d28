package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// Mount is a bind mount of a host path or a named volume.
type Mount struct {
	// Volume is a named volume (from Env.Volume); otherwise HostPath is
	// bind-mounted.
	Volume   string
	HostPath string
	Target   string
	ReadOnly bool
}

// Spec describes a container to start on the Env's network.
type Spec struct {
	// Name is the container's host name on the network (and part of its
	// Docker name).
	Name  string
	Image string
	// Cmd are the arguments after the image's entrypoint.
	Cmd []string
	Env map[string]string
	// Ports are published on random host ports. A restarted container may
	// get different ones: use FixedPorts for ports a test reconnects to.
	Ports []string
	// FixedPorts are published on a free host port chosen once, so the
	// mapping survives Stop/Start.
	FixedPorts []string
	Mounts     []Mount
	// Tmpfs are writable in-memory mounts (like an emptyDir), by path.
	Tmpfs []string
	// HostNetwork runs the container in the host's network namespace (to
	// reach a server the test runs on the host's loopback); Name is then
	// not resolvable by other containers.
	HostNetwork bool
	// Files are copied into the container before it starts.
	Files []testcontainers.ContainerFile
	// Wait is the readiness check; nil returns as soon as the process
	// started (for containers that run to completion).
	Wait wait.Strategy
	User string
}

// Container is a running (or stopped) container of an Env.
type Container struct {
	*testcontainers.DockerContainer
	Name string
	env  *Env
	spec Spec
	// fixed maps FixedPorts to their host ports.
	fixed map[string]string
}

// Start creates and starts a container; the test fails if it cannot.
func (e *Env) Start(ctx context.Context, spec Spec) *Container {
	e.T.Helper()
	c, err := e.TryStart(ctx, spec)
	if err != nil {
		e.T.Fatal(err)
	}
	return c
}

// TryStart is Start returning the error (the container, if created, is
// still cleaned up with the Env).
func (e *Env) TryStart(ctx context.Context, spec Spec) (*Container, error) {
	return e.start(ctx, spec, nil)
}

func (e *Env) start(ctx context.Context, spec Spec, fixed map[string]string) (*Container, error) {
	if fixed != nil || len(spec.FixedPorts) == 0 {
		return e.startOnce(ctx, spec, fixed)
	}
	// Host ports picked here are free when picked, not when Docker binds
	// them: another process may take one in between. Pick again then.
	for attempt := 1; ; attempt++ {
		fixed = map[string]string{}
		for _, p := range spec.FixedPorts {
			hp, err := freePort()
			if err != nil {
				return nil, fmt.Errorf("container %s: %w", spec.Name, err)
			}
			fixed[p] = strconv.Itoa(hp)
		}
		c, err := e.startOnce(ctx, spec, fixed)
		if err == nil || attempt == 3 || !portTaken(err) {
			return c, err
		}
		e.T.Logf("container %s: a host port was taken meanwhile (%v); picking others", spec.Name, err)
		if c != nil {
			_ = c.Terminate(context.WithoutCancel(ctx))
			e.mu.Lock()
			e.containers = slices.DeleteFunc(e.containers, func(x *Container) bool { return x == c })
			e.mu.Unlock()
		}
	}
}

// portTaken reports whether a start failed because a host port was bound
// by someone else.
func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "address already in use") || strings.Contains(msg, "port is already allocated")
}

func (e *Env) startOnce(ctx context.Context, spec Spec, fixed map[string]string) (*Container, error) {
	exposed := append(append([]string{}, spec.Ports...), spec.FixedPorts...)
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithLogger(e.logger()),
		testcontainers.WithName(fmt.Sprintf("fsit-%s-%s-%d", spec.Name, e.ID, e.seq.Add(1))),
		testcontainers.WithLabels(map[string]string{Label: e.T.Name()}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.NetworkMode = container.NetworkMode(e.Network.Name)
			if spec.HostNetwork {
				hc.NetworkMode = "host"
			}
			for _, p := range spec.Tmpfs {
				if hc.Tmpfs == nil {
					hc.Tmpfs = map[string]string{}
				}
				hc.Tmpfs[p] = "rw,mode=1777"
			}
			if hc.PortBindings == nil {
				hc.PortBindings = mobynet.PortMap{}
			}
			for p, hp := range fixed {
				port, err := mobynet.ParsePort(p)
				if err != nil {
					continue // rejected below by testcontainers' own parsing
				}
				hc.PortBindings[port] = []mobynet.PortBinding{{HostPort: hp}}
			}
			for _, m := range spec.Mounts {
				dm := mount.Mount{Type: mount.TypeBind, Source: m.HostPath, Target: m.Target, ReadOnly: m.ReadOnly}
				if m.Volume != "" {
					dm.Type, dm.Source = mount.TypeVolume, m.Volume
				}
				hc.Mounts = append(hc.Mounts, dm)
			}
		}),
	}
	if !spec.HostNetwork {
		opts = append(opts, network.WithNetwork([]string{spec.Name}, e.Network))
	}
	if len(spec.Cmd) > 0 {
		opts = append(opts, testcontainers.WithCmd(spec.Cmd...))
	}
	if len(spec.Env) > 0 {
		opts = append(opts, testcontainers.WithEnv(spec.Env))
	}
	if len(exposed) > 0 {
		opts = append(opts, testcontainers.WithExposedPorts(exposed...))
	}
	if len(spec.Files) > 0 {
		opts = append(opts, testcontainers.WithFiles(spec.Files...))
	}
	if spec.Wait != nil {
		opts = append(opts, testcontainers.WithWaitStrategy(spec.Wait))
	}
	if spec.User != "" {
		opts = append(opts, testcontainers.WithConfigModifier(func(c *container.Config) { c.User = spec.User }))
	}
	dc, err := testcontainers.Run(ctx, spec.Image, opts...)
	var c *Container
	if dc != nil {
		c = &Container{DockerContainer: dc, Name: spec.Name, env: e, spec: spec, fixed: fixed}
		e.mu.Lock()
		e.containers = append(e.containers, c)
		e.mu.Unlock()
	}
	if err != nil {
		if c != nil {
			logs, _ := c.Logs(context.WithoutCancel(ctx))
			return c, fmt.Errorf("start %s (%s): %w\n%s", spec.Name, spec.Image, err, tail(logs, 30))
		}
		return nil, fmt.Errorf("start %s (%s): %w", spec.Name, spec.Image, err)
	}
	return c, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// HostAddr is "host:port" where the test process reaches the container's
// port.
func (c *Container) HostAddr(ctx context.Context, port string) string {
	c.env.T.Helper()
	host, err := c.Host(ctx)
	if err != nil {
		c.env.T.Fatalf("%s: docker host: %v", c.Name, err)
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		c.env.T.Fatalf("%s: mapped port %s: %v", c.Name, port, err)
	}
	return net.JoinHostPort(host, p.Port())
}

// Kill sends SIGKILL through the Docker API: no graceful shutdown, exactly
// like a node dying or the OOM killer.
func (c *Container) Kill(ctx context.Context) error {
	if _, err := c.env.Docker.ContainerKill(ctx, c.GetContainerID(), client.ContainerKillOptions{Signal: "SIGKILL"}); err != nil {
		return fmt.Errorf("kill %s: %w", c.Name, err)
	}
	// Wait until Docker reports it gone, so callers observe a dead process.
	if _, err := c.Wait(ctx); err != nil {
		return fmt.Errorf("kill %s: %w", c.Name, err)
	}
	return nil
}

// StopGracefully sends SIGTERM and waits up to timeout before SIGKILL.
func (c *Container) StopGracefully(ctx context.Context, timeout time.Duration) error {
	if err := c.Stop(ctx, &timeout); err != nil {
		return fmt.Errorf("stop %s: %w", c.Name, err)
	}
	return nil
}

// Restart stops the container (SIGTERM, then SIGKILL after timeout) and
// starts it again with the same volumes, port mappings (for FixedPorts) and
// readiness check.
func (c *Container) Restart(ctx context.Context, timeout time.Duration) error {
	if err := c.StopGracefully(ctx, timeout); err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("restart %s: %w", c.Name, err)
	}
	return nil
}

// Replace removes the container (SIGKILL, like a lost node) and starts a new
// one from the same spec: same name on the network, same volumes, same host
// ports for FixedPorts. It proves state lives on the volume, not in the
// container's writable layer.
func (e *Env) Replace(ctx context.Context, c *Container) *Container {
	e.T.Helper()
	e.retire(ctx, c)
	if err := c.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil {
		e.T.Fatalf("remove %s: %v", c.Name, err)
	}
	e.mu.Lock()
	for i, x := range e.containers {
		if x == c {
			e.containers = append(e.containers[:i], e.containers[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	nc, err := e.start(ctx, c.spec, c.fixed)
	if err != nil {
		e.T.Fatal(err)
	}
	return nc
}

// Wait blocks until the container's process exits and returns its exit
// code.
func (c *Container) Wait(ctx context.Context) (int, error) {
	res := c.env.Docker.ContainerWait(ctx, c.GetContainerID(), client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		if r.Error != nil && r.Error.Message != "" {
			return int(r.StatusCode), fmt.Errorf("wait %s: %s", c.Name, r.Error.Message)
		}
		return int(r.StatusCode), nil
	case err := <-res.Error:
		return -1, fmt.Errorf("wait %s: %w", c.Name, err)
	case <-ctx.Done():
		return -1, fmt.Errorf("wait %s: %w", c.Name, ctx.Err())
	}
}

// ExitCode returns the exit code of a container that has stopped, and
// whether it has.
func (c *Container) ExitCode(ctx context.Context) (int, bool, error) {
	st, err := c.State(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("state of %s: %w", c.Name, err)
	}
	if st.Running || st.Restarting {
		return 0, false, nil
	}
	return st.ExitCode, true, nil
}

// Logs returns the container's stdout and stderr so far.
func (c *Container) Logs(ctx context.Context) (string, error) {
	rc, err := c.DockerContainer.Logs(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, rc); err != nil && !errors.Is(err, io.EOF) {
		return buf.String(), fmt.Errorf("logs of %s: %w", c.Name, err)
	}
	return buf.String(), nil
}

// CopyOut reads a file from the container (running or stopped).
func (c *Container) CopyOut(ctx context.Context, path string) ([]byte, error) {
	rc, err := c.CopyFileFromContainer(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("copy %s from %s: %w", path, c.Name, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
