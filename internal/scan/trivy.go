package scan

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.uber.org/zap"

	trivydbcfg "github.com/aquasecurity/trivy-db/pkg/db"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	tcache "github.com/aquasecurity/trivy/pkg/cache"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	"github.com/aquasecurity/trivy/pkg/fanal/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/javadb"
	"github.com/aquasecurity/trivy/pkg/result"
	tscan "github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	ttypes "github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/version/app"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	xhttp "github.com/aquasecurity/trivy/pkg/x/http"
	xos "github.com/aquasecurity/trivy/pkg/x/os"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/version"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// Database is the vulnerability database a Trivy scanner reads. Trivy keeps
// it in a process-wide handle, which is why a process has one Trivy scanner.
type Database interface {
	// Info describes the open database.
	Info() contract.DBInfo
	// Changed reports whether a newer database replaced the open one on disk.
	Changed() (bool, error)
	// Reopen closes the open database and opens the current one. The
	// scanner calls it with no scan running.
	Reopen(ctx context.Context) (contract.DBInfo, error)
}

// TrivyConfig configures the Trivy scanner.
type TrivyConfig struct {
	// CacheDir holds db/ and, when present, java-db/ (read only).
	CacheDir string
	// ScratchDir is where the scanner creates its private layer cache
	// directory (removed on Close); "" means the system temp dir.
	ScratchDir string
	// Keyring provides registry credentials (a *Keyring or a *KeyringFile);
	// nil means anonymous pulls. Trivy's cloud credential helpers (ECR,
	// GCR/Artifact Registry, ACR, using the workload's cloud identity) are
	// tried in any case for their registries.
	Keyring KeyringSource
	// InsecureRegistries are hosts ("host" or "host:port") reached over
	// plain HTTP or with unverified TLS.
	InsecureRegistries []string
	// Parallel is how many layers one scan analyses at once (Trivy's
	// --parallel; default 5).
	Parallel int
	// SharedCache, when set, replaces the private layer cache with one
	// shared by every worker of the fleet (*layercache.Cache): layers any
	// worker analysed are not downloaded again, two scans never download
	// the same layer at once, and an image analysed before is rescanned
	// (after a DB update) by detection alone, without the registry.
	SharedCache SharedCache
}

// SharedCache is a layer-analysis cache shared beyond this process.
// *layercache.Cache implements it.
type SharedCache interface {
	tcache.Cache
	// Scope is one scan's view, leasing the layers it reports missing.
	Scope() *layercache.Scope
	// Analysis and PutAnalysis keep what the last full scan of an image
	// key analysed.
	Analysis(ctx context.Context, key contract.ImageKey) (layercache.Analysis, bool, error)
	PutAnalysis(ctx context.Context, key contract.ImageKey, a layercache.Analysis) error
}

// The scanner's fixed options, which a result's ScannerInfo.Options records
// so results are only reused under the same options.
const (
	scannerName    = "trivy"
	trivyModule    = "github.com/aquasecurity/trivy"
	scannerOptions = "scanners=vuln;pkg-types=os,library;lockfiles=off;detection=precise;severity-source=auto"
)

// active guards Trivy's process-wide state (the DB handle, the slog default
// logger): one open Trivy scanner per process.
var active atomic.Bool

// Trivy scans images with Trivy's Go library. It is safe for concurrent
// use: scans run in parallel, and RefreshDB swaps the database only when no
// scan is running.
type Trivy struct {
	cfg  TrivyConfig
	log  *zap.Logger
	db   Database
	info contract.ScannerInfo

	// gate: scans hold it shared, a DB reopen exclusively.
	gate   sync.RWMutex
	closed bool
	// artifactMu serialises artimage.NewArtifact, which initialises
	// package-global analyzers.
	artifactMu sync.Mutex

	layerDir string
	cache    tcache.Cache
	shared   SharedCache
	// osMemo shares OS-package detection between images with the same
	// OS packages (same base).
	osMemo   *osMemo
	secure   *http.Transport
	insecure *http.Transport
	disabled []analyzer.Type
	javaDB   bool
	ua       string
}

