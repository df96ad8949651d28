// Package query answers "where do we run it?" across the fleet, at once
// and without a registry: which running image digests hold a package
// (`fleetscan query --package`, `--purl`, with an optional `--version`
// constraint) or are affected by a vulnerability (`--cve`, detected now,
// with the current DB, over the packages the workers recorded — no image
// is pulled).
//
// The answer joins the package index (internal/pkgindex) with the latest
// inventory of every cluster: only digests still running are reported,
// with the workloads and references that run them.
package query

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/fleetscan/fleetscan/internal/layercache"
	"github.com/fleetscan/fleetscan/internal/logging"
	"github.com/fleetscan/fleetscan/internal/natsconn"
	"github.com/fleetscan/fleetscan/internal/natsembed"
	"github.com/fleetscan/fleetscan/internal/pkgindex"
	"github.com/fleetscan/fleetscan/internal/report"
	"github.com/fleetscan/fleetscan/internal/scan"
	"github.com/fleetscan/fleetscan/internal/store"
	"github.com/fleetscan/fleetscan/internal/topology"
	"github.com/fleetscan/fleetscan/internal/trivydb"
	"github.com/fleetscan/fleetscan/pkg/contract"
)

// ErrNoState is returned when --state-dir holds no fleetscan state.
var ErrNoState = errors.New("no fleetscan state")

// Source is the shared state a query reads.
type Source struct {
	Store *store.Store
	Index *pkgindex.Store
	// Lister lists a running image's packages from the layer cache when
	// the index has no record of it (nil: no layer cache).
	Lister Lister
}

// Lister lists an image's packages from its recorded analysis
// (*scan.Inventory).
type Lister interface {
	List(ctx context.Context, key contract.ImageKey) (scan.Listing, error)
}

// OpenResources looks up (never creates or changes) the JetStream
// resources a query reads: the inventories and the package index.
func OpenResources(ctx context.Context, js jetstream.JetStream, log *zap.Logger) (*Source, error) {
	if log == nil {
		log = zap.NewNop()
	}
	res := &topology.Resources{JS: js}
	var err error
	if res.Inventories, err = js.ObjectStore(ctx, topology.InventoriesBucket); err != nil {
		return nil, fmt.Errorf("%w: object store %s: %w (has a dispatcher run?)", ErrNoState, topology.InventoriesBucket, err)
	}
	if res.Packages, err = js.Stream(ctx, topology.PackagesStream); err != nil {
		return nil, fmt.Errorf("%w: stream %s: %w (workers and reporters of this version write the package index)", ErrNoState, topology.PackagesStream, err)
	}
	if res.PackageIndex, err = js.ObjectStore(ctx, topology.PackageIndexBucket); err != nil {
		return nil, fmt.Errorf("%w: object store %s: %w", ErrNoState, topology.PackageIndexBucket, err)
	}
	idx, err := pkgindex.NewStore(res, log.Named("pkgindex"))
	if err != nil {
		return nil, err
	}
	src := &Source{Store: store.New(js, res), Index: idx}
	// The layer cache, read only, for images without a package record.
	res.LayerCache, _ = js.KeyValue(ctx, topology.LayerCacheBucket)
	res.LayerObjects, _ = js.ObjectStore(ctx, topology.LayerObjectsBucket)
	res.LayerLeases, _ = js.KeyValue(ctx, topology.LayerLeasesBucket)
	if cache, err := layercache.New(res, layercache.Config{TTL: topology.Defaults().LayerCacheTTL, LeaseTTL: layercache.DefaultLeaseTTL,
		Owner: "query", ReadOnly: true}, log.Named("layercache")); err == nil {
		src.Lister = scan.NewInventory(cache, log.Named("inventory"))
	}
	return src, nil
}

