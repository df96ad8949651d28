// Package topology is the one place that declares every JetStream resource
// fleetscan uses — streams, the workers' consumer, KV buckets and object
// stores — and creates or updates them idempotently. Every binary calls
// Ensure at start-up, so whichever starts first lays the ground and a changed
// setting (replicas, AckWait, ...) is applied on the next start.
package topology

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Names of the JetStream resources. They are part of the deployment contract
// (KEDA's ScaledObject names the stream and consumer).
const (
	// JobsStream holds one message per unique image key per cycle, removed
	// when acknowledged (WorkQueue retention).
	JobsStream = "FLEETSCAN_JOBS"
	// JobsSubjectPrefix: jobs are published to JobsSubjectPrefix + "." + key token.
	JobsSubjectPrefix = "fleetscan.jobs"
	// WorkersConsumer is the durable pull consumer shared by all workers.
	WorkersConsumer = "workers"

	// ResultsStream keeps the latest result per image key
	// (MaxMsgsPerSubject=1) on ResultsSubjectPrefix + "." + key token.
	ResultsStream        = "FLEETSCAN_RESULTS"
	ResultsSubjectPrefix = "fleetscan.results"

	// ResultBlobsBucket is the object store for results too large for one
	// message (claim check).
	ResultBlobsBucket = "fleetscan-result-blobs"
	// InventoriesBucket holds the latest inventory per cluster.
	InventoriesBucket = "fleetscan-inventories"
	// RunsBucket holds run manifests by run id.
	RunsBucket = "fleetscan-runs"
	// FirstSeenBucket is the KV bucket of SLA first-seen dates.
	FirstSeenBucket = "fleetscan-firstseen"
	// TicketsBucket is the KV bucket mapping fleetscan ticket IDs to the
	// issues the reporter keeps in GitHub or Jira (internal/tickets).
	TicketsBucket = "fleetscan-tickets"

	// LayerCacheBucket is the fleet-wide layer-analysis cache (KV): Trivy's
	// artifact and blob entries, and per image key the cache keys of its
	// last analysis. Entries expire after Config.LayerCacheTTL unless used.
	LayerCacheBucket = "fleetscan-layer-cache"
	// LayerObjectsBucket holds layer-cache entries too large for one KV
	// value.
	LayerObjectsBucket = "fleetscan-layer-objects"
	// LayerLeasesBucket holds short leases (per-key TTL) on layers being
	// analysed, so two workers never download the same layer at once.
	LayerLeasesBucket = "fleetscan-layer-leases"

	// PackagesStream keeps the latest package record per image key
	// (MaxMsgsPerSubject=1) on PackagesSubjectPrefix + "." + key token:
	// every package of the image with its PURL and version, written by the
	// worker with the result (internal/pkgindex).
	PackagesStream        = "FLEETSCAN_PACKAGES"
	PackagesSubjectPrefix = "fleetscan.packages"
	// PackageIndexBucket holds the compacted package index (object
	// PackageIndexSnapshot) and package records too large for one message.
	PackageIndexBucket   = "fleetscan-package-index"
	PackageIndexSnapshot = "snapshot"

	// ScannerBucket is the KV bucket holding the workers' scanner identity
	// (ScannerIdentityKey): the scanner, options and DB they scan with.
	ScannerBucket = "fleetscan-scanner"
	// ScannerIdentityKey is the key of the latest published identity.
	ScannerIdentityKey = "identity"

	// FeedsBucket is the object store of the exploit feeds (CISA KEV,
	// FIRST EPSS): one object per feed, the last good copy the updater
	// (`worker db-update --publish-feeds`) validated, read by reporters.
	FeedsBucket = "fleetscan-feeds"
)

// JobSubject is the subject a job for key is published on.
func JobSubject(key contract.ImageKey) string { return JobsSubjectPrefix + "." + key.Token() }

// ResultSubject is the subject the latest result for key lives on.
func ResultSubject(key contract.ImageKey) string { return ResultsSubjectPrefix + "." + key.Token() }

// PackagesSubject is the subject the latest package record of key lives on.
func PackagesSubject(key contract.ImageKey) string {
	return PackagesSubjectPrefix + "." + key.Token()
}