var _ Scanner = (*Trivy)(nil)

// NewTrivy opens the scanner over an already opened database. Only one may
// be open in a process at a time (Trivy's DB handle is process-wide): share
// it between in-process workers.
func NewTrivy(cfg TrivyConfig, db Database, log *zap.Logger) (*Trivy, error) {
	if db == nil {
		return nil, errors.New("scan: a database is required")
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("scan: cache dir (holding db/) is required")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 5
	}
	if log == nil {
		log = zap.NewNop()
	}
	if !active.CompareAndSwap(false, true) {
		return nil, errors.New("scan: a Trivy scanner is already open in this process (Trivy's DB handle is process-wide: share one scanner)")
	}
	ok := false
	defer func() {
		if !ok {
			active.Store(false)
		}
	}()
	routeTrivyLogs(log)

	t := &Trivy{
		cfg:    cfg,
		log:    log,
		db:     db,
		shared: cfg.SharedCache,
		ua:     "fleetscan/" + version.Version,
	}
	if t.shared != nil {
		t.cache = t.shared
	} else if err := t.openScratchCache(cfg.ScratchDir); err != nil {
		return nil, err
	}
	t.secure = http.DefaultTransport.(*http.Transport).Clone()
	t.secure.MaxIdleConnsPerHost = 16
	t.insecure = t.secure.Clone()
	t.insecure.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure-registry asks for it
	t.chooseAnalyzers()

	opts := scannerOptions
	if t.javaDB {
		opts += ";java-db=on"
	}
	t.info = contract.ScannerInfo{Name: scannerName, Version: trivyVersion(), Options: opts}
	// Scans hold the gate shared, so the DB cannot change under t.db.Info.
	t.osMemo = newOSMemo(ospkg.NewScanner(), func() string { return contract.Fingerprint(t.info, t.db.Info()) })
	ok = true
	layerCache := "shared (JetStream)"
	if t.shared == nil {
		layerCache = t.layerDir
	}
	log.Info("Trivy scanner ready", zap.String("trivy", t.info.Version), zap.String("layer_cache", layerCache),
		zap.Int("registries_with_credentials", t.keyring().Len()), zap.Strings("insecure_registries", cfg.InsecureRegistries))
	return t, nil
}

// openScratchCache opens a private layer cache under scratch (default: the
// temporary directory).
func (t *Trivy) openScratchCache(scratch string) error {
	if scratch == "" {
		scratch = os.TempDir()
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return fmt.Errorf("scratch dir %s: %w", scratch, err)
	}
	// A private directory: Trivy's FS cache is an exclusively locked
	// bolt file, so two processes must never share one.
	layerDir, err := os.MkdirTemp(scratch, "fleetscan-layers-")
	if err != nil {
		return fmt.Errorf("scratch dir %s: %w", scratch, err)
	}
	fsCache, err := tcache.NewFSCache(layerDir)
	if err != nil {
		_ = os.RemoveAll(layerDir)
		return fmt.Errorf("layer cache in %s: %w", layerDir, err)
	}
	t.layerDir, t.cache = layerDir, fsCache
	return nil
}

// chooseAnalyzers disables the analyzers `trivy image --scanners vuln`
// disables, plus the image config secret analyzer (it rewrites a global
// rules slice, racing with concurrent scans); jars are only analysed with
// the Java DB (without it the analyzer fails).
func (t *Trivy) chooseAnalyzers() {
	t.disabled = append([]analyzer.Type{}, analyzer.TypeLockfiles...)
	t.disabled = append(t.disabled, analyzer.TypeApkCommand, analyzer.TypeSecret, analyzer.TypeLicenseFile,
		analyzer.TypeHistoryDockerfile, analyzer.TypeExecutable, analyzer.TypeRpmArchive, analyzer.TypeImageConfigSecret)
	t.disabled = append(t.disabled, analyzer.TypeConfigFiles...)
	if _, err := os.Stat(filepath.Join(t.cfg.CacheDir, "java-db", "metadata.json")); err == nil {
		javadb.Init(t.cfg.CacheDir, nil, true, true, ftypes.RegistryOptions{})
		t.javaDB = true
	} else {
		t.disabled = append(t.disabled, analyzer.TypeJar)
		t.log.Info("no Java DB under the cache dir: jar files are not scanned", zap.String("java_db", filepath.Join(t.cfg.CacheDir, "java-db")))
	}
}