// Connect opens the state the configuration names: the all-in-one's
// embedded NATS store under --state-dir, or an external NATS. The returned
// function closes it.
func Connect(ctx context.Context, cfg Config, log *zap.Logger) (jetstream.JetStream, func(), error) {
	if cfg.NATS.URLs != "" {
		nc, err := natsconn.Connect(ctx, cfg.NATS, log)
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("jetstream: %w", err)
		}
		return js, nc.Close, nil
	}
	dir := filepath.Join(cfg.StateDir, "jetstream")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, nil, fmt.Errorf("--state-dir %s: %w (run `fleetscan scan` first, or give --nats-url)", cfg.StateDir, ErrNoState)
	}
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir, DontListen: true}, log.Named("nats"))
	if err != nil {
		return nil, nil, fmt.Errorf("open --state-dir %s: %w", cfg.StateDir, err)
	}
	nc, err := nats.Connect("", srv.InProcessOption(), nats.Name("fleetscan-query"))
	if err != nil {
		srv.Shutdown()
		return nil, nil, fmt.Errorf("connect to the embedded NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Shutdown()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return js, func() { nc.Close(); srv.Shutdown() }, nil
}

// Match is one matching (digest, platform, package).
type Match struct {
	Digest   string
	Platform string
	// ManifestDigest is the platform image's manifest digest when Digest
	// is a multi-arch index.
	ManifestDigest string
	Package        string
	Version        string
	PURL           string
	Type           string
	Path           string
	References     []string
	Workloads      []string
	// CVE queries only.
	Vulnerability string
	FixedIn       string
	Status        string
	Severity      string
}

// Result is a query's answer.
type Result struct {
	// CVE is true for a --cve query (matches carry the vulnerability).
	CVE     bool
	Matches []Match
	// Running is the number of image keys the current inventories run;
	// Indexed how many of them the package index covers.
	Running int
	Indexed int
	// Notes are things the user should know about the answer's coverage.
	Notes []string
	// DB is the vulnerability DB a --cve query used.
	DB *contract.DBInfo
	// Took is the query's duration (state already open).
	Took time.Duration
}

// Deps are a query's collaborators.
type Deps struct {
	Log *zap.Logger
	// Clock is the wall clock (nil: time.Now).
	Clock func() time.Time
}

func (d Deps) now() time.Time {
	if d.Clock != nil {
		return d.Clock()
	}
	return time.Now()
}

// Run answers cfg's question over src. For --cve, the vulnerability DB
// under cfg.DB.CacheDir is opened (after updating it with --db-update).
func Run(ctx context.Context, cfg Config, src *Source, d Deps) (*Result, error) {
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	res := &Result{CVE: cfg.CVE != ""}
	if res.CVE {
		h, err := openDB(ctx, cfg, log)
		if err != nil {
			return nil, err
		}
		defer func() { _ = h.Close() }()
		info := h.Info()
		res.DB = &info
	}
	fleet, notes, err := loadFleet(ctx, src.Store, cfg.MaxAge, d.now(), log)
	if err != nil {
		return nil, err
	}
	res.Notes = append(res.Notes, notes...)
	ix, st, err := src.Index.Refresh(ctx, pkgindex.DefaultCompactAfter)
	if err != nil {
		return nil, fmt.Errorf("package index: %w", err)
	}
	if st.Unreadable > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d package records were unreadable; their images are not covered", st.Unreadable))
	}
	running := func(im *pkgindex.Image) bool { return fleet.Len() > 0 && fleet.has(im.ImageKey) }
	res.Running = fleet.Len()
	var missing []contract.ImageKey
	for k := range fleet.keys {
		if _, ok := ix.Image(k); ok {
			res.Indexed++
		} else {
			missing = append(missing, k)
		}
	}
	if listed := listMissing(ctx, src, ix, missing, cfg.Parallel, log); listed > 0 {
		res.Indexed += listed
		res.Notes = append(res.Notes, fmt.Sprintf("%d running images had no package record yet: listed from the layer cache", listed))
	}
	if gap := res.Running - res.Indexed; gap > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d of %d running images have no package record nor cached analysis (never scanned, or failed): they are not covered", gap, res.Running))
	}
	switch {
	case cfg.CVE != "":
		err = matchCVE(ctx, cfg, ix, running, fleet, res, log)
	default:
		err = matchPackages(cfg, ix, running, fleet, res)
	}
	if err != nil {
		return nil, err
	}
	sortMatches(res.Matches)
	res.Took = time.Since(start)
	log.Debug("query answered", zap.Int("matches", len(res.Matches)), zap.Int("running", res.Running),
		zap.Int("indexed", res.Indexed), zap.Int("units", ix.Units()), zap.Int("snapshot_images", st.SnapshotImages),
		zap.Int("delta_records", st.Delta), zap.Duration("index_load", st.Took), logging.Took(res.Took))
	return res, nil
}