// Config tunes the resources. Defaults() gives production values.
type Config struct {
	// Replicas for every stream, bucket and store: 1 embedded, 3 clustered.
	Replicas int
	// Memory storage instead of file (tests only).
	Memory bool

	// DuplicateWindow is how long the jobs stream remembers Nats-Msg-Ids:
	// at least one scan cycle, so dispatchers of one cycle store a job once.
	DuplicateWindow time.Duration
	// JobMaxAge drops jobs nobody consumed (a fleet with no workers).
	JobMaxAge time.Duration
	// AckWait is how long a delivered job may go without an ack or an
	// InProgress heartbeat before it is redelivered.
	AckWait time.Duration
	// MaxDeliver is the delivery budget of a job.
	MaxDeliver int
	// MaxAckPending bounds jobs in flight across all workers.
	MaxAckPending int

	// ResultMaxAge is how long results are kept (they are reused while the
	// DB version is unchanged).
	ResultMaxAge time.Duration
	// InventoryMaxAge is how long inventories and run manifests are kept.
	InventoryMaxAge time.Duration
	// LayerCacheTTL is how long an unused layer-cache entry is kept (each
	// use refreshes it).
	LayerCacheTTL time.Duration
}

// Defaults returns production settings.
func Defaults() Config {
	return Config{
		Replicas:        1,
		DuplicateWindow: 24 * time.Hour,
		JobMaxAge:       7 * 24 * time.Hour,
		AckWait:         2 * time.Minute,
		MaxDeliver:      5,
		MaxAckPending:   1000,
		ResultMaxAge:    30 * 24 * time.Hour,
		InventoryMaxAge: 30 * 24 * time.Hour,
		LayerCacheTTL:   14 * 24 * time.Hour,
	}
}

// RegisterFlags binds the settings that operators tune.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	fs.IntVar(&c.Replicas, "js-replicas", c.Replicas, "JetStream replicas for streams, buckets and stores (1 single server, 3 cluster)")
	fs.DurationVar(&c.DuplicateWindow, "js-duplicate-window", c.DuplicateWindow, "how long the jobs stream deduplicates a job id (>= one scan cycle)")
	fs.DurationVar(&c.AckWait, "js-ack-wait", c.AckWait, "redeliver a job not acknowledged (or heartbeated) within this time")
	fs.IntVar(&c.MaxDeliver, "js-max-deliver", c.MaxDeliver, "delivery budget of a job before it is recorded as failed")
	fs.DurationVar(&c.LayerCacheTTL, "layer-cache-ttl", c.LayerCacheTTL, "drop a shared layer-analysis cache entry not used for this long (each use refreshes it)")
}

// Validate checks the settings.
func (c Config) Validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("--js-replicas %d: want 1..5", c.Replicas))
	}
	if c.DuplicateWindow <= 0 {
		errs = append(errs, errors.New("--js-duplicate-window must be positive"))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("--js-ack-wait %s: want at least 1s", c.AckWait))
	}
	if c.MaxDeliver < 1 {
		errs = append(errs, fmt.Errorf("--js-max-deliver %d: want at least 1", c.MaxDeliver))
	}
	if c.LayerCacheTTL < time.Minute {
		errs = append(errs, fmt.Errorf("--layer-cache-ttl %s: want at least 1m", c.LayerCacheTTL))
	}
	if c.JobMaxAge > 0 && c.JobMaxAge < c.DuplicateWindow {
		errs = append(errs, fmt.Errorf("job max age %s must be at least the duplicate window %s", c.JobMaxAge, c.DuplicateWindow))
	}
	return errors.Join(errs...)
}

// Resources are handles to the ensured resources.
type Resources struct {
	// JS is the JetStream context they were ensured with.
	JS          jetstream.JetStream
	Jobs        jetstream.Stream
	Workers     jetstream.Consumer
	Results     jetstream.Stream
	ResultBlobs jetstream.ObjectStore
	Inventories jetstream.ObjectStore
	Runs        jetstream.ObjectStore
	FirstSeen   jetstream.KeyValue
	// FirstSeenStream is the first-seen bucket's stream, which the clock
	// reads the records from in batches.
	FirstSeenStream jetstream.Stream
	// LayerCache, LayerObjects and LayerLeases back the fleet-wide
	// layer-analysis cache (internal/layercache).
	LayerCache   jetstream.KeyValue
	LayerObjects jetstream.ObjectStore
	LayerLeases  jetstream.KeyValue
	// Scanner holds the workers' scanner identity.
	Scanner jetstream.KeyValue
	// Packages and PackageIndex back the package index
	// (internal/pkgindex): the latest package record per image key, and
	// the compacted index with the records too large for a message.
	Packages     jetstream.Stream
	PackageIndex jetstream.ObjectStore
	// Feeds holds the KEV and EPSS feeds (internal/feeds).
	Feeds jetstream.ObjectStore
	// Tickets maps ticket IDs to tracker issues (internal/tickets).
	Tickets jetstream.KeyValue
}

