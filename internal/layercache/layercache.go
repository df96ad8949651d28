// Package layercache is fleetscan's fleet-wide layer-analysis cache: Trivy's
// cache interface (ArtifactCache + LocalArtifactCache) on JetStream, so that
// a layer analysed by any worker is never downloaded or analysed again by
// another, in this process or elsewhere in the fleet.
//
// Entries live in a KV bucket (compressed JSON), those larger than one KV
// value in an object store with a pointer in the KV bucket. Reads decode a
// fresh copy every time: Trivy's applier mutates what it gets. The bucket
// expires entries after a TTL; a read of an entry older than half of it
// writes it again, so entries in use stay while unused ones go.
//
// Trivy's cache keys are hashes of the layer's diff ID with the versions of
// every analyzer and hook and the artifact options (cache.CalcKey), so an
// entry written by another Trivy or analyzer version is never looked up.
//
// A Scope is one scan's view: its MissingBlobs takes a lease (KV create with
// a per-key TTL) on every layer it reports missing, so two scans needing the
// same unanalysed layer at once do not both download it: the second waits
// until the layer is stored or the lease ends (released, or expired when its
// holder crashed), then uses the entry or takes the lease itself. A live
// holder renews its leases every third of their TTL, so a long download
// is not repeated; a crashed one stops renewing. Leases are taken in key
// order, so waiting scans cannot deadlock.
//
// The cache also remembers, per image key, what the last full analysis of
// the image was (Analysis): the detection-only rescan after a DB update runs
// from it without contacting the registry.
package layercache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	tcache "github.com/aquasecurity/trivy/pkg/cache"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"

	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Config tunes the cache.
type Config struct {
	// TTL is the layer-cache bucket's entry TTL (topology
	// LayerCacheTTL); reads refresh entries older than half of it.
	TTL time.Duration
	// LeaseTTL is how long a scan may hold a layer it analyses before
	// another may take it over (a crashed holder's lease ends then).
	LeaseTTL time.Duration
	// PollInterval is how often a scan waiting for a leased layer looks
	// again (default LeaseTTL/20, between 50ms and 1s).
	PollInterval time.Duration
	// InlineLimit is the largest entry stored in the KV bucket; larger
	// ones go to the object store (default 256 KiB).
	InlineLimit int
	// Owner names lease holders (the worker name).
	Owner string
	// ReadOnly never writes: entries read past half their TTL are not
	// refreshed (a reader such as the reporter leaves that to workers).
	ReadOnly bool
}

// DefaultLeaseTTL is the default lease on a layer being analysed. It bounds
// how long a crashed holder keeps others waiting (the job it held is
// redelivered after AckWait and must not then wait minutes more). A live
// holder renews its leases every third of it, so a layer that takes longer
// to download and analyse is still analysed once.
const DefaultLeaseTTL = 30 * time.Second

const defaultInlineLimit = 256 << 10

// Value prefixes of KV entries: the JSON inline, or the name of the object
// holding it.
const (
	inlineValue = 'v'
	objectValue = 'o'
)

// ErrNotFound is returned for an entry the cache does not hold.
var ErrNotFound = errors.New("not in the layer cache")

// Cache is the JetStream-backed Trivy cache. It is safe for concurrent use.
type Cache struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	objs   jetstream.ObjectStore
	leases jetstream.KeyValue
	cfg    Config
	log    *zap.Logger
	// Now is the clock (tests).
	Now func() time.Time

	refreshed, waited, renewed atomic.Int64
	scopes                     atomic.Int64
}

var _ tcache.Cache = (*Cache)(nil)

