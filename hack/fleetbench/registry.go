package main

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registry is the CNCF distribution registry running as a child process
// with filesystem storage.
type registry struct {
	Host string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan error
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRegistry runs bin with its storage under dir and waits until it
// answers /v2/.
func startRegistry(ctx context.Context, bin, dir string) (*registry, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
http:
  addr: %s
`, filepath.Join(dir, "data"), host)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start registry %s: %w", bin, err)
	}
	r := &registry{Host: host, cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait(); logf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case err := <-r.done:
			return nil, fmt.Errorf("registry exited: %v (see %s)", err, filepath.Join(dir, "registry.log"))
		case <-ctx.Done():
			r.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Close()
			return nil, errors.New("registry did not answer /v2/ within 30s")
		}
	}
}

// Close stops the registry process.
func (r *registry) Close() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// trafficStats is what the proxy served: requests and response bytes by
// kind.
type trafficStats struct {
	ManifestRequests int64 `json:"manifestRequests"`
	ManifestBytes    int64 `json:"manifestBytes"`
	BlobRequests     int64 `json:"blobRequests"`
	BlobBytes        int64 `json:"blobBytes"`
	OtherRequests    int64 `json:"otherRequests"`
	OtherBytes       int64 `json:"otherBytes"`
}

// TotalBytes is every response byte served.
func (s trafficStats) TotalBytes() int64 { return s.ManifestBytes + s.BlobBytes + s.OtherBytes }

func (s trafficStats) sub(o trafficStats) trafficStats {
	return trafficStats{
		ManifestRequests: s.ManifestRequests - o.ManifestRequests, ManifestBytes: s.ManifestBytes - o.ManifestBytes,
		BlobRequests: s.BlobRequests - o.BlobRequests, BlobBytes: s.BlobBytes - o.BlobBytes,
		OtherRequests: s.OtherRequests - o.OtherRequests, OtherBytes: s.OtherBytes - o.OtherBytes,
	}
}

type kindCounter struct{ requests, bytes atomic.Int64 }

// countingProxy is a reverse proxy in front of the registry that counts the
// response bytes it forwards, by request kind (manifests, blobs, other).
type countingProxy struct {
	Host                    string
	srv                     *http.Server
	manifests, blobs, other kindCounter
}

func startProxy(backend string) (*countingProxy, error) {
	u, err := url.Parse("http://" + backend)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{Host: l.Addr().String()}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(resp *http.Response) error {
		k := p.kind(resp.Request.URL.Path)
		k.requests.Add(1)
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &k.bytes}
		return nil
	}
	// Keep the proxy's own connection reuse generous: it is not what is
	// measured.
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	p.srv = &http.Server{Handler: rp, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *countingProxy) kind(path string) *kindCounter {
	switch {
	case strings.Contains(path, "/manifests/"):
		return &p.manifests
	case strings.Contains(path, "/blobs/"):
		return &p.blobs
	}
	return &p.other
}

// Stats returns the counters so far.
func (p *countingProxy) Stats() trafficStats {
	return trafficStats{
		ManifestRequests: p.manifests.requests.Load(), ManifestBytes: p.manifests.bytes.Load(),
		BlobRequests: p.blobs.requests.Load(), BlobBytes: p.blobs.bytes.Load(),
		OtherRequests: p.other.requests.Load(), OtherBytes: p.other.bytes.Load(),
	}
}

func (p *countingProxy) Close() { _ = p.srv.Close() }

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// floorResult is the physical floor: every unique layer fetched through the
// proxy and decompressed once.
type floorResult struct {
	Layers       int
	Compressed   int64
	Uncompressed int64
	Wall         time.Duration
	Concurrency  int
}

// measureFloor fetches and gunzips every unique layer of the fleet once
// through host, concurrency at a time.
func measureFloor(ctx context.Context, host string, images []*imagePlan, concurrency int) (floorResult, error) {
	refs := map[string]string{} // layer digest → repository holding it
	var order []string
	for _, ip := range images {
		for _, l := range ip.Layers {
			if _, ok := refs[l]; !ok {
				refs[l] = ip.Repository
				order = append(order, l)
			}
		}
	}
	res := floorResult{Layers: len(order), Concurrency: concurrency}
	var comp, uncomp atomic.Int64
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range work {
				c, u, err := fetchLayer(ctx, host+"/"+refs[l]+"@"+l)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				comp.Add(c)
				uncomp.Add(u)
			}
		}()
	}
	for _, l := range order {
		work <- l
	}
	close(work)
	wg.Wait()
	res.Wall = time.Since(start)
	res.Compressed, res.Uncompressed = comp.Load(), uncomp.Load()
	return res, errors.Join(errs...)
}

func fetchLayer(ctx context.Context, ref string) (compressed, uncompressed int64, err error) {
	d, err := name.NewDigest(ref, name.Insecure)
	if err != nil {
		return 0, 0, fmt.Errorf("layer %s: %w", ref, err)
	}
	l, err := remote.Layer(d, remote.WithContext(ctx))
	if err != nil {
		return 0, 0, fmt.Errorf("layer %s: %w", ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, 0, fmt.Errorf("layer %s: %w", ref, err)
	}
	defer rc.Close()
	cr := &countingReader{r: rc}
	gz, err := gzip.NewReader(cr)
	if err != nil {
		return 0, 0, fmt.Errorf("layer %s: %w", ref, err)
	}
	n, err := io.Copy(io.Discard, gz)
	if err != nil {
		return 0, 0, fmt.Errorf("layer %s: decompress: %w", ref, err)
	}
	return cr.n, n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
