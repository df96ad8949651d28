package harness

import (
	"context"
	"time"

	"github.com/testcontainers/testcontainers-go/wait"
)

// registryConfig is the CNCF distribution registry's configuration: a
// filesystem store, deletes allowed, plain HTTP on :5000.
const registryConfig = `version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: :5000
`

// Registry is a CNCF distribution registry (v3) container.
type Registry struct {
	*Container
	// HostAddr is "host:port" for pushing from the test process (plain
	// HTTP; go-containerregistry uses HTTP for loopback hosts).
	HostAddr string
	// InternalHost is "registry:5000", the name containers pull from.
	InternalHost string
}

// StartRegistry starts the registry as "registry" on the network.
func (e *Env) StartRegistry(ctx context.Context) *Registry {
	e.T.Helper()
	bin := MustStaticBinary(e.T, "registry", "tools")
	img, err := EnsureImage(ctx, e.Docker.Client, ImageSpec{
		Name:       "registry",
		Binary:     bin,
		Files:      map[string][]byte{"/etc/distribution/config.yml": []byte(registryConfig)},
		Dirs:       []string{"/var/lib/registry"},
		Entrypoint: []string{"/registry", "serve", "/etc/distribution/config.yml"},
		Expose:     []string{"5000/tcp"},
	})
	if err != nil {
		e.T.Fatal(err)
	}
	c := e.Start(ctx, Spec{
		Name:  "registry",
		Image: img,
		// Without an exporter the registry logs trace-export errors.
		Env:   map[string]string{"OTEL_TRACES_EXPORTER": "none"},
		Ports: []string{"5000/tcp"},
		Wait:  wait.ForHTTP("/v2/").WithPort("5000/tcp").WithStartupTimeout(30 * time.Second),
	})
	return &Registry{Container: c, HostAddr: c.HostAddr(ctx, "5000/tcp"), InternalHost: "registry:5000"}
}