// listMissing lists the packages of running images the index has no
// record of from their cached analyses (no registry), adds them to ix and
// stores their records for the next reader (best effort: a read-only
// identity only logs). It returns how many it listed.
func listMissing(ctx context.Context, src *Source, ix *pkgindex.Index, keys []contract.ImageKey, parallel int, log *zap.Logger) int {
	if src.Lister == nil || len(keys) == 0 {
		return 0
	}
	if parallel <= 0 {
		parallel = runtime.GOMAXPROCS(0)
	}
	var (
		mu   sync.Mutex
		recs []contract.ImagePackages
		wg   sync.WaitGroup
		sem  = make(chan struct{}, parallel)
	)
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			l, err := src.Lister.List(ctx, k)
			if err != nil {
				if !errors.Is(err, scan.ErrNoAnalysis) {
					log.Warn("could not list a running image's packages from the layer cache", logging.Digest(k.Digest), logging.Platform(k.Platform), zap.Error(err))
				}
				return
			}
			if err := src.Index.PutPackages(ctx, l.Packages); err != nil {
				log.Debug("could not store the listed package record", logging.Digest(k.Digest), logging.Platform(k.Platform), zap.Error(err))
			}
			mu.Lock()
			recs = append(recs, l.Packages)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, r := range recs {
		ix.Apply(r, 0)
	}
	return len(recs)
}

// openDB updates the DB when asked, then opens it read-only (Trivy's
// process-wide handle).
func openDB(ctx context.Context, cfg Config, log *zap.Logger) (*trivydb.Handle, error) {
	if cfg.DBUpdate {
		dbc := cfg.DB
		dbc.Force = true
		r, err := trivydb.Update(ctx, dbc, log.Named("db"))
		if err != nil {
			return nil, fmt.Errorf("--db-update: %w", err)
		}
		log.Info("vulnerability DB", zap.Bool("updated", r.DB.Updated), zap.String("reason", r.DB.Reason),
			logging.DBUpdatedAt(r.DB.Info.UpdatedAt))
	}
	h, err := trivydb.Open(ctx, cfg.DB, log.Named("db"))
	if err != nil {
		hint := "run with --db-update, or point --cache-dir at the DB `fleetscan scan` uses"
		return nil, fmt.Errorf("vulnerability DB in --cache-dir %s: %w (%s)", cfg.DB.CacheDir, err, hint)
	}
	return h, nil
}

// matchPackages answers --package and --purl.
func matchPackages(cfg Config, ix *pkgindex.Index, running func(*pkgindex.Image) bool, fleet *fleet, res *Result) error {
	var c *pkgindex.Constraint
	if cfg.Version != "" {
		var err error
		if c, err = pkgindex.ParseConstraint(cfg.Version); err != nil {
			return fmt.Errorf("--version: %w", err)
		}
	}
	var m pkgindex.Matcher
	if cfg.PURL != "" {
		q, err := pkgindex.ParsePURL(cfg.PURL)
		if err != nil {
			return fmt.Errorf("--purl: %w", err)
		}
		m = q.Matcher(c)
	} else {
		m = pkgindex.NameMatcher(cfg.Package, c)
	}
	units := ix.SelectUnits(m)
	ix.Each(units, running, func(im *pkgindex.Image, id uint32) {
		res.Matches = append(res.Matches, fleet.match(im, ix.Unit(id)))
	})
	return nil
}

// matchCVE detects the vulnerability in the running images' packages:
// OS packages once per distinct OS package set, language packages once per
// distinct package, with Trivy's detectors and the open DB.
func matchCVE(ctx context.Context, cfg Config, ix *pkgindex.Index, running func(*pkgindex.Image) bool, fleet *fleet, res *Result, log *zap.Logger) error {
	want := strings.TrimSpace(cfg.CVE)
	osGroups := ix.OSGroups(running)
	langUnits := ix.LangUnits(running)
	groups := make([]scan.PackageGroup, 0, len(osGroups)+len(langUnits))
	units := make([][]uint32, 0, cap(groups))
	for _, g := range osGroups {
		groups = append(groups, scan.PackageGroup{Class: contract.ClassOSPackages, OS: g.Image.OS, OSExtended: g.Image.OSExtended,
			OSSupplier: g.Image.OSSupplier, Repository: g.Image.Repository, Keys: g.Units, Unit: ix.Unit})
		units = append(units, g.Units)
	}
	types := make([]string, 0, len(langUnits))
	for t := range langUnits {
		types = append(types, t)
	}
	slices.Sort(types)
	for _, t := range types {
		pg := scan.PackageGroup{Class: contract.ClassLangPackages, Type: t, Keys: langUnits[t]}
		for _, id := range langUnits[t] {
			pg.Packages = append(pg.Packages, *ix.Unit(id))
		}
		groups = append(groups, pg)
		units = append(units, langUnits[t])
	}
	found, err := scan.DetectPackages(ctx, groups, cfg.Parallel, log.Named("detect"))
	if err != nil {
		return fmt.Errorf("--cve %s: detection: %w", want, err)
	}
	type hit struct{ fixed, status, severity, id string }
	osHits := map[int]map[uint32]hit{} // OS group → unit → hit
	langHits := map[uint32]hit{}
	for _, v := range found {
		if !strings.EqualFold(v.VulnerabilityID, want) && !slices.ContainsFunc(v.VendorIDs, func(s string) bool { return strings.EqualFold(s, want) }) {
			continue
		}
		h := hit{fixed: v.FixedVersion, status: v.Status, severity: v.Severity, id: v.VulnerabilityID}
		id := units[v.Group][v.Package]
		if v.Group < len(osGroups) {
			if osHits[v.Group] == nil {
				osHits[v.Group] = map[uint32]hit{}
			}
			osHits[v.Group][id] = h
		} else {
			langHits[id] = h
		}
	}
	add := func(im *pkgindex.Image, id uint32, h hit) {
		m := fleet.match(im, ix.Unit(id))
		m.Vulnerability, m.FixedIn, m.Status, m.Severity = h.id, h.fixed, h.status, h.severity
		res.Matches = append(res.Matches, m)
	}
	for gi, hits := range osHits {
		for _, im := range osGroups[gi].Images {
			for id, h := range hits {
				add(im, id, h)
			}
		}
	}
	if len(langHits) > 0 {
		set := ix.NewSet()
		for id := range langHits {
			set.Add(id)
		}
		ix.Each(set, running, func(im *pkgindex.Image, id uint32) { add(im, id, langHits[id]) })
	}
	return nil
}