// New returns the cache over the ensured resources.
func New(res *topology.Resources, cfg Config, log *zap.Logger) (*Cache, error) {
	if res == nil || res.JS == nil || res.LayerCache == nil || res.LayerObjects == nil || res.LayerLeases == nil {
		return nil, errors.New("layer cache: the layer-cache JetStream resources are required (topology.Ensure)")
	}
	if cfg.TTL <= 0 {
		return nil, fmt.Errorf("layer cache: TTL %s: must be positive", cfg.TTL)
	}
	if cfg.LeaseTTL < time.Second {
		return nil, fmt.Errorf("layer cache: lease TTL %s: want at least 1s", cfg.LeaseTTL)
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = min(max(cfg.LeaseTTL/20, 50*time.Millisecond), time.Second)
	}
	if cfg.InlineLimit <= 0 {
		cfg.InlineLimit = defaultInlineLimit
	}
	if cfg.Owner == "" {
		cfg.Owner, _ = os.Hostname()
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Cache{js: res.JS, kv: res.LayerCache, objs: res.LayerObjects, leases: res.LayerLeases, cfg: cfg, log: log, Now: time.Now}, nil
}

// Stats counts cache maintenance since New.
type Stats struct {
	// Refreshed counts entries written again because a read found them
	// past half their TTL.
	Refreshed int64
	// Waited counts layers a scan waited for because another held them.
	Waited int64
	// Renewed counts lease renewals (analyses outliving a third of the
	// lease TTL).
	Renewed int64
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{Refreshed: c.refreshed.Load(), Waited: c.waited.Load(), Renewed: c.renewed.Load()}
}

// Keys. KV keys allow [-/_=.a-zA-Z0-9]: Trivy's "sha256:<hex>" becomes
// "sha256.<hex>"; anything else is hashed.
func safe(id string) string {
	ok := id != "" && !strings.HasPrefix(id, ".") && !strings.HasSuffix(id, ".") && !strings.Contains(id, "..")
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=.:", r)) {
			ok = false
			break
		}
	}
	if ok {
		return strings.ReplaceAll(id, ":", ".")
	}
	sum := sha256.Sum256([]byte(id))
	return "h." + hex.EncodeToString(sum[:])
}

func blobKey(id string) string            { return "blob." + safe(id) }
func artifactKey(id string) string        { return "artifact." + safe(id) }
func imageKey(k contract.ImageKey) string { return "image." + k.Token() }
func leaseKey(blobID string) string       { return "lease." + safe(blobID) }

// get reads an entry; found is false when there is none. An entry past half
// its TTL is written again.
func (c *Cache) get(ctx context.Context, key string) ([]byte, bool, error) {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("layer cache: get %s: %w", key, err)
	}
	val := e.Value()
	if len(val) == 0 {
		return nil, false, nil
	}
	var data []byte
	switch val[0] {
	case inlineValue:
		data = val[1:]
	case objectValue:
		data, err = c.objs.GetBytes(ctx, string(val[1:]))
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("layer cache: get object %s: %w", val[1:], err)
		}
	default:
		c.log.Warn("unreadable layer-cache entry; treating it as missing", zap.String("key", key))
		return nil, false, nil
	}
	if !c.cfg.ReadOnly && c.Now().Sub(e.Created()) > c.cfg.TTL/2 {
		if err := c.put(ctx, key, data); err != nil {
			c.log.Warn("could not refresh a layer-cache entry", zap.String("key", key), zap.Error(err))
		} else {
			c.refreshed.Add(1)
		}
	}
	return data, true, nil
}

// put writes an entry, in the object store when it is large.
func (c *Cache) put(ctx context.Context, key string, data []byte) error {
	if len(data)+1 <= c.cfg.InlineLimit {
		if _, err := c.kv.Put(ctx, key, append([]byte{inlineValue}, data...)); err != nil {
			return fmt.Errorf("layer cache: put %s (%d bytes): %w", key, len(data), err)
		}
		return nil
	}
	if _, err := c.objs.PutBytes(ctx, key, data); err != nil {
		return fmt.Errorf("layer cache: put object %s (%d bytes): %w", key, len(data), err)
	}
	if _, err := c.kv.Put(ctx, key, append([]byte{objectValue}, key...)); err != nil {
		return fmt.Errorf("layer cache: put %s: %w", key, err)
	}
	return nil
}

