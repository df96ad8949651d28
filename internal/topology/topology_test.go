package topology_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetscan/fleetscan/internal/natsembed/natstest"
	"github.com/fleetscan/fleetscan/internal/topology"
)

func TestEnsureIsIdempotentAndAppliesChanges(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	// Second call with the same settings changes nothing and does not fail.
	if _, err := topology.Ensure(ctx, env.JS, env.Topo); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	cfg := env.Topo
	cfg.AckWait = 45 * time.Second
	cfg.MaxDeliver = 9
	res, err := topology.Ensure(ctx, env.JS, cfg)
	if err != nil {
		t.Fatalf("Ensure with new settings: %v", err)
	}
	info, err := res.Workers.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 45*time.Second || info.Config.MaxDeliver != 9 || info.Config.AckPolicy != jetstream.AckExplicitPolicy {
		t.Fatalf("consumer config not updated: %+v", info.Config)
	}
	jobs, err := res.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if jobs.Config.Retention != jetstream.WorkQueuePolicy || jobs.Config.Duplicates != 24*time.Hour {
		t.Fatalf("jobs stream config: %+v", jobs.Config)
	}
	results, err := res.Results.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if results.Config.MaxMsgsPerSubject != 1 {
		t.Fatalf("results stream keeps %d per subject", results.Config.MaxMsgsPerSubject)
	}
	for _, b := range []string{topology.ResultBlobsBucket, topology.InventoriesBucket, topology.RunsBucket, topology.LayerObjectsBucket, topology.FeedsBucket} {
		if _, err := env.JS.ObjectStore(ctx, b); err != nil {
			t.Errorf("object store %s: %v", b, err)
		}
	}
	if st, err := res.Feeds.Status(ctx); err != nil {
		t.Errorf("object store %s: %v", topology.FeedsBucket, err)
	} else if st.TTL() != 0 {
		t.Errorf("object store %s: TTL %s: feeds are replaced, never expired", topology.FeedsBucket, st.TTL())
	}
	for _, b := range []string{topology.LayerCacheBucket, topology.LayerLeasesBucket, topology.ScannerBucket, topology.FirstSeenBucket} {
		kv, err := env.JS.KeyValue(ctx, b)
		if err != nil {
			t.Errorf("KV %s: %v", b, err)
			continue
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Errorf("KV %s status: %v", b, err)
			continue
		}
		if b == topology.LayerCacheBucket && st.TTL() != env.Topo.LayerCacheTTL {
			t.Errorf("KV %s TTL %s, want %s", b, st.TTL(), env.Topo.LayerCacheTTL)
		}
		if (b == topology.LayerLeasesBucket || b == topology.FirstSeenBucket) && st.LimitMarkerTTL() == 0 {
			t.Errorf("KV %s has no LimitMarkerTTL: per-key lease TTLs and purge-marker TTLs need it", b)
		}
	}
}

// TestEnsureGivesAnOldFirstSeenBucketMarkerTTLs: a first-seen bucket
// created before it had limit markers gains them on Ensure, keeps its
// records, and then takes purges whose markers carry a TTL.
func TestEnsureGivesAnOldFirstSeenBucketMarkerTTLs(t *testing.T) {
	env := natstest.Start(t)
	ctx := t.Context()
	if err := env.JS.DeleteKeyValue(ctx, topology.FirstSeenBucket); err != nil {
		t.Fatal(err)
	}
	old := env.Topo.FirstSeenConfig()
	old.LimitMarkerTTL = 0
	kv, err := env.JS.CreateKeyValue(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := kv.Put(ctx, "k", []byte("v"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(ctx, "k", jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute)); err == nil {
		t.Fatal("old bucket took a purge with a TTL; the test does not model an old bucket")
	}
	res, err := topology.Ensure(ctx, env.JS, env.Topo)
	if err != nil {
		t.Fatalf("Ensure over the old bucket: %v", err)
	}
	st, err := res.FirstSeen.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.LimitMarkerTTL() != time.Minute || st.Values() != 1 {
		t.Fatalf("after Ensure: LimitMarkerTTL %s, %d values; want 1m0s, 1", st.LimitMarkerTTL(), st.Values())
	}
	if err := res.FirstSeen.Purge(ctx, "k", jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute)); err != nil {
		t.Fatalf("purge with a TTL after Ensure: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mut  func(*topology.Config)
		ok   bool
	}{
		{"defaults", func(*topology.Config) {}, true},
		{"three replicas", func(c *topology.Config) { c.Replicas = 3 }, true},
		{"zero replicas", func(c *topology.Config) { c.Replicas = 0 }, false},
		{"tiny ack wait", func(c *topology.Config) { c.AckWait = time.Millisecond }, false},
		{"no deliveries", func(c *topology.Config) { c.MaxDeliver = 0 }, false},
		{"window longer than max age", func(c *topology.Config) { c.DuplicateWindow = 30 * 24 * time.Hour }, false},
		{"layer cache TTL under a minute", func(c *topology.Config) { c.LayerCacheTTL = time.Second }, false},
	}
	for _, tt := range tests {
		c := topology.Defaults()
		tt.mut(&c)
		if err := c.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v", tt.name, err)
		}
	}
}