func (c Config) storage() jetstream.StorageType {
	if c.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// JobsStreamConfig is the jobs stream's configuration.
func (c Config) JobsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "fleetscan scan jobs: one per unique image digest and platform per cycle",
		Subjects:    []string{JobsSubjectPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Duplicates:  c.DuplicateWindow,
		MaxAge:      c.JobMaxAge,
		Discard:     jetstream.DiscardOld,
	}
}

// WorkersConsumerConfig is the workers' durable pull consumer.
func (c Config) WorkersConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       WorkersConsumer,
		Description:   "fleetscan workers (KEDA scales on num_pending + num_ack_pending)",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: JobsSubjectPrefix + ".>",
		Replicas:      c.Replicas,
	}
}

// ResultsStreamConfig keeps the latest result per key.
func (c Config) ResultsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              ResultsStream,
		Description:       "fleetscan scan results: latest per image digest and platform",
		Subjects:          []string{ResultsSubjectPrefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           c.storage(),
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: 1,
		MaxAge:            c.ResultMaxAge,
		Discard:           jetstream.DiscardOld,
	}
}

// PackagesStreamConfig keeps the latest package record per key, as long
// as results are kept; records are compressed by their writer.
func (c Config) PackagesStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              PackagesStream,
		Description:       "fleetscan package records: latest per image digest and platform (the package index's input)",
		Subjects:          []string{PackagesSubjectPrefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           c.storage(),
		Replicas:          c.Replicas,
		MaxMsgsPerSubject: 1,
		MaxAge:            c.ResultMaxAge,
		Discard:           jetstream.DiscardOld,
	}
}

func (c Config) objectStore(name, desc string, ttl time.Duration) jetstream.ObjectStoreConfig {
	return jetstream.ObjectStoreConfig{
		Bucket:      name,
		Description: desc,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		TTL:         ttl,
		Compression: true,
	}
}

// layerObjectMargin is how much longer a large layer-cache object lives
// than the KV pointer to it.
const layerObjectMargin = time.Hour

// LayerCacheConfig is the layer-analysis cache bucket: one revision per key,
// compressed, expiring after LayerCacheTTL (refreshed on use).
func (c Config) LayerCacheConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      LayerCacheBucket,
		Description: "fleetscan fleet-wide layer-analysis cache (Trivy artifact and blob entries, image analyses)",
		History:     1,
		TTL:         c.LayerCacheTTL,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
		Compression: true,
	}
}

// LayerLeasesConfig is the bucket of layer leases: keys carry their own TTL
// (KV create with a per-key TTL), which needs limit markers.
func (c Config) LayerLeasesConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         LayerLeasesBucket,
		Description:    "fleetscan leases on layers being analysed (per-key TTL)",
		History:        1,
		Storage:        c.storage(),
		Replicas:       c.Replicas,
		LimitMarkerTTL: time.Minute,
	}
}

// FirstSeenConfig is the bucket of SLA first-seen records. Its limit
// markers enable per-message TTLs, which the reporter's pruning gives its
// purge markers (sla.Clock.MarkerTTL), so the server removes them and the
// bucket's stream keeps the live records only. A bucket created without
// them gains them on the next Ensure (a stream can enable message TTLs,
// never disable them). The value itself only applies to markers the
// server would place for keys removed by age, which this bucket has none
// of: one minute, as for the layer leases.
func (c Config) FirstSeenConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         FirstSeenBucket,
		Description:    "fleetscan SLA first-seen dates per (repository, vulnerability, package, path)",
		History:        1,
		Storage:        c.storage(),
		Replicas:       c.Replicas,
		LimitMarkerTTL: time.Minute,
	}
}