func (c *Cache) putJSON(ctx context.Context, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("layer cache: encode %s: %w", key, err)
	}
	return c.put(ctx, key, data)
}

func (c *Cache) delete(ctx context.Context, key string) error {
	e, err := c.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layer cache: get %s: %w", key, err)
	}
	if err := c.kv.Purge(ctx, key); err != nil {
		return fmt.Errorf("layer cache: delete %s: %w", key, err)
	}
	if v := e.Value(); len(v) > 0 && v[0] == objectValue {
		if err := c.objs.Delete(ctx, string(v[1:])); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("layer cache: delete object %s: %w", v[1:], err)
		}
	}
	return nil
}

// decodeBlob decodes a private copy of a blob entry.
func decodeBlob(id string, data []byte) (ftypes.BlobInfo, error) {
	var b ftypes.BlobInfo
	if err := json.Unmarshal(data, &b); err != nil {
		return ftypes.BlobInfo{}, fmt.Errorf("layer cache: decode blob %s: %w", id, err)
	}
	return b, nil
}

// blobUsable reports whether a stored blob has the schema this Trivy reads.
func blobUsable(data []byte) bool {
	var v struct{ SchemaVersion int }
	return json.Unmarshal(data, &v) == nil && v.SchemaVersion == ftypes.BlobJSONSchemaVersion
}

func artifactUsable(data []byte) bool {
	var v struct{ SchemaVersion int }
	return json.Unmarshal(data, &v) == nil && v.SchemaVersion == ftypes.ArtifactJSONSchemaVersion
}

// MissingBlobs reports which of the artifact and its blobs the cache does
// not hold (or holds in another schema). It takes no lease: use a Scope for
// that.
func (c *Cache) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	var missing []string
	for _, id := range blobIDs {
		data, ok, err := c.get(ctx, blobKey(id))
		if err != nil {
			return false, nil, err
		}
		if !ok || !blobUsable(data) {
			missing = append(missing, id)
		}
	}
	missingArtifact, err := c.missingArtifact(ctx, artifactID)
	return missingArtifact, missing, err
}

func (c *Cache) missingArtifact(ctx context.Context, artifactID string) (bool, error) {
	data, ok, err := c.get(ctx, artifactKey(artifactID))
	if err != nil {
		return false, err
	}
	return !ok || !artifactUsable(data), nil
}

// PutArtifact stores an image's config analysis.
func (c *Cache) PutArtifact(ctx context.Context, artifactID string, info ftypes.ArtifactInfo) error {
	return c.putJSON(ctx, artifactKey(artifactID), info)
}

// PutBlob stores a layer's analysis.
func (c *Cache) PutBlob(ctx context.Context, blobID string, info ftypes.BlobInfo) error {
	return c.putJSON(ctx, blobKey(blobID), info)
}

// DeleteBlobs removes layer analyses.
func (c *Cache) DeleteBlobs(ctx context.Context, blobIDs []string) error {
	var errs []error
	for _, id := range blobIDs {
		errs = append(errs, c.delete(ctx, blobKey(id)))
	}
	return errors.Join(errs...)
}

// GetArtifact returns a private copy of an image's config analysis.
func (c *Cache) GetArtifact(ctx context.Context, artifactID string) (ftypes.ArtifactInfo, error) {
	data, ok, err := c.get(ctx, artifactKey(artifactID))
	if err != nil {
		return ftypes.ArtifactInfo{}, err
	}
	if !ok {
		return ftypes.ArtifactInfo{}, fmt.Errorf("artifact %s: %w", artifactID, ErrNotFound)
	}
	var a ftypes.ArtifactInfo
	if err := json.Unmarshal(data, &a); err != nil {
		return ftypes.ArtifactInfo{}, fmt.Errorf("layer cache: decode artifact %s: %w", artifactID, err)
	}
	return a, nil
}

