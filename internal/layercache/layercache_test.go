package layercache_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

const (
	blobA = "sha256:aaaa000000000000000000000000000000000000000000000000000000000001"
	blobB = "sha256:bbbb000000000000000000000000000000000000000000000000000000000002"
	artID = "sha256:cccc000000000000000000000000000000000000000000000000000000000003"
)

func newCache(t *testing.T, env *natstest.Env, mutate func(*layercache.Config)) *layercache.Cache {
	t.Helper()
	cfg := layercache.Config{TTL: env.Topo.LayerCacheTTL, LeaseTTL: 2 * time.Second, PollInterval: 20 * time.Millisecond, Owner: t.Name()}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := layercache.New(env.Res, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// second connects another client to the same server, as another worker
// process would, with its own view of the resources.
func second(t *testing.T, env *natstest.Env) (*nats.Conn, *topology.Resources) {
	t.Helper()
	nc, err := nats.Connect(env.Server.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := topology.Ensure(ctx, js, env.Topo)
	if err != nil {
		t.Fatal(err)
	}
	return nc, res
}

func blob(pkgs ...string) ftypes.BlobInfo {
	b := ftypes.BlobInfo{SchemaVersion: ftypes.BlobJSONSchemaVersion, Digest: "sha256:layer", DiffID: "sha256:diff",
		OS: ftypes.OS{Family: "alpine", Name: "3.18.4"}}
	var ps ftypes.Packages
	for _, p := range pkgs {
		ps = append(ps, ftypes.Package{Name: p, Version: "1.0-r0"})
	}
	b.PackageInfos = []ftypes.PackageInfo{{FilePath: "lib/apk/db/installed", Packages: ps}}
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEntriesRoundTripAsPrivateCopies(t *testing.T) {
	cases := []struct {
		name   string
		inline int
	}{
		{"inline in KV", 0},
		{"large, in the object store", 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := natstest.Start(t)
			c := newCache(t, env, func(cfg *layercache.Config) { cfg.InlineLimit = tc.inline })
			ctx := ctxT(t)
			if err := c.PutBlob(ctx, blobA, blob("musl", "busybox")); err != nil {
				t.Fatal(err)
			}
			if err := c.PutArtifact(ctx, artID, ftypes.ArtifactInfo{SchemaVersion: ftypes.ArtifactJSONSchemaVersion, Architecture: "amd64"}); err != nil {
				t.Fatal(err)
			}
			got, err := c.GetBlob(ctx, blobA)
			if err != nil {
				t.Fatal(err)
			}
			// Trivy's applier mutates what it reads: that must not reach
			// the next reader.
			got.PackageInfos[0].Packages[0].Name = "mutated"
			got.PackageInfos = append(got.PackageInfos, ftypes.PackageInfo{FilePath: "x"})
			again, err := c.GetBlob(ctx, blobA)
			if err != nil {
				t.Fatal(err)
			}
			if n := again.PackageInfos[0].Packages[0].Name; n != "musl" || len(again.PackageInfos) != 1 {
				t.Fatalf("second read sees the first reader's changes: %q, %d package infos", n, len(again.PackageInfos))
			}
			a, err := c.GetArtifact(ctx, artID)
			if err != nil || a.Architecture != "amd64" {
				t.Fatalf("GetArtifact = %+v, %v", a, err)
			}
			objs := 0
			if infos, err := env.Res.LayerObjects.List(ctx); err == nil {
				objs = len(infos)
			} else if !errors.Is(err, jetstream.ErrNoObjectsFound) {
				t.Fatal(err)
			}
			if wantObjs := map[bool]int{true: 2, false: 0}[tc.inline > 0]; objs != wantObjs {
				t.Errorf("%d objects in %s, want %d", objs, topology.LayerObjectsBucket, wantObjs)
			}
			if err := c.DeleteBlobs(ctx, []string{blobA}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.GetBlob(ctx, blobA); !errors.Is(err, layercache.ErrNotFound) {
				t.Fatalf("GetBlob after DeleteBlobs = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestMissingBlobs(t *testing.T) {
	env := natstest.Start(t)
	c := newCache(t, env, nil)
	ctx := ctxT(t)
	old := blob("musl")
	old.SchemaVersion = ftypes.BlobJSONSchemaVersion - 1
	if err := c.PutBlob(ctx, blobA, blob("musl")); err != nil {
		t.Fatal(err)
	}
	if err := c.PutBlob(ctx, blobB, old); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name            string
		blobs           []string
		wantArtifact    bool
		wantMissing     []string
		putArtifactFrom bool
	}{
		{"present and old-schema blobs, no artifact", []string{blobA, blobB}, true, []string{blobB}, false},
		{"artifact stored", []string{blobA}, false, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.putArtifactFrom {
				if err := c.PutArtifact(ctx, artID, ftypes.ArtifactInfo{SchemaVersion: ftypes.ArtifactJSONSchemaVersion}); err != nil {
					t.Fatal(err)
				}
			}
			ma, missing, err := c.MissingBlobs(ctx, artID, tc.blobs)
			if err != nil {
				t.Fatal(err)
			}
			if ma != tc.wantArtifact || strings.Join(missing, ",") != strings.Join(tc.wantMissing, ",") {
				t.Errorf("MissingBlobs = %v %v, want %v %v", ma, missing, tc.wantArtifact, tc.wantMissing)
			}
		})
	}
}

func TestScopeLeasesMissingLayers(t *testing.T) {
	env := natstest.Start(t)
	_, res2 := second(t, env)
	a := newCache(t, env, nil)
	b, err := layercache.New(res2, layercache.Config{TTL: env.Topo.LayerCacheTTL, LeaseTTL: time.Minute, PollInterval: 20 * time.Millisecond, Owner: "b"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	sa := a.Scope()
	_, missing, err := sa.MissingBlobs(ctx, artID, []string{blobA})
	if err != nil || len(missing) != 1 {
		t.Fatalf("first scan: missing %v, %v; want the layer", missing, err)
	}
	// The other worker needs the same layer: it waits until the first
	// stores it, then finds it present instead of downloading it.
	type out struct {
		missing []string
		err     error
	}
	done := make(chan out, 1)
	sb := b.Scope()
	go func() {
		_, m, err := sb.MissingBlobs(ctx, artID, []string{blobA, blobB})
		done <- out{m, err}
	}()
	select {
	case o := <-done:
		t.Fatalf("second scan did not wait for the leased layer: %v %v", o.missing, o.err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := sa.PutBlob(ctx, blobA, blob("musl")); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || strings.Join(o.missing, ",") != blobB {
		t.Fatalf("second scan: missing %v, %v; want only %s", o.missing, o.err, blobB)
	}
	if sb.Waited() != 1 || b.Stats().Waited != 1 {
		t.Errorf("waited: scope %d, cache %d; want 1", sb.Waited(), b.Stats().Waited)
	}
	got, err := sb.GetBlob(ctx, blobA)
	if err != nil || got.PackageInfos[0].Packages[0].Name != "musl" {
		t.Fatalf("GetBlob = %+v, %v", got, err)
	}
	// A failed scan releases what it still holds: blobB is free at once.
	if err := sb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	_, missing, err = a.Scope().MissingBlobs(ctx, artID, []string{blobB})
	if err != nil || len(missing) != 1 {
		t.Fatalf("after release: missing %v, %v; want %s leased at once", missing, err, blobB)
	}
}

func TestCrashedHolderLeaseExpires(t *testing.T) {
	env := natstest.Start(t)
	nc2, res2 := second(t, env)
	const leaseTTL = 2 * time.Second
	crashed, err := layercache.New(res2, layercache.Config{TTL: env.Topo.LayerCacheTTL, LeaseTTL: leaseTTL, Owner: "crashed"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, missing, err := crashed.Scope().MissingBlobs(ctx, artID, []string{blobA}); err != nil || len(missing) != 1 {
		t.Fatalf("holder: missing %v, %v", missing, err)
	}
	leasedAt := time.Now()
	nc2.Close() // the holder dies without releasing or storing the layer

	c := newCache(t, env, nil)
	_, missing, err := c.Scope().MissingBlobs(ctx, artID, []string{blobA})
	if err != nil || len(missing) != 1 {
		t.Fatalf("survivor: missing %v, %v; want to take the layer over", missing, err)
	}
	if waited := time.Since(leasedAt); waited < leaseTTL-200*time.Millisecond {
		t.Errorf("took the layer after %s, before the holder's %s lease ended", waited, leaseTTL)
	}
	if c.Stats().Waited != 1 {
		t.Errorf("waited for %d layers, want 1", c.Stats().Waited)
	}
}

func TestReadRefreshesOldEntries(t *testing.T) {
	env := natstest.Start(t)
	c := newCache(t, env, nil)
	ctx := ctxT(t)
	if err := c.PutBlob(ctx, blobA, blob("musl")); err != nil {
		t.Fatal(err)
	}
	e1, err := env.Res.LayerCache.Get(ctx, "blob."+strings.Replace(blobA, ":", ".", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetBlob(ctx, blobA); err != nil {
		t.Fatal(err)
	}
	if c.Stats().Refreshed != 0 {
		t.Fatalf("a fresh entry was refreshed")
	}
	c.Now = func() time.Time { return time.Now().Add(env.Topo.LayerCacheTTL/2 + time.Minute) }
	if _, err := c.GetBlob(ctx, blobA); err != nil {
		t.Fatal(err)
	}
	e2, err := env.Res.LayerCache.Get(ctx, "blob."+strings.Replace(blobA, ":", ".", 1))
	if err != nil {
		t.Fatal(err)
	}
	if c.Stats().Refreshed != 1 || e2.Revision() <= e1.Revision() {
		t.Errorf("refreshed %d, revision %d → %d; want the entry written again", c.Stats().Refreshed, e1.Revision(), e2.Revision())
	}
}

func TestAnalysisRecord(t *testing.T) {
	env := natstest.Start(t)
	c := newCache(t, env, nil)
	ctx := ctxT(t)
	key := contract.ImageKey{Digest: "sha256:" + strings.Repeat("d", 64), Platform: contract.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}
	if _, ok, err := c.Analysis(ctx, key); ok || err != nil {
		t.Fatalf("Analysis of an unknown key = %v, %v", ok, err)
	}
	want := layercache.Analysis{Reference: "r.example/app@" + key.Digest, ArtifactID: artID, BlobIDs: []string{blobA, blobB},
		Scanner: contract.ScannerInfo{Name: "trivy", Version: "0.74.0", Options: "o"}, StoredAt: time.Now().UTC().Truncate(time.Second)}
	if err := c.PutAnalysis(ctx, key, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Analysis(ctx, key)
	if err != nil || !ok || got.Reference != want.Reference || strings.Join(got.BlobIDs, ",") != strings.Join(want.BlobIDs, ",") ||
		got.Scanner != want.Scanner || !got.StoredAt.Equal(want.StoredAt) {
		t.Fatalf("Analysis = %+v %v %v, want %+v", got, ok, err, want)
	}
}

func TestNewRequiresResources(t *testing.T) {
	if _, err := layercache.New(&topology.Resources{}, layercache.Config{TTL: time.Hour, LeaseTTL: time.Minute}, nil); err == nil {
		t.Fatal("New without the layer-cache resources succeeded")
	}
}

// TestLiveHolderRenewsItsLease: an analysis outliving its lease TTL keeps
// the layer — the second scan waits past several TTLs instead of taking it
// over — and gets it as soon as the holder stores it.
//
// The TTL is 2 s (renewed every 667 ms): a loaded machine may delay a
// renewal by over a second without losing the lease.
func TestLiveHolderRenewsItsLease(t *testing.T) {
	env := natstest.Start(t)
	_, res2 := second(t, env)
	const leaseTTL = 2 * time.Second
	holder := newCache(t, env, func(c *layercache.Config) { c.LeaseTTL = leaseTTL })
	other, err := layercache.New(res2, layercache.Config{TTL: env.Topo.LayerCacheTTL, LeaseTTL: leaseTTL, PollInterval: 20 * time.Millisecond, Owner: "other"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	sh := holder.Scope()
	if _, missing, err := sh.MissingBlobs(ctx, artID, []string{blobA}); err != nil || len(missing) != 1 {
		t.Fatalf("holder: missing %v, %v", missing, err)
	}
	type out struct {
		missing []string
		err     error
	}
	done := make(chan out, 1)
	go func() {
		_, m, err := other.Scope().MissingBlobs(ctx, artID, []string{blobA})
		done <- out{m, err}
	}()
	select {
	case o := <-done:
		t.Fatalf("the other scan took the layer while its holder was alive: %v %v", o.missing, o.err)
	case <-time.After(3 * leaseTTL):
	}
	if holder.Stats().Renewed < 3 {
		t.Errorf("renewed %d times in 3 lease TTLs (one due every third), want at least 3", holder.Stats().Renewed)
	}
	if err := sh.PutBlob(ctx, blobA, blob("musl")); err != nil {
		t.Fatal(err)
	}
	o := <-done
	if o.err != nil || len(o.missing) != 0 {
		t.Fatalf("after the holder stored the layer: missing %v, %v; want it present", o.missing, o.err)
	}
}