// Ensure creates or updates every resource. It is idempotent and safe to
// call concurrently from several processes.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (*Resources, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	var (
		r   = Resources{JS: js}
		err error
	)
	if r.Jobs, err = js.CreateOrUpdateStream(ctx, c.JobsStreamConfig()); err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", JobsStream, err)
	}
	if r.Workers, err = js.CreateOrUpdateConsumer(ctx, JobsStream, c.WorkersConsumerConfig()); err != nil {
		return nil, fmt.Errorf("topology: consumer %s/%s: %w", JobsStream, WorkersConsumer, err)
	}
	if r.Results, err = js.CreateOrUpdateStream(ctx, c.ResultsStreamConfig()); err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", ResultsStream, err)
	}
	if r.Packages, err = js.CreateOrUpdateStream(ctx, c.PackagesStreamConfig()); err != nil {
		return nil, fmt.Errorf("topology: stream %s: %w", PackagesStream, err)
	}
	stores := []struct {
		dst  *jetstream.ObjectStore
		name string
		desc string
		ttl  time.Duration
	}{
		{&r.ResultBlobs, ResultBlobsBucket, "fleetscan results too large for one message", c.ResultMaxAge},
		{&r.Inventories, InventoriesBucket, "fleetscan latest inventory per cluster", c.InventoryMaxAge},
		{&r.Runs, RunsBucket, "fleetscan run manifests", c.InventoryMaxAge},
		{&r.PackageIndex, PackageIndexBucket, "fleetscan package index snapshot and large package records", c.ResultMaxAge},
		// No TTL: a feed is replaced by its next good copy, never dropped
		// (an old copy is reported stale, a missing one never loaded).
		{&r.Feeds, FeedsBucket, "fleetscan exploit feeds (CISA KEV, FIRST EPSS): the updater's last good copies", 0},
	}
	for _, s := range stores {
		if *s.dst, err = js.CreateOrUpdateObjectStore(ctx, c.objectStore(s.name, s.desc, s.ttl)); err != nil {
			return nil, fmt.Errorf("topology: object store %s: %w", s.name, err)
		}
	}
	if r.FirstSeen, err = js.CreateOrUpdateKeyValue(ctx, c.FirstSeenConfig()); err != nil {
		return nil, fmt.Errorf("topology: KV %s: %w", FirstSeenBucket, err)
	}
	if r.FirstSeenStream, err = js.Stream(ctx, "KV_"+FirstSeenBucket); err != nil {
		return nil, fmt.Errorf("topology: KV %s: its stream: %w", FirstSeenBucket, err)
	}
	if r.LayerCache, err = js.CreateOrUpdateKeyValue(ctx, c.LayerCacheConfig()); err != nil {
		return nil, fmt.Errorf("topology: KV %s: %w", LayerCacheBucket, err)
	}
	// Objects outlive their KV pointer by a margin: the pointer is written
	// after the object and refreshed with it.
	objs := c.objectStore(LayerObjectsBucket, "fleetscan layer-analysis cache entries too large for one KV value", c.LayerCacheTTL+layerObjectMargin)
	if r.LayerObjects, err = js.CreateOrUpdateObjectStore(ctx, objs); err != nil {
		return nil, fmt.Errorf("topology: object store %s: %w", LayerObjectsBucket, err)
	}
	if r.LayerLeases, err = js.CreateOrUpdateKeyValue(ctx, c.LayerLeasesConfig()); err != nil {
		return nil, fmt.Errorf("topology: KV %s: %w", LayerLeasesBucket, err)
	}
	if r.Scanner, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      ScannerBucket,
		Description: "fleetscan workers' scanner identity (scanner, options, DB) for result reuse",
		History:     1,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("topology: KV %s: %w", ScannerBucket, err)
	}
	if r.Tickets, err = js.CreateOrUpdateKeyValue(ctx, c.ticketsConfig()); err != nil {
		return nil, fmt.Errorf("topology: KV %s: %w", TicketsBucket, err)
	}
	return &r, nil
}

// ticketsConfig is the tickets KV bucket: one key per tracker and ticket
// ID, kept forever (a closed issue is reopened when its finding returns).
func (c Config) ticketsConfig() jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      TicketsBucket,
		Description: "fleetscan ticket IDs -> GitHub/Jira issues the reporter keeps in sync",
		History:     1,
		Storage:     c.storage(),
		Replicas:    c.Replicas,
	}
}