// GetBlob returns a private copy of a layer's analysis.
func (c *Cache) GetBlob(ctx context.Context, blobID string) (ftypes.BlobInfo, error) {
	data, ok, err := c.get(ctx, blobKey(blobID))
	if err != nil {
		return ftypes.BlobInfo{}, err
	}
	if !ok {
		return ftypes.BlobInfo{}, fmt.Errorf("blob %s: %w", blobID, ErrNotFound)
	}
	return decodeBlob(blobID, data)
}

// Close does nothing: the connection belongs to the caller.
func (c *Cache) Close() error { return nil }

// Clear deletes every entry of the shared cache (leases are left to expire).
func (c *Cache) Clear(ctx context.Context) error {
	keys, err := c.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("layer cache: list keys: %w", err)
	}
	var errs []error
	for k := range keys.Keys() {
		errs = append(errs, c.delete(ctx, k))
	}
	return errors.Join(errs...)
}

// Analysis is what the last full scan of an image key analysed: enough to
// run detection again from the cache, without the registry.
type Analysis struct {
	// Reference is the pinned reference the image was pulled from (Trivy
	// names findings' targets after it).
	Reference string `json:"reference"`
	// ArtifactID and BlobIDs are Trivy's cache keys of the image config
	// and of each layer, in layer order.
	ArtifactID string   `json:"artifactId"`
	BlobIDs    []string `json:"blobIds"`
	ImageID    string   `json:"imageId"`
	DiffIDs    []string `json:"diffIds"`
	// Scanner is the scanner (version and options) that analysed it.
	Scanner  contract.ScannerInfo `json:"scanner"`
	StoredAt time.Time            `json:"storedAt"`
	// RepoTags, RepoDigests and Config are the image metadata Trivy reads
	// with the image (SBOMs built from the analysis carry them).
	// ManifestDigest is the platform image's own manifest digest: the
	// key's digest when it names a single image, another when it names a
	// multi-arch index. Analyses recorded before they existed lack them.
	RepoTags       []string        `json:"repoTags,omitempty"`
	RepoDigests    []string        `json:"repoDigests,omitempty"`
	Config         json.RawMessage `json:"config,omitempty"`
	ManifestDigest string          `json:"manifestDigest,omitempty"`
}

// PutAnalysis records the analysis of an image key.
func (c *Cache) PutAnalysis(ctx context.Context, key contract.ImageKey, a Analysis) error {
	return c.putJSON(ctx, imageKey(key), a)
}

// Analysis returns the recorded analysis of an image key; ok is false when
// there is none.
func (c *Cache) Analysis(ctx context.Context, key contract.ImageKey) (Analysis, bool, error) {
	data, ok, err := c.get(ctx, imageKey(key))
	if err != nil || !ok {
		return Analysis{}, false, err
	}
	var a Analysis
	if err := json.Unmarshal(data, &a); err != nil {
		c.log.Warn("unreadable image analysis record; ignoring it", zap.String("image", key.String()), zap.Error(err))
		return Analysis{}, false, nil
	}
	return a, true, nil
}

// Scope returns the view of one scan. Call Release when the scan ends.
func (c *Cache) Scope() *Scope {
	n := c.scopes.Add(1)
	return &Scope{c: c, owner: fmt.Sprintf("%s/%d/%d", c.cfg.Owner, os.Getpid(), n),
		held: map[string]uint64{}, raw: map[string][]byte{}}
}

// Scope is one scan's view of the cache: it leases the layers it reports
// missing until they are stored, and keeps the entries it found so that the
// applier's reads do not go to JetStream again.
type Scope struct {
	c     *Cache
	owner string

	mu   sync.Mutex
	held map[string]uint64 // blob ID → lease revision
	raw  map[string][]byte // blob ID → entry read by MissingBlobs
	// waited counts layers this scan waited for.
	waited int
	// renewing is true while a goroutine renews the held leases.
	renewing bool

	// leaseMu orders renewals and releases of one lease: a release must
	// purge the revision the last renewal wrote.
	leaseMu sync.Mutex
}