func sortMatches(ms []Match) {
	slices.SortFunc(ms, func(a, b Match) int {
		return cmp.Or(cmp.Compare(a.Digest, b.Digest), cmp.Compare(a.Platform, b.Platform), cmp.Compare(a.Package, b.Package),
			cmp.Compare(a.Version, b.Version), cmp.Compare(a.Path, b.Path), cmp.Compare(a.PURL, b.PURL))
	})
}

// fleet is what the current inventories run: per image key, its
// references and workloads.
type fleet struct {
	keys map[contract.ImageKey]*usage
}

type usage struct {
	refs      map[string]bool
	workloads map[string]bool
}

func (f *fleet) Len() int                     { return len(f.keys) }
func (f *fleet) has(k contract.ImageKey) bool { _, ok := f.keys[k]; return ok }
func sortedSet(m map[string]bool) (out []string) {
	out = make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (f *fleet) match(im *pkgindex.Image, u *pkgindex.Unit) Match {
	m := Match{Digest: im.Digest, Platform: im.Platform.String(), ManifestDigest: im.ManifestDigest,
		Package: u.Name, Version: u.Version, PURL: u.PURL, Type: u.Type, Path: u.Path}
	if us := f.keys[im.ImageKey]; us != nil {
		m.References, m.Workloads = sortedSet(us.refs), sortedSet(us.workloads)
	}
	return m
}

// loadFleet reads the latest inventory of every cluster collected within
// maxAge. Clusters left out are returned as notes.
func loadFleet(ctx context.Context, st *store.Store, maxAge time.Duration, now time.Time, log *zap.Logger) (*fleet, []string, error) {
	f := &fleet{keys: map[contract.ImageKey]*usage{}}
	names, err := st.Clusters(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list cluster inventories: %w", err)
	}
	var notes []string
	for _, name := range sortedKeys(names) {
		inv, err := st.Inventory(ctx, name)
		var bad *contract.DecodeError
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case errors.As(err, &bad):
			notes = append(notes, fmt.Sprintf("cluster %s left out: its stored inventory is unreadable (%v)", name, err))
			continue
		case err != nil:
			return nil, nil, err
		}
		if age := now.Sub(inv.CollectedAt); age > maxAge {
			notes = append(notes, fmt.Sprintf("cluster %s left out: its latest inventory is %s old (--max-age %s)", name, age.Round(time.Minute), maxAge))
			continue
		}
		for _, e := range inv.Entries {
			k, ok := e.Key()
			if !ok {
				continue
			}
			u := f.keys[k]
			if u == nil {
				u = &usage{refs: map[string]bool{}, workloads: map[string]bool{}}
				f.keys[k] = u
			}
			if e.Image != "" {
				u.refs[e.Image] = true
			}
			u.workloads[report.WorkloadName(inv.Cluster, e)] = true
		}
	}
	if len(names) == 0 {
		notes = append(notes, "no cluster inventory is stored: nothing is known to run")
	}
	log.Debug("fleet loaded", zap.Int("clusters", len(names)), zap.Int("images", len(f.keys)))
	return f, notes, nil
}

func sortedKeys[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
