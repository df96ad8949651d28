package deploy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap/zaptest"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/fleetscan/fleetscan/internal/feeds"
	"github.com/fleetscan/fleetscan/internal/feeds/feedstest"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/queue"
	"github.com/fleetscan/fleetscan/internal/sla"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// natsPod is the rendered NATS server laid out on the local disk the way
// the kubelet would lay it out in the pod: every volume mount of the
// container becomes a directory, ConfigMap and Secret volumes are filled,
// and absolute paths in the configuration are mapped accordingly.
type natsPod struct {
	sts    *appsv1.StatefulSet
	c      corev1.Container
	root   string            // temp dir standing for the container's file system
	mounts map[string]string // mountPath -> local dir
	// seeds of the generated nkeys, by Secret key (dispatcher, worker, ...).
	seeds map[string][]byte
	caPEM []byte // CA of the generated server certificate
	tls   bool   // the server requires TLS (set by runNATS)
}

// layOutNATS renders dir and prepares its NATS pod (ordinal 0).
func layOutNATS(t *testing.T, dir string) (*natsPod, []object) {
	t.Helper()
	objs := render(t, dir)
	sts := mustFind(t, objs, "StatefulSet", "fleetscan-nats").Typed.(*appsv1.StatefulSet)
	i := slices.IndexFunc(sts.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return c.Name == "nats" })
	if i < 0 {
		t.Fatal("no container nats in the StatefulSet")
	}
	p := &natsPod{sts: sts, c: sts.Spec.Template.Spec.Containers[i], root: t.TempDir(), mounts: map[string]string{}, seeds: map[string][]byte{}}
	vols := map[string]corev1.Volume{}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		vols[v.Name] = v
	}
	for _, claim := range sts.Spec.VolumeClaimTemplates {
		vols[claim.Name] = corev1.Volume{Name: claim.Name}
	}
	for _, m := range p.c.VolumeMounts {
		local := filepath.Join(p.root, m.MountPath)
		if err := os.MkdirAll(local, 0o755); err != nil {
			t.Fatal(err)
		}
		p.mounts[m.MountPath] = local
		v, ok := vols[m.Name]
		if !ok {
			t.Fatalf("volume mount %s names no volume", m.Name)
		}
		switch {
		case v.ConfigMap != nil:
			cm, ok := find(objs, "ConfigMap", generatedName(v.ConfigMap.Name))
			if !ok {
				t.Fatalf("ConfigMap %s is not rendered", v.ConfigMap.Name)
			}
			for name, data := range cm.Typed.(*corev1.ConfigMap).Data {
				if err := os.WriteFile(filepath.Join(local, name), []byte(p.mapPaths(data)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		case v.Secret != nil && v.Secret.SecretName == "fleetscan-nats-server-tls":
			p.caPEM = writeServerCert(t, local)
		}
	}
	// The environment, as the kubelet would set it.
	for _, e := range p.c.Env {
		switch {
		case e.ValueFrom == nil:
			t.Setenv(e.Name, e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			t.Setenv(e.Name, sts.Name+"-0")
		case e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == "fleetscan-nats-users":
			kp, err := nkeys.CreateUser()
			if err != nil {
				t.Fatal(err)
			}
			pub, _ := kp.PublicKey()
			seed, _ := kp.Seed()
			p.seeds[e.ValueFrom.SecretKeyRef.Key] = seed
			t.Setenv(e.Name, pub)
		default:
			t.Fatalf("env %s: no test value for %+v", e.Name, e.ValueFrom)
		}
	}
	return p, objs
}

// mapPaths rewrites the container paths of the mounts in s to local dirs.
// Mount paths are replaced longest first, so nested mounts map correctly.
func (p *natsPod) mapPaths(s string) string {
	paths := make([]string, 0, len(p.c.VolumeMounts))
	for _, m := range p.c.VolumeMounts {
		paths = append(paths, m.MountPath)
	}
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, mp := range paths {
		pairs = append(pairs, mp+"/", filepath.Join(p.root, mp)+"/")
	}
	return strings.NewReplacer(pairs...).Replace(s)
}

func (p *natsPod) confPath() string {
	for _, a := range p.c.Args {
		if strings.HasSuffix(a, ".conf") {
			return p.mapPaths(a)
		}
	}
	return ""
}

// underMount reports whether a local path is inside one of the mounts
// (and not on the container's read-only root file system).
func (p *natsPod) underMount(local string) bool {
	for _, dir := range p.mounts {
		if strings.HasPrefix(local, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func (p *natsPod) port(t *testing.T, name string) int {
	t.Helper()
	for _, cp := range p.c.Ports {
		if cp.Name == name {
			return int(cp.ContainerPort)
		}
	}
	t.Fatalf("the nats container has no port %s", name)
	return 0
}

// TestNATSConfigLoads loads the rendered configuration with nats-server's
// own parser, in the environment and file layout of the StatefulSet's pod,
// and checks it against the manifests: names, ports, routes, storage on the
// volume, one user per key in the Secret, TLS where enabled.
func TestNATSConfigLoads(t *testing.T) {
	for _, dir := range []string{baseDir, singleClusterDir, fleetDir, allComponentsDir, helmSingleCluster, helmFleet, helmAllOptions} {
		t.Run(dir, func(t *testing.T) {
			p, objs := layOutNATS(t, dir)
			conf := p.confPath()
			if conf == "" || !p.underMount(conf) {
				t.Fatalf("container args %v name no configuration file inside a mount", p.c.Args)
			}
			opts, err := server.ProcessConfigFile(conf)
			if err != nil {
				t.Fatalf("nats-server rejects the configuration: %v", err)
			}
			if opts.ServerName != p.sts.Name+"-0" {
				t.Errorf("server_name %q, want the pod name %s-0 (KEDA finds the consumer leader by it)", opts.ServerName, p.sts.Name)
			}
			if !opts.JetStream || !p.underMount(opts.StoreDir) {
				t.Errorf("JetStream %v with store_dir %s: want JetStream on a mounted volume", opts.JetStream, opts.StoreDir)
			}
			if dataDir := p.mounts[mountPathOf(p.c, "data")]; dataDir == "" || !strings.HasPrefix(opts.StoreDir, dataDir) {
				t.Errorf("store_dir %s is not on the data volume", opts.StoreDir)
			}
			if opts.PidFile == "" || !p.underMount(opts.PidFile) {
				t.Errorf("pid_file %q must be on a writable mount (the preStop hook signals it)", opts.PidFile)
			}
			if opts.Port != p.port(t, "client") || opts.HTTPPort != p.port(t, "monitor") || opts.Cluster.Port != p.port(t, "cluster") {
				t.Errorf("ports client %d monitor %d cluster %d do not match the container's", opts.Port, opts.HTTPPort, opts.Cluster.Port)
			}
			var want []string
			for i := range int(*p.sts.Spec.Replicas) {
				want = append(want, fmt.Sprintf("nats://%s-%d.%s:%d", p.sts.Name, i, p.sts.Spec.ServiceName, p.port(t, "cluster")))
			}
			var got []string
			for _, r := range opts.Routes {
				got = append(got, r.String())
			}
			if !slices.Equal(got, want) {
				t.Errorf("routes %v, want one per replica %v", got, want)
			}
			if len(opts.Nkeys) != len(p.seeds) || len(opts.Users) != 0 {
				t.Errorf("%d nkey users (%d password users) for %d keys in fleetscan-nats-users", len(opts.Nkeys), len(opts.Users), len(p.seeds))
			}
			for _, u := range opts.Nkeys {
				if u.Permissions == nil || u.Permissions.Publish == nil || u.Permissions.Subscribe == nil {
					t.Errorf("user %s has no publish/subscribe permissions", u.Nkey)
				}
			}
			tlsOn := opts.TLSConfig != nil
			url, _ := envValue(objs, natsClientContainer(t, objs), "FLEETSCAN_NATS_URL")
			if tlsOn != strings.HasPrefix(url, "tls://") {
				t.Errorf("server TLS %v but clients connect to %s", tlsOn, url)
			}
			if shape(dir) == fleetDir && !tlsOn {
				t.Error("the fleet's NATS must require TLS (members connect across networks)")
			}
		})
	}
}

// TestNATSFleetPermissionsMatchBase keeps the fleet's copy of the role
// permissions identical to the base's.
func TestNATSFleetPermissionsMatchBase(t *testing.T) {
	perms := func(dir string) map[string]*server.Permissions {
		p, _ := layOutNATS(t, dir)
		opts, err := server.ProcessConfigFile(p.confPath())
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		byKey := map[string]*server.Permissions{}
		for key, seed := range p.seeds {
			kp, _ := nkeys.FromSeed(seed)
			pub, _ := kp.PublicKey()
			for _, u := range opts.Nkeys {
				if u.Nkey == pub {
					byKey[key] = u.Permissions
				}
			}
		}
		return byKey
	}
	base := perms(baseDir)
	for _, dir := range []string{fleetDir, helmFleet} {
		fleet := perms(dir)
		for key, p := range fleet {
			role := key
			if strings.HasPrefix(key, "member-") {
				role = "dispatcher"
			}
			if fmt.Sprint(p.Publish, p.Subscribe) != fmt.Sprint(base[role].Publish, base[role].Subscribe) {
				t.Errorf("%s user %s: permissions %v %v, want the base's %s role %v %v", dir, key, p.Publish, p.Subscribe, role, base[role].Publish, base[role].Subscribe)
			}
		}
		if len(fleet) != len(base)+2 {
			t.Errorf("%s has %d users, want the base's %d plus the 2 members", dir, len(fleet), len(base))
		}
	}
}

func mountPathOf(c corev1.Container, volume string) string {
	for _, m := range c.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

// natsClientContainer is a container that connects to NATS (all of them
// share the settings in fleetscan-common).
func natsClientContainer(t *testing.T, objs []object) corev1.Container {
	t.Helper()
	for _, p := range natsClientPods(objs) {
		for _, c := range containers(p.Spec) {
			if _, ok := envValue(objs, c, "FLEETSCAN_NATS_NKEY"); ok {
				return c
			}
		}
	}
	t.Fatal("no NATS client container")
	return corev1.Container{}
}

// runNATS starts a server with the pod's configuration in this process:
// the same users, permissions, JetStream and TLS settings, on loopback
// ports, without the routes to the other (absent) nodes.
func runNATS(t *testing.T, p *natsPod) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(p.confPath())
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.Cluster, opts.Routes = server.ClusterOpts{}, nil
	opts.NoSigs, opts.NoLog = true, true
	p.tls = opts.TLSConfig != nil
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("start nats-server with the rendered configuration: %v", err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatal("nats-server did not become ready")
	}
	return s
}

// client is one component's connection, made the way the binaries make it
// (internal/natsconn with an nkey seed file and, with TLS, the CA bundle), with
// the server's asynchronous permission errors collected.
type client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	res  *topology.Resources
	st   *store.Store
	mu   sync.Mutex
	errs []error
}

func (c *client) resetErrors() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = nil
}

func (c *client) asyncErrors() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.errs)
}

// violation waits for a permission violation naming subject (a prefix).
func (c *client) violation(subject string) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, err := range c.asyncErrors() {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subject) {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func connectAs(t *testing.T, s *server.Server, p *natsPod, key string) *client {
	t.Helper()
	seed, ok := p.seeds[key]
	if !ok {
		t.Fatalf("no nkey %q in fleetscan-nats-users", key)
	}
	cfg := natsconn.Defaults("fleetscan-" + key)
	u, _ := url.Parse(s.ClientURL())
	cfg.URLs = "nats://" + u.Host
	cfg.NKey = filepath.Join(t.TempDir(), "nkey")
	if err := os.WriteFile(cfg.NKey, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if p.tls {
		cfg.URLs = "tls://" + u.Host
		cfg.TLSCA = filepath.Join(t.TempDir(), "ca.crt")
		if err := os.WriteFile(cfg.TLSCA, p.caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &client{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(ctx, cfg, zaptest.NewLogger(t), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.errs = append(c.errs, err)
		c.mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("connect as %s: %v", key, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	// Every binary lays out the topology at start-up.
	if c.res, err = topology.Ensure(ctx, c.js, topology.Defaults()); err != nil {
		t.Fatalf("%s: topology.Ensure: %v", key, err)
	}
	c.st = store.New(c.js, c.res)
	return c
}

// TestNATSRolePermissions runs the rendered NATS configuration and has each
// component do its job with fleetscan's own packages (internal/queue, internal/store,
// internal/topology) under its own nkey — and fail, with a permission violation,
// at what its role may not do.
func mustPkgStore(t *testing.T, res *topology.Resources) *pkgindex.Store {
	t.Helper()
	s, err := pkgindex.NewStore(res, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNATSRolePermissions(t *testing.T) {
	p, _ := layOutNATS(t, baseDir)
	s := runNATS(t, p)
	now := time.Now().UTC().Truncate(time.Second)
	key := contract.ImageKey{Digest: "sha256:" + strings.Repeat("ab", 32), Platform: contract.Platform{OS: "linux", Architecture: "amd64"}}
	job := contract.NewScanJob("run-1", "2026-01-02", key, "registry.example/app@"+key.Digest, nil, now)
	inv := contract.Inventory{RunID: "run-1", Cycle: "2026-01-02", Cluster: "main", CollectedAt: now, Pods: 1, Entries: []contract.InventoryEntry{{
		Namespace: "default", Pod: "app-1", Container: "app", ContainerKind: contract.ContainerRegular, Image: "registry.example/app:1",
		Digest: key.Digest, Platform: key.Platform, Resolution: contract.ResolvedStatus, Workload: contract.Workload{Kind: "Deployment", Name: "app"},
	}}}
	manifest := contract.RunManifest{RunID: "run-1", Cycle: "2026-01-02", CreatedAt: now, Clusters: []contract.ClusterStatus{{Name: "main", OK: true, Pods: 1, Containers: 1}}, Expected: []contract.ImageKey{key}}
	result := contract.ScanResult{RunID: "run-1", Cycle: "2026-01-02", ImageKey: key, Status: contract.StatusScanned, CompletedAt: now, Findings: []contract.Finding{}}
	identity := contract.ScannerIdentity{Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0"},
		DB: contract.DBInfo{Version: 2, UpdatedAt: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour)}, Worker: "w-1", PublishedAt: now}

	packages := contract.ImagePackages{ImageKey: key, AnalyzedAt: now, Packages: []contract.Package{
		{Name: "musl", Version: "1.2.4-r0", PURL: "pkg:apk/alpine/musl@1.2.4-r0", Type: "alpine", Class: contract.ClassOSPackages}}}

	ctx := func() context.Context {
		c, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		t.Cleanup(cancel)
		return c
	}
	// denied runs op, which the role may not do: it must fail with a
	// permission violation on subject. op's context is cancelled as soon as
	// the violation arrives (a denied publish otherwise waits for its ack
	// until the deadline).
	denied := func(t *testing.T, c *client, what, subject string, op func(context.Context) error) {
		t.Helper()
		c.resetErrors()
		opCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		seen := make(chan bool, 1)
		go func() {
			v := c.violation(subject)
			seen <- v
			if v {
				cancel()
			}
		}()
		err := op(opCtx)
		if err == nil {
			t.Errorf("%s succeeded; its role must not allow it", what)
		} else if !<-seen {
			t.Errorf("%s failed (%v), but not with a permission violation on %s", what, err, subject)
		}
	}
	noViolations := func(t *testing.T, c *client) {
		t.Helper()
		for _, err := range c.asyncErrors() {
			t.Errorf("asynchronous error while doing the role's work: %v", err)
		}
	}

	t.Run("dispatcher", func(t *testing.T) {
		c := connectAs(t, s, p, "dispatcher")
		st, err := queue.NewPublisher(c.js).Publish(ctx(), []contract.ScanJob{job})
		if err != nil || st.Stored != 1 {
			t.Fatalf("publish job: %+v %v", st, err)
		}
		if err := c.st.PutInventory(ctx(), inv); err != nil {
			t.Errorf("put inventory: %v", err)
		}
		if err := c.st.PutManifest(ctx(), manifest); err != nil {
			t.Errorf("put manifest: %v", err)
		}
		noViolations(t, c)
		denied(t, c, "writing a result", "fleetscan.results.", func(ctx context.Context) error { return c.st.PutResult(ctx, result) })
		denied(t, c, "writing a package record", "fleetscan.packages.", func(ctx context.Context) error {
			return mustPkgStore(t, c.res).PutPackages(ctx, packages)
		})
		denied(t, c, "deleting the jobs stream", "$JS.API.STREAM.DELETE.", func(ctx context.Context) error { return c.js.DeleteStream(ctx, topology.JobsStream) })
	})

	t.Run("worker", func(t *testing.T) {
		c := connectAs(t, s, p, "worker")
		// The advisory subscription queue.WatchExhausted makes.
		w, err := queue.WatchExhausted(c.nc, c.res.Jobs, c.st, zaptest.NewLogger(t))
		if err != nil {
			t.Fatalf("watch exhausted jobs: %v", err)
		}
		t.Cleanup(func() { _ = w.Stop() })
		batch, err := c.res.Workers.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		var got int
		for msg := range batch.Messages() {
			got++
			if err := msg.InProgress(); err != nil {
				t.Errorf("in-progress heartbeat: %v", err)
			}
			if err := msg.DoubleAck(ctx()); err != nil {
				t.Errorf("ack: %v", err)
			}
		}
		if got != 1 {
			t.Fatalf("fetched %d jobs, want 1 (%v)", got, batch.Error())
		}
		if err := c.st.PutResult(ctx(), result); err != nil {
			t.Errorf("put result: %v", err)
		}
		c.st.InlineLimit = 1 // claim check: the result goes to the object store
		if err := c.st.RecordFailure(ctx(), job, contract.FailureTimeout, "scan timed out", 5); err != nil {
			t.Errorf("record failure (claim check): %v", err)
		}
		c.st.InlineLimit = store.DefaultInlineLimit
		if _, err := c.st.Result(ctx(), key); err != nil {
			t.Errorf("read result: %v", err)
		}
		// The fleet-wide layer cache: entries, large entries, leases.
		if _, err := c.res.LayerCache.Put(ctx(), "blob.sha256-00", []byte("{}")); err != nil {
			t.Errorf("write a layer-cache entry: %v", err)
		}
		if _, err := c.res.LayerObjects.PutBytes(ctx(), "blob.sha256-00", []byte("{}")); err != nil {
			t.Errorf("write a large layer-cache entry: %v", err)
		}
		if _, err := c.res.LayerLeases.Create(ctx(), "sha256-00", []byte("worker"), jetstream.KeyTTL(time.Minute)); err != nil {
			t.Errorf("take a layer lease: %v", err)
		}
		if err := c.st.PutScannerIdentity(ctx(), identity); err != nil {
			t.Errorf("publish the scanner identity: %v", err)
		}
		// The image's package record, inline and claim-checked.
		pkgs := mustPkgStore(t, c.res)
		if err := pkgs.PutPackages(ctx(), packages); err != nil {
			t.Errorf("store a package record: %v", err)
		}
		pkgs.InlineLimit = 1
		if err := pkgs.PutPackages(ctx(), packages); err != nil {
			t.Errorf("store a large package record: %v", err)
		}
		noViolations(t, c)
		denied(t, c, "publishing a job", "fleetscan.jobs.", func(ctx context.Context) error {
			_, err := queue.NewPublisher(c.js).Publish(ctx, []contract.ScanJob{job})
			return err
		})
		denied(t, c, "writing an inventory", "$O.fleetscan-inventories.", func(ctx context.Context) error { return c.st.PutInventory(ctx, inv) })
		denied(t, c, "writing an SLA date", "$KV.fleetscan-firstseen.", func(ctx context.Context) error {
			_, err := c.res.FirstSeen.Put(ctx, "k", []byte("2026-01-02"))
			return err
		})
		// A worker parses untrusted images: it must not be able to rewrite
		// the exploit feeds every deadline depends on.
		denied(t, c, "writing a feed", "$O.fleetscan-feeds.", func(ctx context.Context) error {
			_, err := c.res.Feeds.PutBytes(ctx, "kev", []byte(`{}`))
			return err
		})
		denied(t, c, "deleting the results stream", "$JS.API.STREAM.DELETE.", func(ctx context.Context) error { return c.js.DeleteStream(ctx, topology.ResultsStream) })
	})

	// The DB updater publishes the exploit feeds it validated, and nothing
	// else.
	t.Run("updater", func(t *testing.T) {
		c := connectAs(t, s, p, "updater")
		kevFile, epssFile := feedstest.WriteFiles(t, t.TempDir())
		cfg := feeds.Defaults()
		cfg.KEVURL, cfg.EPSSURL = kevFile, epssFile
		cache := t.TempDir()
		if res, err := feeds.Update(ctx(), cfg, cache, zaptest.NewLogger(t)); err != nil || res.Err() != nil {
			t.Fatalf("update feeds: %v %v", err, res.Err())
		}
		if _, err := feeds.Publish(ctx(), c.res.Feeds, feeds.DirSource(cache), zaptest.NewLogger(t)); err != nil {
			t.Errorf("publish feeds: %v", err)
		}
		noViolations(t, c)
		denied(t, c, "writing a result", "fleetscan.results.", func(ctx context.Context) error { return c.st.PutResult(ctx, result) })
		denied(t, c, "writing an SLA date", "$KV.fleetscan-firstseen.", func(ctx context.Context) error {
			_, err := c.res.FirstSeen.Put(ctx, "k", []byte("2026-01-02"))
			return err
		})
		denied(t, c, "publishing a job", "fleetscan.jobs.", func(ctx context.Context) error {
			_, err := queue.NewPublisher(c.js).Publish(ctx, []contract.ScanJob{job})
			return err
		})
	})

	// After the workers: the dispatcher reads their identity and the stored
	// results' fingerprints (headers only) to skip current images.
	t.Run("dispatcher reuse", func(t *testing.T) {
		c := connectAs(t, s, p, "dispatcher")
		r, err := c.st.Reusable(ctx(), []contract.ImageKey{key}, now)
		if err != nil || r.Skipped != "" || r.Identity.Worker != "w-1" {
			t.Errorf("reusable: %+v %v", r, err)
		}
		noViolations(t, c)
		denied(t, c, "publishing a scanner identity", "$KV.fleetscan-scanner.", func(ctx context.Context) error { return c.st.PutScannerIdentity(ctx, identity) })
	})

	t.Run("reporter", func(t *testing.T) {
		c := connectAs(t, s, p, "reporter")
		runs, err := c.st.Runs(ctx())
		if err != nil || len(runs) != 1 {
			t.Errorf("list runs: %v %v", runs, err)
		}
		if _, err := c.st.Manifest(ctx(), "run-1"); err != nil {
			t.Errorf("read manifest: %v", err)
		}
		if _, err := c.st.Clusters(ctx()); err != nil {
			t.Errorf("list clusters: %v", err)
		}
		if _, err := c.st.Inventory(ctx(), "main"); err != nil {
			t.Errorf("read inventory: %v", err)
		}
		r, err := c.st.Result(ctx(), key)
		if err != nil || r.Status != contract.StatusFailed {
			t.Errorf("read the claim-checked result: %+v %v", r.Status, err)
		}
		var n int
		if err := c.st.EachResult(ctx(), func(contract.ScanResult) error { n++; return nil }); err != nil || n != 1 {
			t.Errorf("each result: %d %v", n, err)
		}
		if _, err := c.res.FirstSeen.Put(ctx(), "k", []byte("2026-01-02")); err != nil {
			t.Errorf("write SLA first-seen date: %v", err)
		}
		observeAsReporter(t, c.res)
		// The package index: read the records (one claim-checked), rebuild
		// one from the layer cache, store the compacted snapshot.
		pkgs := mustPkgStore(t, c.res)
		ix, _, err := pkgs.Load(ctx())
		if err != nil || ix.Len() != 1 {
			t.Errorf("load the package index: %v (%d images)", err, ix.Len())
		}
		if _, err := c.res.LayerCache.Get(ctx(), "blob.sha256-00"); err != nil {
			t.Errorf("read the layer cache: %v", err)
		}
		if err := pkgs.PutPackages(ctx(), packages); err != nil {
			t.Errorf("store a rebuilt package record: %v", err)
		}
		if ix != nil {
			if err := pkgs.Save(ctx(), ix); err != nil {
				t.Errorf("store the package index snapshot: %v", err)
			}
		}
		// The feeds the updater published.
		enr, err := feeds.Load(ctx(), feeds.ObjectStoreSource(c.res.Feeds), feeds.DefaultMaxAge)
		if err != nil || !enr.Status(feeds.KEV).Loaded || !enr.Status(feeds.EPSS).Loaded {
			t.Errorf("read the feeds: %+v %v", enr.Statuses(), err)
		}
		noViolations(t, c)
		denied(t, c, "writing a feed", "$O.fleetscan-feeds.", func(ctx context.Context) error {
			_, err := c.res.Feeds.PutBytes(ctx, "epss", []byte("x"))
			return err
		})
		denied(t, c, "writing a result", "fleetscan.results.", func(ctx context.Context) error { return c.st.PutResult(ctx, result) })
		denied(t, c, "publishing a job", "fleetscan.jobs.", func(ctx context.Context) error {
			_, err := queue.NewPublisher(c.js).Publish(ctx, []contract.ScanJob{job})
			return err
		})
	})
}

// TestNATSFleetMemberOverTLS: in the fleet, a member cluster's dispatcher
// connects over TLS with its own nkey and may publish jobs and its
// inventory, but not results.
func TestNATSFleetMemberOverTLS(t *testing.T) {
	for _, dir := range []string{fleetDir, helmFleet} {
		t.Run(dir, func(t *testing.T) { testNATSFleetMemberOverTLS(t, dir) })
	}
}

func testNATSFleetMemberOverTLS(t *testing.T, dir string) {
	p, _ := layOutNATS(t, dir)
	s := runNATS(t, p)
	if !p.tls {
		t.Fatal("the fleet's NATS does not require TLS")
	}
	c := connectAs(t, s, p, "member-a")
	if !c.nc.TLSRequired() {
		t.Error("the connection is not TLS")
	}
	now := time.Now().UTC()
	key := contract.ImageKey{Digest: "sha256:" + strings.Repeat("cd", 32), Platform: contract.Platform{OS: "linux", Architecture: "arm64"}}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := queue.NewPublisher(c.js).Publish(ctx, []contract.ScanJob{contract.NewScanJob("run-m", "2026-01-02", key, "r.example/x@"+key.Digest, nil, now)}); err != nil {
		t.Errorf("member publishes a job: %v", err)
	}
	if err := c.st.PutInventory(ctx, contract.Inventory{RunID: "run-m", Cycle: "2026-01-02", Cluster: "member-a", CollectedAt: now}); err != nil {
		t.Errorf("member stores its inventory: %v", err)
	}
	c.resetErrors()
	rctx, rcancel := context.WithTimeout(t.Context(), time.Second)
	defer rcancel()
	err := c.st.PutResult(rctx, contract.ScanResult{RunID: "run-m", Cycle: "2026-01-02", ImageKey: key, Status: contract.StatusScanned, CompletedAt: now, Findings: []contract.Finding{}})
	if err == nil || !c.violation("fleetscan.results.") {
		t.Errorf("member writes a result: %v, want a permission violation", err)
	}
}

// writeServerCert writes a CA and a server certificate for 127.0.0.1 as
// cert-manager lays them out in a Secret (ca.crt, tls.crt, tls.key) and
// returns the CA in PEM.
func writeServerCert(t *testing.T, dir string) []byte {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleetscan test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "fleetscan-nats"},
		DNSNames: []string{"fleetscan-nats", "localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for name, data := range map[string][]byte{
		"ca.crt":  caPEM,
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caPEM
}

// observeAsReporter runs the first-seen clock twice: the first observation
// writes a record, the second reads the bucket back (an ordered consumer
// on its stream) and finds it.
func observeAsReporter(t *testing.T, res *topology.Resources) {
	t.Helper()
	id := sla.Identity{Repository: "registry.example/app", VulnerabilityID: "CVE-2026-0001", PkgName: "openssl"}
	clock := sla.NewClock(res.FirstSeen, res.FirstSeenStream, zaptest.NewLogger(t))
	for i, want := range []sla.Change{sla.ChangeNew, sla.ChangeStillOpen} {
		obs := sla.Observation{AsOf: time.Date(2026, 1, 2+i, 0, 0, 0, 0, time.UTC),
			Sightings: slices.Values([]sla.Sighting{{Identity: id, Severity: "HIGH"}})}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		led, err := clock.Observe(ctx, obs, true)
		cancel()
		if err != nil {
			t.Errorf("observation %d: %v", i+1, err)
			return
		}
		if _, got, _ := led.Lookup(id); got != want {
			t.Errorf("observation %d: change %q, want %q", i+1, got, want)
		}
	}
}