var _ tcache.Cache = (*Scope)(nil)

// Waited is how many layers this scan waited for another holder of.
func (s *Scope) Waited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waited
}

// MissingBlobs reports the missing artifact and layers, taking a lease on
// each missing layer. A layer leased by another scan is waited for: it is
// then present (not missing) or its lease ended and this scan took it.
func (s *Scope) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	ids := slices.Clone(blobIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	missing := map[string]bool{}
	for _, id := range ids {
		m, err := s.acquire(ctx, id)
		if err != nil {
			return false, nil, err
		}
		missing[id] = m
	}
	var out []string
	for _, id := range blobIDs {
		if missing[id] {
			out = append(out, id)
			missing[id] = false // report a repeated layer once
		}
	}
	missingArtifact, err := s.c.missingArtifact(ctx, artifactID)
	return missingArtifact, out, err
}

// acquire returns false when the layer's entry is present, true when it is
// not and this scan now holds its lease.
func (s *Scope) acquire(ctx context.Context, id string) (bool, error) {
	waiting := false
	for {
		data, ok, err := s.c.get(ctx, blobKey(id))
		if err != nil {
			return false, err
		}
		if ok && blobUsable(data) {
			s.mu.Lock()
			s.raw[id] = data
			s.mu.Unlock()
			return false, nil
		}
		rev, err := s.c.leases.Create(ctx, leaseKey(id), []byte(s.owner), jetstream.KeyTTL(s.c.cfg.LeaseTTL))
		if err == nil {
			s.mu.Lock()
			s.held[id] = rev
			startRenewal := !s.renewing
			s.renewing = true
			s.mu.Unlock()
			if startRenewal {
				go s.renew(context.WithoutCancel(ctx), ctx.Done())
			}
			// The previous holder stores the layer before it releases the
			// lease: it may have done both since the look above.
			data, ok, err := s.c.get(ctx, blobKey(id))
			if err == nil && ok && blobUsable(data) {
				s.mu.Lock()
				s.raw[id] = data
				s.mu.Unlock()
				if err := s.release(ctx, id); err != nil {
					s.c.log.Warn("could not release a layer lease; it expires by itself", zap.String("blob", id), zap.Error(err))
				}
				return false, nil
			}
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return false, fmt.Errorf("layer cache: lease %s: %w", id, err)
		}
		if !waiting {
			waiting = true
			s.c.waited.Add(1)
			s.mu.Lock()
			s.waited++
			s.mu.Unlock()
			if e, gerr := s.c.leases.Get(ctx, leaseKey(id)); gerr == nil {
				s.c.log.Debug("layer leased by another scan; waiting", zap.String("blob", id), zap.ByteString("holder", e.Value()))
			}
		}
		t := time.NewTimer(s.c.cfg.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, fmt.Errorf("layer cache: waiting for layer %s analysed by another scan: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

// renew keeps this scan's leases alive, every third of the lease TTL,
// until it holds none or the scan's context ends (done). A lease that
// could not be renewed (the connection is gone, or it already expired and
// another scan took it) is dropped: the analysis goes on, and may be
// repeated by the other scan — wasted work, never a wrong result.
func (s *Scope) renew(ctx context.Context, done <-chan struct{}) {
	t := time.NewTicker(s.c.cfg.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-done:
			s.mu.Lock()
			s.renewing = false
			s.mu.Unlock()
			return
		case <-t.C:
		}
		s.mu.Lock()
		ids := make([]string, 0, len(s.held))
		for id := range s.held {
			ids = append(ids, id)
		}
		if len(ids) == 0 {
			s.renewing = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		for _, id := range ids {
			s.renewOne(ctx, id)
		}
	}
}

// renewOne extends one held lease by the lease TTL.
func (s *Scope) renewOne(ctx context.Context, id string) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	s.mu.Lock()
	rev, ok := s.held[id]
	s.mu.Unlock()
	if !ok {
		return // released meanwhile
	}
	rctx, cancel := context.WithTimeout(ctx, s.c.cfg.LeaseTTL/3)
	defer cancel()
	msg := &nats.Msg{Subject: "$KV." + topology.LayerLeasesBucket + "." + leaseKey(id), Data: []byte(s.owner)}
	ack, err := s.c.js.PublishMsg(rctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(s.c.cfg.LeaseTTL))
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, still := s.held[id]; !still {
		return
	}
	if err != nil {
		delete(s.held, id)
		s.c.log.Warn("could not renew a layer lease; another scan may analyse the layer too", zap.String("blob", id), zap.Error(err))
		return
	}
	s.held[id] = ack.Sequence
	s.c.renewed.Add(1)
}

// release ends this scan's lease on a layer, unless it already ended.
func (s *Scope) release(ctx context.Context, id string) error {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	s.mu.Lock()
	rev, ok := s.held[id]
	delete(s.held, id)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	err := s.c.leases.Purge(ctx, leaseKey(id), jetstream.LastRevision(rev), jetstream.PurgeTTL(time.Minute))
	var apiErr *jetstream.APIError
	if err != nil && errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil // the lease expired and someone else holds it now
	}
	if err != nil {
		return fmt.Errorf("layer cache: release lease %s: %w", id, err)
	}
	return nil
}

// Release ends every lease this scan still holds (a scan that failed
// before storing a layer it leased).
func (s *Scope) Release(ctx context.Context) error {
	s.mu.Lock()
	ids := make([]string, 0, len(s.held))
	for id := range s.held {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	var errs []error
	for _, id := range ids {
		errs = append(errs, s.release(ctx, id))
	}
	return errors.Join(errs...)
}

// PutArtifact stores an image's config analysis.
func (s *Scope) PutArtifact(ctx context.Context, artifactID string, info ftypes.ArtifactInfo) error {
	return s.c.PutArtifact(ctx, artifactID, info)
}

// PutBlob stores a layer's analysis and ends this scan's lease on it.
func (s *Scope) PutBlob(ctx context.Context, blobID string, info ftypes.BlobInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("layer cache: encode blob %s: %w", blobID, err)
	}
	if err := s.c.put(ctx, blobKey(blobID), data); err != nil {
		return err
	}
	s.mu.Lock()
	s.raw[blobID] = data
	s.mu.Unlock()
	if err := s.release(ctx, blobID); err != nil {
		s.c.log.Warn("could not release a layer lease; it expires by itself", zap.String("blob", blobID), zap.Error(err))
	}
	return nil
}

// DeleteBlobs removes layer analyses.
func (s *Scope) DeleteBlobs(ctx context.Context, blobIDs []string) error {
	s.mu.Lock()
	for _, id := range blobIDs {
		delete(s.raw, id)
	}
	s.mu.Unlock()
	return s.c.DeleteBlobs(ctx, blobIDs)
}

// GetArtifact returns a private copy of an image's config analysis.
func (s *Scope) GetArtifact(ctx context.Context, artifactID string) (ftypes.ArtifactInfo, error) {
	return s.c.GetArtifact(ctx, artifactID)
}

// GetBlob returns a private copy of a layer's analysis.
func (s *Scope) GetBlob(ctx context.Context, blobID string) (ftypes.BlobInfo, error) {
	s.mu.Lock()
	data, ok := s.raw[blobID]
	s.mu.Unlock()
	if ok {
		return decodeBlob(blobID, bytes.Clone(data))
	}
	return s.c.GetBlob(ctx, blobID)
}

// Close does nothing (see Release).
func (s *Scope) Close() error { return nil }

// Clear clears the shared cache.
func (s *Scope) Clear(ctx context.Context) error { return s.c.Clear(ctx) }