func (t *Trivy) keyring() *Keyring {
	if t.cfg.Keyring == nil {
		return nil
	}
	return t.cfg.Keyring.Keyring()
}

// trivyVersion is the Trivy module version this binary was built with.
func trivyVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == trivyModule {
				if d.Replace != nil {
					return strings.TrimPrefix(d.Replace.Version, "v")
				}
				return strings.TrimPrefix(d.Version, "v")
			}
		}
	}
	return app.Version()
}

// Info names the scanner, its version and its options.
func (t *Trivy) Info() contract.ScannerInfo { return t.info }

// DBInfo describes the open database.
func (t *Trivy) DBInfo() contract.DBInfo {
	t.gate.RLock()
	defer t.gate.RUnlock()
	return t.db.Info()
}

// RefreshDB reopens the database when a newer one was swapped in on disk.
// It waits for running scans to finish and holds new ones back meanwhile,
// so no scan ever sees the handle change. It reports whether it reopened.
func (t *Trivy) RefreshDB(ctx context.Context) (bool, error) {
	changed, err := t.db.Changed()
	if err != nil || !changed {
		return false, err
	}
	t.gate.Lock()
	defer t.gate.Unlock()
	if t.closed {
		return false, errors.New("scanner closed")
	}
	// Another caller may have reopened it while we waited.
	if changed, err = t.db.Changed(); err != nil || !changed {
		return false, err
	}
	before := t.db.Info()
	after, err := t.db.Reopen(ctx)
	if err != nil {
		return false, fmt.Errorf("reopen vulnerability DB: %w", err)
	}
	t.log.Info("vulnerability DB reopened", zap.Time("old_updated_at", before.UpdatedAt), zap.Time("new_updated_at", after.UpdatedAt))
	return true, nil
}

// Close waits for running scans, then releases the layer cache and its
// directory. It does not close the database, which the caller opened.
func (t *Trivy) Close() error {
	t.gate.Lock()
	defer t.gate.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	err := t.cache.Close()
	if t.layerDir != "" {
		if rerr := os.RemoveAll(t.layerDir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	silenceTrivyLogs()
	active.Store(false)
	return err
}

// Scan scans the image of req. It tries each reference in turn while the
// failure is one a mirror may not have (not found, unauthorized, rate
// limited, registry errors); the error returned is classified for the queue.
func (t *Trivy) Scan(ctx context.Context, req Request) (rep Report, err error) {
	if err := req.Validate(); err != nil {
		return Report{}, contract.Permanent(contract.FailureUnsupported, fmt.Errorf("scan request: %w", err))
	}
	t.gate.RLock()
	defer t.gate.RUnlock()
	if t.closed {
		return Report{}, contract.Retryable(contract.FailureInternal, errors.New("scanner closed"))
	}
	defer func() {
		if r := recover(); r != nil {
			t.log.Error("Trivy panicked", logging.Digest(req.Digest), zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = contract.Permanent(contract.FailureInternal, fmt.Errorf("scanner panicked: %v", r))
		}
	}()

	start := time.Now()
	if r, ok := t.redetect(ctx, req); ok {
		r.StartedAt = start
		r.Duration = time.Since(start)
		return r, nil
	}
	var failures []refFailure
	for _, raw := range req.References {
		ref, reg, perr := pin(raw, req.Digest, hostSet(t.cfg.InsecureRegistries))
		if perr != nil {
			failures = append(failures, refFailure{ref: raw, err: contract.Permanent(contract.FailureUnsupported, perr)})
			continue
		}
		r, serr := t.scanRef(ctx, ref, reg, req)
		if serr == nil {
			r.StartedAt = start
			r.Duration = time.Since(start)
			return r, nil
		}
		serr = classify(serr)
		failures = append(failures, refFailure{ref: ref, err: serr})
		class, _ := contract.Classify(serr)
		if ctx.Err() != nil || !registryClass(class) {
			break
		}
	}
	return Report{}, t.combine(failures)
}

type refFailure struct {
	ref string
	err error
}

// combine turns the failures of every reference tried into one classified
// error: a retryable failure anywhere makes the job worth retrying, else the
// first reference's class stands. Known secrets are scrubbed.
func (t *Trivy) combine(failures []refFailure) error {
	if len(failures) == 0 {
		return contract.Permanent(contract.FailureUnsupported, errors.New("no reference to pull from"))
	}
	pick := failures[0]
	for _, f := range failures {
		if _, retry := contract.Classify(f.err); retry {
			pick = f
			break
		}
	}
	class, retry := contract.Classify(pick.err)
	msgs := make([]string, 0, len(failures))
	for _, f := range failures {
		msgs = append(msgs, fmt.Sprintf("%s: %s", f.ref, conciseError(f.err)))
	}
	err := &scanError{msg: redactor(t.keyring().secrets()).redact(strings.Join(msgs, "; ")), cause: pick.err}
	if retry {
		return contract.Retryable(class, err)
	}
	return contract.Permanent(class, err)
}

// scanError carries a scrubbed, bounded message while keeping the cause
// inspectable with errors.Is/As (context deadlines, registry errors).
type scanError struct {
	msg   string
	cause error
}

func (e *scanError) Error() string { return e.msg }
func (e *scanError) Unwrap() error { return e.cause }

// maxReason bounds a failure reason: registry errors repeated per auth
// method and per retry can run long.
const maxReason = 1024

func conciseError(err error) string {
	var qe *contract.FailureError
	if errors.As(err, &qe) {
		err = qe.Err
	}
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if len(msg) > maxReason {
		msg = msg[:maxReason] + "…"
	}
	return msg
}

// pin parses ref and pins its repository to digest, returning the pinned
// reference and its registry.
func pin(ref, digest string, insecure hostSet) (string, string, error) {
	opts := []name.Option{name.WeakValidation}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return "", "", fmt.Errorf("reference %q: %w", ref, err)
	}
	reg := r.Context().RegistryStr()
	if insecure.match(reg) {
		opts = append(opts, name.Insecure)
	}
	d, err := name.NewDigest(r.Context().Name()+"@"+digest, opts...)
	if err != nil {
		return "", "", fmt.Errorf("reference %q pinned to %s: %w", ref, digest, err)
	}
	return d.String(), reg, nil
}

// scanRef scans one pinned reference.
func (t *Trivy) scanRef(ctx context.Context, ref, registry string, req Request) (Report, error) {
	regOpts := t.registryOptions(registry, req.Platform)
	insecure := regOpts.Insecure
	base := t.secure
	if insecure {
		base = t.insecure
	}
	stats := &fetchStats{}
	sctx := xhttp.WithTransport(ctx, &scanTransport{base: base, ctx: ctx, userAgent: t.ua, stats: stats})

	img, cleanup, err := image.NewContainerImage(sctx, ref, ftypes.ImageOptions{
		ImageSources:    ftypes.ImageSources{ftypes.RemoteImageSource},
		RegistryOptions: regOpts,
	})
	if err != nil {
		return Report{}, fmt.Errorf("pull %s: %w", ref, err)
	}
	defer cleanup()

	cache := t.cache
	if t.shared != nil {
		scope := t.shared.Scope()
		defer func() {
			// A scan that failed before storing a layer it leased lets
			// the others have it at once rather than after the lease TTL.
			if err := scope.Release(context.WithoutCancel(ctx)); err != nil {
				t.log.Warn("could not release layer leases; they expire by themselves", zap.Error(err))
			}
		}()
		cache = scope
	}
	cc := &countingCache{Cache: cache}
	t.artifactMu.Lock()
	inner, err := artimage.NewArtifact(img, cc, artifact.Option{
		// A copy: computing the cache key sorts the slice in place.
		DisabledAnalyzers: slices.Clone(t.disabled),
		Parallel:          t.cfg.Parallel,
		Offline:           true,
		NoProgress:        true,
		Insecure:          insecure,
		DetectionPriority: ftypes.PriorityPrecise,
		ImageOption: ftypes.ImageOptions{
			ImageSources:    ftypes.ImageSources{ftypes.RemoteImageSource},
			RegistryOptions: regOpts,
		},
	})
	t.artifactMu.Unlock()
	if err != nil {
		return Report{}, fmt.Errorf("prepare analysis of %s: %w", ref, err)
	}
	art := &recordingArtifact{Artifact: inner}
	manifest := manifestDigestOf(img)
	if strings.EqualFold(manifest, req.Digest) {
		manifest = ""
	}
	rep, err := t.detect(sctx, ref, cc, art, manifest)
	if err != nil {
		return Report{}, err
	}
	rep.LayersCached = int(cc.hits.Load())
	rep.LayersAnalyzed = int(cc.misses.Load())
	rep.BytesFetched = stats.bytes.Load()
	if t.shared != nil && art.ref.ID != "" {
		t.recordAnalysis(ctx, ref, req, art, manifestDigestOf(img))
	}
	return rep, nil
}

// registryOptions are Trivy's options for pulling from registry: the
// platform, TLS verification and the keyring's credentials.
func (t *Trivy) registryOptions(registry string, p contract.Platform) ftypes.RegistryOptions {
	regOpts := ftypes.RegistryOptions{
		Insecure: hostSet(t.cfg.InsecureRegistries).match(registry),
		Platform: ftypes.Platform{Platform: &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}},
	}
	if c, ok := t.keyring().lookup(registry); ok {
		if c.Token != "" {
			regOpts.RegistryToken = c.Token
		} else {
			regOpts.Credentials = []ftypes.Credential{{Username: c.Username, Password: c.Password}}
		}
	}
	return regOpts
}

// recordAnalysis stores which cache entries the image's analysis is made
// of, so a rescan after a DB update runs detection without the registry.
// With them it keeps the image metadata SBOMs need and the platform
// manifest's digest (manifestDigest).
func (t *Trivy) recordAnalysis(ctx context.Context, ref string, req Request, art *recordingArtifact, manifestDigest string) {
	a := analysisOf(ref, art.ref, t.info, manifestDigest, time.Now())
	if err := t.shared.PutAnalysis(ctx, contract.ImageKey{Digest: req.Digest, Platform: req.Platform}, a); err != nil {
		t.log.Warn("could not record the image's analysis; a rescan after a DB update will contact the registry",
			logging.Digest(req.Digest), zap.Error(err))
	}
}

// detect runs Trivy's scan service over an artifact — an image being
// pulled, or one analysed before — and maps the findings.
//
// The report also lists every package the image holds (Report.Packages):
// Trivy's results carry them whether or not they are vulnerable.
// manifestDigest is the platform manifest's digest when the scanned digest
// is an index.
func (t *Trivy) detect(ctx context.Context, ref string, cache tcache.LocalArtifactCache, art artifact.Artifact, manifestDigest string) (Report, error) {
	rec := &osRecorder{Scanner: t.osMemo}
	svc := tscan.NewService(local.NewService(applier.NewApplier(cache), rec, langpkg.NewScanner(),
		vulnerability.NewClient(trivydbcfg.Config{})), art)
	report, err := svc.ScanArtifact(ctx, ttypes.ScanOptions{
		PkgTypes:            []string{ttypes.PkgTypeOS, ttypes.PkgTypeLibrary},
		PkgRelationships:    ftypes.Relationships,
		Scanners:            ttypes.Scanners{ttypes.VulnerabilityScanner},
		VulnSeveritySources: []dbtypes.SourceID{"auto"},
	})
	if err != nil {
		return Report{}, fmt.Errorf("scan %s: %w", ref, err)
	}
	// All five severities, as the CLI's default: an empty list drops all.
	severities := make([]dbtypes.Severity, 0, len(dbtypes.SeverityNames))
	for i := range dbtypes.SeverityNames {
		severities = append(severities, dbtypes.Severity(i))
	}
	if err := result.Filter(ctx, report, result.FilterOptions{Severities: severities}); err != nil {
		return Report{}, fmt.Errorf("filter findings of %s: %w", ref, err)
	}
	return Report{
		Reference: ref,
		OS:        osOf(report),
		Findings:  findingsOf(report),
		Packages:  imagePackages(report, rec, t.info, manifestDigest, time.Now()),
		Scanner:   t.info,
		DB:        t.db.Info(),
	}, nil
}

// redetect rescans an image analysed before by detection alone: the shared
// cache holds its recorded analysis, from this scanner version and
// options, with every layer entry still present. No registry is
// contacted. ok is false when the image needs a full scan.
func (t *Trivy) redetect(ctx context.Context, req Request) (Report, bool) {
	if t.shared == nil || req.Pull {
		return Report{}, false
	}
	key := contract.ImageKey{Digest: req.Digest, Platform: req.Platform}
	log := t.log.With(logging.Digest(req.Digest), logging.Platform(req.Platform))
	a, ok, err := t.shared.Analysis(ctx, key)
	if err != nil {
		log.Warn("could not read the image's recorded analysis; scanning it in full", zap.Error(err))
		return Report{}, false
	}
	if !ok || a.Scanner != t.info || a.ArtifactID == "" || len(a.BlobIDs) == 0 {
		return Report{}, false
	}
	missingArtifact, missing, err := t.shared.MissingBlobs(ctx, a.ArtifactID, a.BlobIDs)
	if err != nil || missingArtifact || len(missing) > 0 {
		log.Debug("recorded analysis incomplete in the shared cache; scanning in full",
			zap.Bool("missing_config", missingArtifact), zap.Int("missing_layers", len(missing)), zap.Error(err))
		return Report{}, false
	}
	rep, err := t.detect(ctx, a.Reference, t.shared, storedArtifact{ref: storedReference(a)}, manifestOf(a, key))
	if err != nil {
		log.Warn("detection from the recorded analysis failed; scanning in full", zap.Error(err))
		return Report{}, false
	}
	rep.LayersCached = len(a.BlobIDs)
	rep.DetectionOnly = true
	return rep, true
}

// recordingArtifact keeps what the image artifact's Inspect returned: the
// cache keys of the image config and its layers.
type recordingArtifact struct {
	artifact.Artifact
	ref artifact.Reference
}

func (a *recordingArtifact) Inspect(ctx context.Context) (artifact.Reference, error) {
	ref, err := a.Artifact.Inspect(ctx)
	if err == nil {
		a.ref = ref
	}
	return ref, err
}

// storedArtifact is an image analysed before: its Inspect returns the
// recorded cache keys without touching the registry.
type storedArtifact struct{ ref artifact.Reference }

func (a storedArtifact) Inspect(context.Context) (artifact.Reference, error) { return a.ref, nil }
func (a storedArtifact) Clean(artifact.Reference) error                      { return nil }

// countingCache counts layer-cache hits and misses of one scan.
type countingCache struct {
	tcache.Cache
	hits, misses atomic.Int64
}

func (c *countingCache) MissingBlobs(ctx context.Context, artifactID string, blobIDs []string) (bool, []string, error) {
	missingArtifact, missing, err := c.Cache.MissingBlobs(ctx, artifactID, blobIDs)
	if err == nil {
		c.misses.Add(int64(len(missing)))
		c.hits.Add(int64(len(blobIDs) - len(missing)))
	}
	return missingArtifact, missing, err
}

// RemoveTempFiles deletes the process's Trivy temporary directory (under
// $TMPDIR). Call it once, when the process exits: Trivy creates that
// directory once per process and never again.
func RemoveTempFiles() error { return xos.Cleanup() }
